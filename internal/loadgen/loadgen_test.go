package loadgen

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTarget answers from a map after an optional delay; keys starting
// with "bad" fail. It exercises the generator, not a cache.
type fakeTarget struct {
	delay time.Duration
	block bool // wait for the context instead of answering

	mu   sync.Mutex
	seen map[string]int
	data map[string]bool
}

func newFake() *fakeTarget { return &fakeTarget{seen: map[string]int{}, data: map[string]bool{}} }

func (f *fakeTarget) Name() string         { return "fake" }
func (f *fakeTarget) Close() error         { return nil }
func (f *fakeTarget) Worker(int) Worker    { return f }
func (f *fakeTarget) count(k string) int   { f.mu.Lock(); defer f.mu.Unlock(); return f.seen[k] }
func (f *fakeTarget) stored(k string) bool { f.mu.Lock(); defer f.mu.Unlock(); return f.data[k] }

func (f *fakeTarget) Do(ctx context.Context, op Op, key string, _ []byte) Outcome {
	if f.block {
		<-ctx.Done()
		return Outcome{Err: "timeout"}
	}
	if f.delay > 0 {
		time.Sleep(f.delay) // the target's service time, not synchronisation
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen[key]++
	if strings.HasPrefix(key, "bad") {
		return Outcome{Err: "status_500"}
	}
	switch op {
	case OpSet:
		f.data[key] = true
	case OpDelete:
		delete(f.data, key)
	default:
		if f.data[key] {
			return Outcome{Tier: "hit-l1"}
		}
		return Outcome{Tier: "miss"}
	}
	return Outcome{}
}

func TestParseMix(t *testing.T) {
	for in, want := range map[string]Mix{"90:10:0": {90, 10, 0}, "50:50": {50, 50, 0}, "0:0:1": {0, 0, 1}} {
		if got, err := ParseMix(in); err != nil || got != want {
			t.Errorf("ParseMix(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "90", "0:0:0", "a:b", "1:2:3:4", "-1:2", "90:10:"} {
		if _, err := ParseMix(in); err == nil {
			t.Errorf("ParseMix(%q): no error", in)
		}
	}
}

func TestRun_CountsAndMix(t *testing.T) {
	f := newFake()
	rep, err := Run(t.Context(), f, Config{Keys: 100, Mix: Mix{Get: 80, Set: 20}, Workers: 4, Requests: 4000, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 4000 || rep.Ops["get"]+rep.Ops["set"] != 4000 || rep.Ops["delete"] != 0 {
		t.Fatalf("requests %d, ops %v; want 4000 gets and sets", rep.Requests, rep.Ops)
	}
	if g := rep.Ops["get"]; g < 3000 || g > 3400 {
		t.Errorf("%d gets of 4000, want about 80%%", g)
	}
	if rep.ErrorsTotal != 0 || rep.OpsPerSec <= 0 || rep.Latency.Max <= 0 {
		t.Errorf("errors %d, ops/s %g, max %g", rep.ErrorsTotal, rep.OpsPerSec, rep.Latency.Max)
	}
	if h := rep.HitRatio["hit"]; h <= 0 || h >= 1 || rep.Reads["hit-l1"]+rep.Reads["miss"] != rep.Ops["get"] {
		t.Errorf("hit ratio %g, reads %v", h, rep.Reads)
	}
}

func TestRun_Zipf(t *testing.T) {
	f := newFake()
	if _, err := Run(t.Context(), f, Config{Keys: 1000, Dist: Zipf, ZipfS: 1.2, Mix: Mix{Get: 1}, Workers: 2, Requests: 20000}); err != nil {
		t.Fatal(err)
	}
	hot, mid, cold := f.count("bench:0"), f.count("bench:10"), f.count("bench:900")
	if !(hot > 5*mid && mid > cold) {
		t.Errorf("reads of keys 0, 10, 900: %d, %d, %d; want a zipf skew", hot, mid, cold)
	}
}

func TestRun_ErrorsByKind(t *testing.T) {
	f := newFake()
	rep, err := Run(t.Context(), f, Config{Keys: 10, KeyPrefix: "bad:", Workers: 2, Requests: 50})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors["status_500"] != 50 || rep.ErrorsTotal != 50 || len(rep.Reads) != 0 {
		t.Errorf("errors %v (total %d), reads %v; want 50 status_500", rep.Errors, rep.ErrorsTotal, rep.Reads)
	}
}

// TestRun_OpenModel checks that a rate the target cannot keep up with
// shows as latency measured from the intended start: one worker, 20 ms
// per operation (50/s) offered 100/s for a second.
func TestRun_OpenModel(t *testing.T) {
	slow := &fakeTarget{delay: 20 * time.Millisecond, seen: map[string]int{}, data: map[string]bool{}}
	open, err := Run(t.Context(), slow, Config{Workers: 1, Rate: 100, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if open.Requests < 95 || open.Requests > 101 {
		t.Errorf("%d requests; want the 100 scheduled", open.Requests)
	}
	if open.Latency.P99 < 500 {
		t.Errorf("open model p99 %.1f ms; want the queueing (about 1 s) to show", open.Latency.P99)
	}
	closed, err := Run(t.Context(), slow, Config{Workers: 1, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if closed.Latency.P99 > 200 {
		t.Errorf("closed model p99 %.1f ms; want about the 20 ms service time", closed.Latency.P99)
	}
}

func TestRun_TimeLimit(t *testing.T) {
	f := &fakeTarget{block: true}
	start := time.Now()
	rep, err := Run(t.Context(), f, Config{Workers: 2, Rate: 100, Duration: 5 * time.Second, TimeLimit: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("run took %v with a 300ms time limit", took)
	}
	if rep.Unsent < 400 || rep.Requests != 0 {
		t.Errorf("unsent %d, requests %d; want about 500 unsent, none finished", rep.Unsent, rep.Requests)
	}
}

func TestPreload(t *testing.T) {
	f := newFake()
	p, err := Preload(t.Context(), f, Config{Keys: 500, Workers: 8})
	if err != nil || p.Keys != 500 || p.ErrorsTotal != 0 {
		t.Fatalf("Preload: %+v, %v", p, err)
	}
	for _, k := range []string{"bench:0", "bench:250", "bench:499"} {
		if !f.stored(k) {
			t.Errorf("%s not written", k)
		}
	}
	if f.stored("bench:500") {
		t.Error("bench:500 written; only 500 keys asked")
	}
}

func TestConfig_Bad(t *testing.T) {
	for _, c := range []Config{
		{Requests: 1, Dist: "pareto"},
		{Requests: 1, Dist: Zipf, ZipfS: 1},
		{Requests: 1, KeyPrefix: "a b"},
		{Requests: 1, Keys: -1},
		{},
	} {
		if _, err := Run(t.Context(), newFake(), c); err == nil {
			t.Errorf("Run(%+v): no error", c)
		}
	}
}
