package warm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/tiercache/tiercache"
)

func TestNewRunner_Invalid(t *testing.T) {
	t.Parallel()
	c := newCache(t, topology{name: "memory"}, "")
	gen := Items()
	for _, tc := range []struct {
		name       string
		strategies []Strategy
		want       string // substring of the error
		strategy   string // StrategyError.Strategy
	}{
		{"empty name", []Strategy{{Generator: gen}}, `strategy "": invalid strategy: the name is empty`, ""},
		{"priority too high", []Strategy{{Name: "p", Priority: 11, Generator: gen}}, `strategy "p": invalid strategy: priority 11 is out of range 1..10`, "p"},
		{"priority negative", []Strategy{{Name: "p", Priority: -1, Generator: gen}}, "priority -1 is out of range", "p"},
		{"negative batch size", []Strategy{{Name: "b", BatchSize: -5, Generator: gen}}, "batch size -5 is negative", "b"},
		{"negative TTL", []Strategy{{Name: "t", TTL: -time.Second, Generator: gen}}, "TTL -1s is negative", "t"},
		{"no generator", []Strategy{{Name: "g"}}, `strategy "g": invalid strategy: no generator`, "g"},
		{"empty tag", []Strategy{{Name: "e", Tags: []string{"a", ""}, Generator: gen}}, "a tag is empty", "e"},
		{"bad cron field", []Strategy{{Name: "c", Schedule: "61 * * * *", Generator: gen}}, `strategy "c": invalid strategy: schedule "61 * * * *" is not a valid cron expression: `, "c"},
		{"cron with too many fields", []Strategy{{Name: "c", Schedule: "* * * * * * *", Generator: gen}}, `schedule "* * * * * * *" is not a valid cron expression`, "c"},
		{"cron that never fires", []Strategy{{Name: "c", Schedule: "0 0 30 2 *", Generator: gen}}, "it never fires", "c"},
		{"duplicate name", []Strategy{{Name: "d", Generator: gen}, {Name: "d", Generator: gen}}, `strategy "d": invalid strategy: the name is used twice`, "d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewRunner(Options{Cache: c}, tc.strategies...)
			if !errors.Is(err, ErrInvalidStrategy) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrInvalidStrategy containing %q", err, tc.want)
			}
			se, ok := errors.AsType[*StrategyError](err)
			if !ok || se.Strategy != tc.strategy {
				t.Fatalf("error %#v does not name strategy %q", err, tc.strategy)
			}
		})
	}
	if _, err := NewRunner(Options{}); err == nil || !strings.Contains(err.Error(), "warm: Options.Cache is nil") {
		t.Fatalf("nil cache: %v", err)
	}
}

// recorder collects the order in which generators start.
type recorder struct {
	mu  sync.Mutex
	log []string
}

func (r *recorder) gen(name string, n int) Generator {
	inner := seq(name, n)
	return func(ctx context.Context, yield func(Item) error) error {
		r.mu.Lock()
		r.log = append(r.log, name)
		r.mu.Unlock()
		return inner(ctx, yield)
	}
}

func (r *recorder) order() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log)
}

func TestRunner_PriorityOrder(t *testing.T) {
	eachTopology(t, allTopologies, func(t *testing.T, tp topology) {
		ctx := t.Context()
		c := newCache(t, tp, "")
		var rec recorder
		st := func(name string, prio int) Strategy {
			return Strategy{Name: name, Priority: prio, Enabled: true, WarmOnDemand: true, Generator: rec.gen(name, 3)}
		}
		r := newRunner(t, Options{Cache: c},
			st("c", 3), st("a1", 1), st("b", 0), st("a2", 1), st("z", 10), st("a3", 1))
		// b's zero priority is DefaultPriority (1): it runs among the a's,
		// in the order given.
		want := []string{"a1", "b", "a2", "a3", "c", "z"}
		results, err := r.Warm(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, res := range results {
			got = append(got, res.Strategy)
			if res.Written != 3 || res.Failed != 0 || res.Trigger != TriggerDemand {
				t.Errorf("%s: %+v", res.Strategy, res)
			}
		}
		if !slices.Equal(got, want) || !slices.Equal(rec.order(), want) {
			t.Fatalf("results %v, generators ran %v, want %v", got, rec.order(), want)
		}
		var status []string
		for _, s := range r.Status() {
			status = append(status, s.Name)
		}
		if !slices.Equal(status, want) {
			t.Fatalf("Status order %v, want %v", status, want)
		}
		for _, name := range want {
			var v int
			if err := c.Get(ctx, name+"-2", &v); err != nil || v != 2 {
				t.Fatalf("%s-2: %d %v", name, v, err)
			}
		}
	})
}

// TestRunner_BatchesAndDelay drives the delay with a fake clock and counts
// the SETs that reach Redis after each batch and during each delay.
func TestRunner_BatchesAndDelay(t *testing.T) {
	eachTopology(t, allTopologies, func(t *testing.T, tp topology) {
		ctx := t.Context()
		c := newCache(t, tp, "")
		// Create the namespace and tag versions first: their SET NX would
		// count too.
		if err := c.SetItems(ctx, []tiercache.Item{{Key: "prime", Value: 0, Tags: []string{"batch"}}}); err != nil {
			t.Fatal(err)
		}
		clk := clockwork.NewFakeClock()
		progress := make(chan Progress, 16)
		r := newRunner(t, Options{Cache: c, Clock: clk, OnProgress: func(p Progress) { progress <- p }}, Strategy{
			Name: "b", Enabled: true, WarmOnDemand: true, BatchSize: 10, DelayBetweenBatches: time.Second,
			Tags: []string{"batch"}, Generator: seq("k", 35),
		})
		base := tp.sets(t)
		done := make(chan Result, 1)
		go func() {
			res, _ := r.Warm(ctx)
			done <- res[0]
		}()
		for i, want := range []int64{10, 20, 30, 35} {
			var p Progress
			select {
			case p = <-progress:
			case <-time.After(waitFor):
				t.Fatalf("no progress after batch %d", i+1)
			}
			if p.Batches != int64(i+1) || p.Written != want {
				t.Fatalf("progress %+v, want batch %d with %d written", p, i+1, want)
			}
			if base >= 0 {
				if n := tp.sets(t) - base; n != want {
					t.Fatalf("after batch %d Redis executed %d SETs, want %d", i+1, n, want)
				}
			}
			if i == 3 {
				break
			}
			// The runner now waits for the delay on the fake clock; nothing
			// reaches Redis until it passes.
			if err := clk.BlockUntilContext(ctx, 1); err != nil {
				t.Fatal(err)
			}
			if base >= 0 {
				if n := tp.sets(t) - base; n != want {
					t.Fatalf("during delay %d Redis executed %d SETs, want %d", i+1, n, want)
				}
			}
			clk.Advance(time.Second)
		}
		res := <-done
		if res.Err != nil || res.Written != 35 || res.Batches != 4 || res.Failed != 0 {
			t.Fatalf("result %+v", res)
		}
		// Three delays between four batches, none after the last.
		if res.Duration != 3*time.Second {
			t.Fatalf("duration %v on the fake clock, want 3s", res.Duration)
		}
	})
}

// TestRunner_DefaultBatchAndNoDelay: without a delay, batches of the
// default size go out back to back (up to four in flight), each reported once, in
// order, and Redis executes one SET per item.
func TestRunner_DefaultBatchAndNoDelay(t *testing.T) {
	eachTopology(t, allTopologies, func(t *testing.T, tp topology) {
		c := newCache(t, tp, "")
		if err := c.Set(t.Context(), "prime", 0); err != nil { // creates the namespace version
			t.Fatal(err)
		}
		var batches []int64
		clk := clockwork.NewFakeClock()
		r := newRunner(t, Options{Cache: c, Clock: clk, OnProgress: func(p Progress) { batches = append(batches, p.Written) }},
			Strategy{Name: "default", Enabled: true, WarmOnDemand: true, DelayBetweenBatches: -1, Generator: seq("k", 250)})
		base := tp.sets(t)
		// No delay: the run finishes without the fake clock moving.
		res, err := r.Warm(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(batches, []int64{100, 200, 250}) || res[0].Duration != 0 || res[0].Batches != 3 || res[0].Written != 250 {
			t.Fatalf("batches %v, result %+v; want 100-item batches and no delay", batches, res[0])
		}
		if base >= 0 {
			if n := tp.sets(t) - base; n != 250 {
				t.Fatalf("Redis executed %d SETs for 250 items", n)
			}
		}
		wantPresent(t, c, map[string]bool{"k-0": true, "k-249": true})
	})
}

func TestRunner_TTLAndTags(t *testing.T) {
	eachTopology(t, allTopologies, func(t *testing.T, tp topology) {
		ctx := t.Context()
		c := newCache(t, tp, "", func(o *tiercache.Options) { o.DefaultTTL = 3 * time.Hour })
		r := newRunner(t, Options{Cache: c},
			Strategy{Name: "tagged", Enabled: true, WarmOnDemand: true, TTL: 10 * time.Minute, Tags: []string{"s"},
				Generator: Items(
					Item{Key: "a", Value: 1},
					Item{Key: "b", Value: 2, TTL: time.Hour, Tags: []string{"i", "s"}},
					Item{Key: "raw", Value: []byte(`{"x":1}`)},
				)},
			Strategy{Name: "plain", Enabled: true, WarmOnDemand: true, Generator: Items(Item{Key: "d", Value: 4})},
		)
		if _, err := r.Warm(ctx); err != nil {
			t.Fatal(err)
		}
		for key, want := range map[string]time.Duration{"a": 10 * time.Minute, "b": time.Hour, "d": 3 * time.Hour} {
			res, err := c.Lookup(ctx, key, new(int))
			if err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			if got := res.ExpiresAt.Sub(res.CreatedAt); got != want {
				t.Errorf("%s lives %v, want %v", key, got, want)
			}
		}
		var raw []byte
		if err := c.Get(ctx, "raw", &raw); err != nil || string(raw) != `{"x":1}` {
			t.Fatalf("raw: %q %v", raw, err)
		}
		// The item's own tag, and the strategy's.
		if err := c.InvalidateTags(ctx, "i"); err != nil {
			t.Fatal(err)
		}
		wantPresent(t, c, map[string]bool{"a": true, "b": false, "raw": true, "d": true})
		if err := c.InvalidateTags(ctx, "s"); err != nil {
			t.Fatal(err)
		}
		wantPresent(t, c, map[string]bool{"a": false, "raw": false, "d": true})
	})
}

func wantPresent(t *testing.T, c *tiercache.Cache, keys map[string]bool) {
	t.Helper()
	for key, want := range keys {
		var raw tiercache.Raw
		err := c.Get(t.Context(), key, &raw)
		if got := err == nil; got != want {
			t.Errorf("%s present: %v (%v), want %v", key, got, err, want)
		}
	}
}

// endless yields items until yield refuses one.
func endless(_ context.Context, yield func(Item) error) error {
	for i := 0; ; i++ {
		if err := yield(Item{Key: fmt.Sprintf("e-%d", i), Value: i}); err != nil {
			return err
		}
	}
}

func TestRunner_Cancel(t *testing.T) {
	eachTopology(t, allTopologies, func(t *testing.T, tp topology) {
		t.Run("between batches", func(t *testing.T) {
			c := newCache(t, tp, "")
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			r := newRunner(t, Options{Cache: c, OnProgress: func(Progress) { cancel() }},
				Strategy{Name: "endless", Enabled: true, WarmOnDemand: true, BatchSize: 10, DelayBetweenBatches: -1, Generator: endless})
			res, err := r.Warm(ctx)
			if !errors.Is(err, context.Canceled) || !errors.Is(res[0].Err, context.Canceled) {
				t.Fatalf("err %v, result %+v", err, res[0])
			}
			// Without a delay the batches after the first are already on
			// their way when the first one reports (maxInFlight in all):
			// each is written or counted as failed (a cancelled write may
			// still land), and nothing after them is sent.
			sent := int64(maxInFlight * 10)
			if w := res[0].Written; w < 10 || w > sent || w%10 != 0 || res[0].Batches != w/10 || w+res[0].Failed != sent {
				t.Fatalf("result %+v, want 10 to %d written of %d sent", res[0], sent, sent)
			}
			wantPresent(t, c, map[string]bool{"e-9": true, "e-" + strconv.Itoa(int(sent)): false})
		})
		t.Run("during the delay", func(t *testing.T) {
			c := newCache(t, tp, "")
			clk := clockwork.NewFakeClock()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			r := newRunner(t, Options{Cache: c, Clock: clk},
				Strategy{Name: "endless", Enabled: true, WarmOnDemand: true, BatchSize: 10, DelayBetweenBatches: time.Hour, Generator: endless})
			done := make(chan Result, 1)
			go func() {
				res, _ := r.Warm(ctx)
				done <- res[0]
			}()
			if err := clk.BlockUntilContext(t.Context(), 1); err != nil {
				t.Fatal(err)
			}
			cancel()
			res := <-done
			if !errors.Is(res.Err, context.Canceled) || res.Written != 10 || res.Failed != 10 {
				t.Fatalf("result %+v, want cancelled with 10 written and the next 10 failed", res)
			}
		})
		t.Run("runner closed", func(t *testing.T) {
			c := newCache(t, tp, "")
			started := make(chan struct{})
			r, err := NewRunner(Options{Cache: c}, Strategy{Name: "blocked", Enabled: true, WarmOnDemand: true,
				Generator: func(ctx context.Context, _ func(Item) error) error {
					close(started)
					<-ctx.Done()
					return ctx.Err()
				}})
			if err != nil {
				t.Fatal(err)
			}
			names, err := r.WarmAsync()
			if err != nil || !slices.Equal(names, []string{"blocked"}) {
				t.Fatalf("WarmAsync: %v %v", names, err)
			}
			<-started
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			// Close waited for the run.
			st := r.Status()[0]
			if st.Running || st.Runs != 1 || !errors.Is(st.Last.Err, context.Canceled) {
				t.Fatalf("status after Close: %+v", st)
			}
			if _, err := r.WarmAsync(); !errors.Is(err, ErrClosed) {
				t.Fatalf("WarmAsync after Close: %v", err)
			}
			if res, err := r.Warm(t.Context()); !errors.Is(err, ErrClosed) || len(res) != 1 {
				t.Fatalf("Warm after Close: %v %v", res, err)
			}
		})
	})
}

func TestRunner_FailureIsolation(t *testing.T) {
	eachTopology(t, allTopologies, func(t *testing.T, tp topology) {
		ctx := t.Context()
		c := newCache(t, tp, "", func(o *tiercache.Options) { o.MaxValueSize = 1024 })
		errBoom := errors.New("boom")
		r := newRunner(t, Options{Cache: c},
			Strategy{Name: "first", Priority: 1, Enabled: true, WarmOnDemand: true, Generator: seq("first", 5)},
			Strategy{Name: "error", Priority: 2, Enabled: true, WarmOnDemand: true, Generator: func(ctx context.Context, yield func(Item) error) error {
				if err := seq("error", 3)(ctx, yield); err != nil {
					return err
				}
				return errBoom
			}},
			Strategy{Name: "panic", Priority: 3, Enabled: true, WarmOnDemand: true, Generator: func(ctx context.Context, yield func(Item) error) error {
				if err := seq("panic", 2)(ctx, yield); err != nil {
					return err
				}
				panic("kaboom")
			}},
			Strategy{Name: "bad-items", Priority: 4, Enabled: true, WarmOnDemand: true, Generator: Items(
				Item{Key: "good-1", Value: 1},
				Item{Key: "", Value: 2},
				Item{Key: "good-2", Value: 3},
				Item{Key: "huge", Value: make([]byte, 2048)},
				Item{Key: "unreadable", Err: errors.New("line 7: bad JSON")},
				Item{Key: "bad-tag", Value: 4, Tags: []string{""}},
				Item{Key: "good-3", Value: 5},
			)},
			Strategy{Name: "last", Priority: 5, Enabled: true, WarmOnDemand: true, Generator: seq("last", 5)},
		)
		results, err := r.Warm(ctx)
		if !errors.Is(err, errBoom) {
			t.Fatalf("Warm error %v, want it to include the generator's", err)
		}
		byName := map[string]Result{}
		for _, res := range results {
			byName[res.Strategy] = res
		}
		if res := byName["error"]; !errors.Is(res.Err, errBoom) || res.Written != 3 {
			t.Errorf("error: %+v, want errBoom after 3 written", res)
		}
		pe, ok := errors.AsType[*GeneratorPanicError](byName["panic"].Err)
		if !ok || pe.Value != "kaboom" || len(pe.Stack) == 0 || byName["panic"].Written != 2 {
			t.Errorf("panic: %+v", byName["panic"])
		}
		if res := byName["bad-items"]; res.Err != nil || res.Written != 3 || res.Failed != 4 || res.KeyErr == nil {
			t.Errorf("bad-items: %+v, want 3 written, 4 failed, no run error", res)
		}
		for _, name := range []string{"first", "last"} {
			if res := byName[name]; res.Err != nil || res.Written != 5 {
				t.Errorf("%s: %+v", name, res)
			}
		}
		wantPresent(t, c, map[string]bool{"first-4": true, "error-2": true, "panic-1": true, "good-3": true, "huge": false, "last-4": true})
	})
}

func TestRunner_AlreadyRunning(t *testing.T) {
	t.Parallel()
	c := newCache(t, topology{name: "memory"}, "")
	started, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	r := newRunner(t, Options{Cache: c}, Strategy{Name: "slow", Enabled: true, WarmOnDemand: true,
		Generator: func(ctx context.Context, yield func(Item) error) error {
			if calls.Add(1) == 1 {
				close(started)
				<-release
			}
			return yield(Item{Key: "k", Value: 1})
		}})
	done := make(chan error, 1)
	go func() {
		_, err := r.Warm(t.Context(), "slow")
		done <- err
	}()
	<-started
	if st := r.Status()[0]; !st.Running {
		t.Fatalf("status %+v, want running", st)
	}
	res, err := r.Warm(t.Context(), "slow")
	if !errors.Is(err, ErrRunning) || !errors.Is(res[0].Err, ErrRunning) {
		t.Fatalf("second run: %v %+v", err, res)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := r.Status()[0]; st.Running || st.Runs != 1 || st.Last.Written != 1 || calls.Load() != 1 {
		t.Fatalf("status %+v after %d calls, want one run", st, calls.Load())
	}
}

func TestRunner_StartupAndDemand(t *testing.T) {
	t.Parallel()
	c := newCache(t, topology{name: "memory"}, "")
	var rec recorder
	var mu sync.Mutex
	var reported []string
	r := newRunner(t, Options{Cache: c, OnResult: func(res Result) {
		mu.Lock()
		reported = append(reported, string(res.Trigger)+":"+res.Strategy)
		mu.Unlock()
	}},
		Strategy{Name: "boot-late", Priority: 2, Enabled: true, WarmOnStartup: true, Generator: rec.gen("boot-late", 1)},
		Strategy{Name: "boot-early", Priority: 1, Enabled: true, WarmOnStartup: true, WarmOnDemand: true, Generator: rec.gen("boot-early", 1)},
		Strategy{Name: "demand", Priority: 3, Enabled: true, WarmOnDemand: true, Generator: rec.gen("demand", 1)},
		Strategy{Name: "disabled", Priority: 1, WarmOnStartup: true, WarmOnDemand: true, Generator: rec.gen("disabled", 1)},
		Strategy{Name: "scheduled-only", Enabled: true, Schedule: "@hourly", Generator: rec.gen("scheduled-only", 1)},
	)
	ctx := t.Context()
	if _, err := r.Startup(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rec.order(); !slices.Equal(got, []string{"boot-early", "boot-late"}) {
		t.Fatalf("startup ran %v", got)
	}
	for _, tc := range []struct {
		names []string
		err   error
	}{
		{[]string{"nope"}, ErrUnknownStrategy},
		{[]string{"demand", "disabled"}, ErrNotOnDemand},
		{[]string{"boot-late"}, ErrNotOnDemand},
		{[]string{"scheduled-only"}, ErrNotOnDemand},
	} {
		if _, err := r.Warm(ctx, tc.names...); !errors.Is(err, tc.err) {
			t.Errorf("Warm(%v): %v, want %v", tc.names, err, tc.err)
		}
		if _, err := r.WarmAsync(tc.names...); !errors.Is(err, tc.err) {
			t.Errorf("WarmAsync(%v): %v, want %v", tc.names, err, tc.err)
		}
	}
	if got := rec.order(); len(got) != 2 {
		t.Fatalf("a refused request ran %v", got[2:])
	}
	// No names: every enabled on-demand strategy, in priority order.
	names, err := r.WarmAsync()
	if err != nil || !slices.Equal(names, []string{"boot-early", "demand"}) {
		t.Fatalf("WarmAsync: %v %v", names, err)
	}
	eventually(t, waitFor, "background runs report", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(reported) < 4 {
			return fmt.Errorf("reported %v", reported)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	want := []string{"startup:boot-early", "startup:boot-late", "demand:boot-early", "demand:demand"}
	if !slices.Equal(reported, want) {
		t.Fatalf("OnResult saw %v, want %v", reported, want)
	}
	for _, st := range r.Status() {
		switch st.Name {
		case "boot-early":
			if st.Runs != 2 || st.Last.Trigger != TriggerDemand || st.Last.Written != 1 || st.Last.Started.IsZero() {
				t.Errorf("status %+v", st)
			}
		case "disabled", "scheduled-only":
			if st.Runs != 0 || !st.Last.Started.IsZero() || !st.NextRun.IsZero() {
				t.Errorf("status %+v, want never run and not scheduled (no Scheduler)", st)
			}
		}
	}
}

func TestFromSeq(t *testing.T) {
	t.Parallel()
	c := newCache(t, topology{name: "memory"}, "")
	errStop := errors.New("stop")
	gen := FromSeq(func(yield func(Item, error) bool) {
		_ = yield(Item{Key: "s1", Value: 1}, nil) && yield(Item{Key: "s2", Value: 2}, nil) && yield(Item{}, errStop)
	})
	r := newRunner(t, Options{Cache: c}, Strategy{Name: "seq", Enabled: true, WarmOnDemand: true, Generator: gen})
	res, err := r.Warm(t.Context())
	if !errors.Is(err, errStop) || res[0].Written != 2 {
		t.Fatalf("%v %+v", err, res)
	}
}

// TestRunner_RecordWarm: every run reaches the cache's recorder and
// Report, which the metrics and the dashboard read.
func TestRunner_RecordWarm(t *testing.T) {
	t.Parallel()
	c := newCache(t, topology{name: "memory"}, "")
	errGen := errors.New("source down")
	r := newRunner(t, Options{Cache: c},
		Strategy{Name: "ok", Priority: 1, Enabled: true, WarmOnDemand: true, Generator: seq("ok", 7)},
		Strategy{Name: "broken", Priority: 2, Enabled: true, WarmOnDemand: true,
			Generator: func(context.Context, func(Item) error) error { return errGen }},
	)
	_, _ = r.Warm(t.Context())
	rep, err := c.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Warming) != 2 {
		t.Fatalf("report holds %+v", rep.Warming)
	}
	ok, broken := rep.Warming[0], rep.Warming[1]
	if ok.Strategy != "ok" || ok.Keys != 7 || ok.Failed != 0 || ok.Err != "" {
		t.Errorf("ok: %+v", ok)
	}
	if broken.Strategy != "broken" || broken.Keys != 0 || !strings.Contains(broken.Err, "source down") {
		t.Errorf("broken: %+v", broken)
	}
}

// TestRunner_RepeatedKeyKeepsLastValue: with no delay, batches overlap in
// flight, yet a key yielded in many batches ends with its last value.
func TestRunner_RepeatedKeyKeepsLastValue(t *testing.T) {
	eachTopology(t, allTopologies, func(t *testing.T, tp topology) {
		c := newCache(t, tp, "")
		const n = 300
		r := newRunner(t, Options{Cache: c}, Strategy{Name: "repeat", Enabled: true, WarmOnDemand: true,
			BatchSize: 3, DelayBetweenBatches: -1,
			Generator: func(_ context.Context, yield func(Item) error) error {
				for i := range n {
					// "hot" in every batch, "other-<i/3>" once each.
					key := "hot"
					if i%3 != 0 {
						key = fmt.Sprintf("other-%d", i)
					}
					if err := yield(Item{Key: key, Value: i}); err != nil {
						return err
					}
				}
				return nil
			}})
		res, err := r.Warm(t.Context())
		if err != nil || res[0].Written != n || res[0].Batches != n/3 {
			t.Fatalf("%+v %v", res, err)
		}
		var got int
		if err := c.Get(t.Context(), "hot", &got); err != nil || got != n-3 {
			t.Fatalf("hot = %d (%v), want %d", got, err, n-3)
		}
	})
}
