package tiercache

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tiercache/tiercache/internal/redistest"
)

// testRecorder remembers what it was told.
type testRecorder struct {
	NopRecorder
	mu       sync.Mutex
	attached *Cache
	l2       map[string]int // "op/result"
	loads    map[string]int
	sent     map[string]int
	breaker  []BreakerState
	warm     []string
}

func newTestRecorder() *testRecorder {
	return &testRecorder{l2: map[string]int{}, loads: map[string]int{}, sent: map[string]int{}}
}

func (r *testRecorder) Attach(c *Cache) { r.mu.Lock(); r.attached = c; r.mu.Unlock() }
func (r *testRecorder) RecordL2(op, result string, _ time.Duration) {
	r.mu.Lock()
	r.l2[op+"/"+result]++
	r.mu.Unlock()
}
func (r *testRecorder) RecordLoad(result string, _ time.Duration) {
	r.mu.Lock()
	r.loads[result]++
	r.mu.Unlock()
}
func (r *testRecorder) RecordInvalidations(kind string, n int) {
	r.mu.Lock()
	r.sent[kind] += n
	r.mu.Unlock()
}
func (r *testRecorder) RecordBreaker(to BreakerState) {
	r.mu.Lock()
	r.breaker = append(r.breaker, to)
	r.mu.Unlock()
}
func (r *testRecorder) RecordWarm(strategy string, keys, failed int, d time.Duration, err error) {
	r.mu.Lock()
	r.warm = append(r.warm, fmt.Sprintf("%s:%d:%d:%v", strategy, keys, failed, err != nil))
	r.mu.Unlock()
}

// counts returns a copy of one of the maps, under the lock.
func (r *testRecorder) counts(m *map[string]int) map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(*m)
}

func TestRecorder_Attach(t *testing.T) {
	t.Parallel()
	rec := newTestRecorder()
	c := newCache(t, "memory", func(o *Options) { o.Recorder = rec })
	if rec.attached != c {
		t.Fatalf("Attach got %p, want the new cache %p", rec.attached, c)
	}
	// The default recorder is the no-op.
	d := newCache(t, "memory")
	if _, ok := d.obs.rec.(NopRecorder); !ok {
		t.Fatalf("default recorder is %T", d.obs.rec)
	}
}

func TestCache_Requests(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	load := func(_ context.Context, k string) (string, error) { return "v:" + k, nil }
	loadMany := func(_ context.Context, keys []string) (map[string]string, error) {
		m := map[string]string{}
		for _, k := range keys {
			m[k] = "v:" + k
		}
		return m, nil
	}
	type want struct {
		op  Op
		res RequestResult
		n   uint64
	}
	for _, tc := range []struct {
		name  string
		l1    bool
		calls func(t *testing.T, c *Cache)
		want  []want
	}{
		{"get", true, func(t *testing.T, c *Cache) {
			if err := c.Set(ctx, "k", "v"); err != nil {
				t.Fatal(err)
			}
			var s string
			_ = c.Get(ctx, "k", &s)
			_, _ = c.Lookup(ctx, "k", &s)
			_ = c.Get(ctx, "missing", &s)
			var n int
			_ = c.Get(ctx, "k", &n) // decoding a string into an int fails
		}, []want{{OpGet, ResultHitL1, 2}, {OpGet, ResultMiss, 1}, {OpGet, ResultError, 1}}},
		{"get without L1", false, func(t *testing.T, c *Cache) {
			if err := c.Set(ctx, "k", "v"); err != nil {
				t.Fatal(err)
			}
			var s string
			_ = c.Get(ctx, "k", &s)
		}, []want{{OpGet, ResultHitL2, 1}}},
		{"get many", true, func(t *testing.T, c *Cache) {
			if err := c.Set(ctx, "k", "v"); err != nil {
				t.Fatal(err)
			}
			m := map[string]string{}
			_ = c.GetMany(ctx, []string{"k", "missing", "k"}, m)
		}, []want{{OpGetMany, ResultHitL1, 1}, {OpGetMany, ResultMiss, 1}}},
		{"fetch", true, func(t *testing.T, c *Cache) {
			for range 3 {
				if _, err := Fetch(ctx, c, "k", load); err != nil {
					t.Fatal(err)
				}
			}
			if _, _, err := FetchResult(ctx, c, "k", load); err != nil {
				t.Fatal(err)
			}
			_, _ = Fetch(ctx, c, "bad", func(context.Context, string) (string, error) { return "", errors.New("backend down") })
		}, []want{{OpFetch, ResultMiss, 1}, {OpFetch, ResultHitL1, 3}, {OpFetch, ResultError, 1}}},
		{"fetch many", true, func(t *testing.T, c *Cache) {
			for range 2 {
				if _, err := FetchMany(ctx, c, []string{"a", "b"}, loadMany); err != nil {
					t.Fatal(err)
				}
			}
		}, []want{{OpFetchMany, ResultMiss, 2}, {OpFetchMany, ResultHitL1, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(t, "memory", func(o *Options) { o.L1.Disabled = !tc.l1 })
			tc.calls(t, c)
			var expect Requests
			for _, w := range tc.want {
				expect[w.op][w.res] = w.n
			}
			if got := c.Counters().Requests; got != expect {
				t.Fatalf("Requests\n got %v\nwant %v", got, expect)
			}
		})
	}
}

// TestCache_RequestsFailing covers stale answers and errors, with a Redis
// that is stopped.
func TestCache_RequestsFailing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.NewStandalone(t)
	clock := newFakeClock()
	rec := newTestRecorder()
	c := newCache(t, "memory", func(o *Options) {
		o.Redis = RedisOptions{Addrs: []string{srv.Addr}}
		o.Now = clock.Now
		o.FailSafe.MaxDuration = time.Hour
		o.Retries = -1
		o.Breaker.Threshold = 2
		o.Breaker.OpenTimeout = time.Hour
		o.Recorder = rec
		o.Logger = discardLogger()
	})
	if err := c.Set(ctx, "k", "v", WithTTL(time.Second)); err != nil {
		t.Fatal(err)
	}
	var s string
	c.l1.Invalidate("k")                        // the write kept it in L1: read it from L2
	if err := c.Get(ctx, "k", &s); err != nil { // fills L1
		t.Fatal(err)
	}
	clock.Advance(2 * time.Second) // logically expired: only a stale copy
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Lookup(ctx, "k", &s); err != nil || res.Source != SourceStale {
		t.Fatalf("Lookup with Redis down: %v, %v; want a stale answer", res.Source, err)
	}
	for range 3 {
		if err := c.Get(ctx, "never-cached", &s); err == nil {
			t.Fatal("Get of an uncached key with Redis down succeeded")
		}
	}
	got := c.Counters().Requests
	if got[OpGet][ResultStale] != 1 || got[OpGet][ResultError] != 3 {
		t.Fatalf("Requests[get] = %v; want 1 stale, 3 errors", got[OpGet])
	}
	l2 := rec.counts(&rec.l2)
	if l2["get/unavailable"] < 2 || l2["get/rejected"] < 1 || l2["set/ok"] != 1 || l2["get/ok"] < 1 {
		t.Fatalf("RecordL2 got %v; want set/ok, get/ok, get/unavailable twice, then get/rejected", l2)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !slices.Equal(rec.breaker, []BreakerState{BreakerOpen}) {
		t.Fatalf("RecordBreaker got %v, want [open]", rec.breaker)
	}
}

func TestRecorder_Events(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rec := newTestRecorder()
	c := newCache(t, "memory", func(o *Options) { o.Recorder = rec })

	// Loader results, a panic included.
	_, _ = Fetch(ctx, c, "ok", func(context.Context, string) (int, error) { return 1, nil })
	_, _ = Fetch(ctx, c, "absent", func(context.Context, string) (int, error) { return 0, ErrNotFound })
	_, _ = Fetch(ctx, c, "fails", func(context.Context, string) (int, error) { return 0, errors.New("boom") })
	_, _ = Fetch(ctx, c, "panics", func(context.Context, string) (int, error) { panic("oops") })
	_, _ = FetchMany(ctx, c, []string{"m1", "m2"}, func(context.Context, []string) (map[string]int, error) {
		return map[string]int{"m1": 1}, nil
	})
	if got, want := rec.counts(&rec.loads), map[string]int{"ok": 2, "not_found": 1, "error": 2}; !maps.Equal(got, want) {
		t.Fatalf("RecordLoad got %v, want %v", got, want)
	}

	// Invalidations sent, by kind.
	if err := c.InvalidateTags(ctx, "a", "b"); err != nil {
		t.Fatal(err)
	}
	if err := c.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "x", "y", "z"); err != nil {
		t.Fatal(err)
	}
	if got, want := rec.counts(&rec.sent), map[string]int{"tag": 2, "clear": 1, "delete": 3}; !maps.Equal(got, want) {
		t.Fatalf("RecordInvalidations got %v, want %v", got, want)
	}

	// Every L2 attempt, the in-memory store's too.
	l2 := rec.counts(&rec.l2)
	for _, k := range []string{"get/ok", "set/ok", "incr/ok", "del/ok", "mget/ok"} {
		if l2[k] == 0 {
			t.Errorf("RecordL2 has no %s: %v", k, l2)
		}
	}
	if st := c.Counters(); st.Loads != 5 {
		t.Errorf("Stats.Loads = %d, want 5", st.Loads)
	}
}

func TestCache_RecordWarm(t *testing.T) {
	t.Parallel()
	rec := newTestRecorder()
	c := newCache(t, "memory", func(o *Options) { o.Recorder = rec })
	for i := range maxWarmRuns + 3 {
		var err error
		if i%2 == 1 {
			err = errors.New("generator failed")
		}
		c.RecordWarm(fmt.Sprint("s", i), 100+i, i, time.Duration(i)*time.Millisecond, err)
	}
	rec.mu.Lock()
	if len(rec.warm) != maxWarmRuns+3 || rec.warm[1] != "s1:101:1:true" {
		t.Errorf("RecordWarm forwarded %v", rec.warm)
	}
	rec.mu.Unlock()
	rep, err := c.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Warming) != maxWarmRuns || rep.Warming[0].Strategy != "s3" || rep.Warming[maxWarmRuns-1].Strategy != fmt.Sprint("s", maxWarmRuns+2) {
		t.Fatalf("Report.Warming keeps %d runs from %q; want the last %d", len(rep.Warming), rep.Warming[0].Strategy, maxWarmRuns)
	}
	if last := rep.Warming[maxWarmRuns-1]; last.Keys != 100+maxWarmRuns+2 || last.Err != "" {
		t.Fatalf("last run %+v", last)
	}
	if r := rep.Warming[0]; r.Err != "generator failed" {
		t.Fatalf("run s3 error %q", r.Err)
	}
}

func TestCache_Tracing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() { _ = tp.Shutdown(ctx) })
	c := newCache(t, "memory", func(o *Options) { o.TracerProvider = tp })

	ctx, root := tp.Tracer("test").Start(ctx, "request")
	if _, err := Fetch(ctx, c, "user:secret-key", func(context.Context, string) (int, error) { return 7, nil }); err != nil {
		t.Fatal(err)
	}
	root.End()

	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range sr.Ended() {
		spans[s.Name()] = s
		for _, a := range s.Attributes() {
			if strings.Contains(a.Value.String(), "secret-key") {
				t.Errorf("span %s carries the key: %v", s.Name(), a)
			}
		}
	}
	for _, name := range []string{"tiercache.l2.get", "tiercache.load", "tiercache.l2.set"} {
		s, ok := spans[name]
		if !ok {
			t.Fatalf("no span %s among %v", name, slices.Sorted(maps.Keys(spans)))
		}
		if s.Parent().TraceID() != root.SpanContext().TraceID() {
			t.Errorf("span %s is not in the caller's trace", name)
		}
	}
	attrs := attribute.NewSet(spans["tiercache.l2.get"].Attributes()...)
	if v, _ := attrs.Value("db.operation.name"); v.AsString() != "get" {
		t.Errorf("db.operation.name = %q", v.AsString())
	}
	if v, _ := attrs.Value("tiercache.result"); v.AsString() != "ok" {
		t.Errorf("a miss is an ok L2 get; tiercache.result = %q", v.AsString())
	}
	if v, _ := attrs.Value("db.system.name"); v.AsString() != "memory" {
		t.Errorf("db.system.name = %q", v.AsString())
	}

	// Without a TracerProvider there is no tracer at all.
	if d := newCache(t, "memory"); d.obs.tracer != nil {
		t.Fatal("tracing is on without a TracerProvider")
	}
}

func TestResultOf(t *testing.T) {
	t.Parallel()
	failed := fmt.Errorf("wrapped: %w", ErrUnavailable)
	notFound := fmt.Errorf("wrapped: %w", ErrNotFound)
	for _, tc := range []struct {
		src  Source
		err  error
		want RequestResult
	}{
		{SourceL1, nil, ResultHitL1},
		{SourceL1, notFound, ResultHitL1}, // a cached "not found"
		{SourceL2, nil, ResultHitL2},
		{SourceL2, notFound, ResultHitL2},
		{SourceLoader, nil, ResultMiss},
		{SourceStale, nil, ResultStale},
		{SourceNone, notFound, ResultMiss},
		{SourceNone, failed, ResultError},
		{SourceL1, ErrInvalidDestination, ResultError},
	} {
		if got := resultOf(tc.src, tc.err); got != tc.want {
			t.Errorf("resultOf(%v, %v) = %v, want %v", tc.src, tc.err, got, tc.want)
		}
	}
}

func TestHitRatios(t *testing.T) {
	t.Parallel()
	var q Requests
	if h := hitRatios(&q); h != (HitRatios{}) {
		t.Fatalf("no reads: %+v", h)
	}
	q[OpGet][ResultHitL1] = 60
	q[OpFetch][ResultHitL2] = 20
	q[OpFetch][ResultMiss] = 15
	q[OpGetMany][ResultError] = 5
	h := hitRatios(&q)
	if h.L1 != 0.6 || h.L2 != 0.5 || h.Overall != 0.8 {
		t.Fatalf("got %+v, want L1 0.6, L2 0.5 (20 of the 40 L1 missed), overall 0.8", h)
	}
}

func TestStripedCounter(t *testing.T) {
	t.Parallel()
	var c stripedCounter
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				c.Add(1)
			}
		})
	}
	wg.Wait()
	if got := c.Load(); got != 8000 {
		t.Fatalf("Load = %d, want 8000", got)
	}
}

// TestObserver_TracingOff: without a TracerProvider, timing an L2 attempt
// and a loader call allocates nothing and leaves the context as it was:
// tracing that is off costs a nil check.
func TestObserver_TracingOff(t *testing.T) {
	ob := newObserver(Options{})
	if ob.tracer != nil {
		t.Fatal("a tracer without a TracerProvider")
	}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		c2, call := ob.l2Begin(ctx, "get")
		ob.l2End(call, "get", nil)
		c3, load := ob.loadBegin(ctx, 1)
		ob.loadEnd(load, nil)
		if c2 != ctx || c3 != ctx || call.span != nil || load.span != nil {
			t.Fatal("a span or a new context with tracing off")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per L2 attempt and loader call with tracing off", allocs)
	}
}
