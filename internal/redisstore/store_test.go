package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/l2"
	"github.com/tiercache/tiercache/internal/redistest"
)

// TestStore runs the read, write and invalidation behaviour on every
// topology. The behaviours share one deployment per topology and use
// disjoint keys.
func TestStore(t *testing.T) {
	t.Parallel()
	for _, tp := range topologies {
		t.Run(tp.name, func(t *testing.T) {
			t.Parallel()
			d := tp.start(t)
			t.Run("get_set_del", func(t *testing.T) { testGetSetDel(t, d) })
			t.Run("ttl", func(t *testing.T) { testTTL(t, d) })
			t.Run("mget_mset", func(t *testing.T) { testMGetMSet(t, d) })
			t.Run("invalidation", func(t *testing.T) { testInvalidation(t, d) })
		})
	}
}

func testGetSetDel(t *testing.T, d deployment) {
	ctx := context.Background()
	s := newStore(t, d, newRecorder())

	if _, err := s.Get(ctx, "gsd:missing"); !errors.Is(err, l2.ErrNotFound) {
		t.Fatalf("Get of a missing key: err = %v, want l2.ErrNotFound", err)
	}
	mustSet(t, s, "gsd:a", "alpha", 0)
	mustGet(t, s, "gsd:a", "alpha")
	mustSet(t, s, "gsd:a", "beta", 0)
	mustGet(t, s, "gsd:a", "beta")

	// Binary values survive unchanged, and an empty value is not a miss.
	bin := string([]byte{0, 1, 2, 0xff, '\r', '\n'})
	mustSet(t, s, "gsd:bin", bin, 0)
	mustGet(t, s, "gsd:bin", bin)
	mustSet(t, s, "gsd:empty", "", 0)
	got, err := s.Get(ctx, "gsd:empty")
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Get of an empty value = %q, %v; want a non-nil empty slice", got, err)
	}

	// The caller owns the slice Set was given: changing it afterwards
	// must not change what was stored.
	buf := []byte("original")
	if err := s.Set(ctx, "gsd:buf", buf, 0); err != nil {
		t.Fatal(err)
	}
	copy(buf, "CHANGED!")
	mustGet(t, s, "gsd:buf", "original")

	if err := s.Del(ctx); err != nil {
		t.Fatalf("Del(): %v", err)
	}
	if err := s.Del(ctx, "gsd:a"); err != nil {
		t.Fatalf("Del(one): %v", err)
	}
	// Many keys in different slots, some of them missing.
	if err := s.Del(ctx, "gsd:bin", "gsd:empty", "gsd:buf", "gsd:never"); err != nil {
		t.Fatalf("Del(many): %v", err)
	}
	for _, k := range []string{"gsd:a", "gsd:bin", "gsd:empty", "gsd:buf"} {
		if _, err := s.Get(ctx, k); !errors.Is(err, l2.ErrNotFound) {
			t.Errorf("Get(%q) after Del: err = %v, want l2.ErrNotFound", k, err)
		}
	}
}

func testTTL(t *testing.T, d deployment) {
	ctx := context.Background()
	s := newStore(t, d, nil)
	pttl := func(key string) int64 {
		t.Helper()
		v, ok := mustDo(t, d, "PTTL", key).(int64)
		if !ok {
			t.Fatalf("PTTL %s: not an integer", key)
		}
		return v
	}

	mustSet(t, s, "ttl:forever", "v", 0)
	mustSet(t, s, "ttl:negative", "v", -time.Second)
	for _, k := range []string{"ttl:forever", "ttl:negative"} {
		if got := pttl(k); got != -1 {
			t.Errorf("PTTL %s = %d, want -1 (no expiry)", k, got)
		}
	}
	mustSet(t, s, "ttl:minute", "v", time.Minute)
	if got := pttl("ttl:minute"); got <= 50_000 || got > 60_000 {
		t.Errorf("PTTL ttl:minute = %d, want about 60000", got)
	}
	// Below a millisecond rounds up rather than sending the invalid PX 0.
	if err := s.Set(ctx, "ttl:tiny", []byte("v"), time.Microsecond); err != nil {
		t.Fatalf("Set with a 1µs TTL: %v", err)
	}
	err := s.MSet(ctx, []l2.Item{
		{Key: "ttl:m1", Value: []byte("v"), TTL: time.Minute},
		{Key: "ttl:m2", Value: []byte("v")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := pttl("ttl:m1"); got <= 50_000 || got > 60_000 {
		t.Errorf("PTTL ttl:m1 = %d, want about 60000", got)
	}
	if got := pttl("ttl:m2"); got != -1 {
		t.Errorf("PTTL ttl:m2 = %d, want -1", got)
	}

	mustSet(t, s, "ttl:short", "v", 100*time.Millisecond)
	eventually(t, "expiry of ttl:short", func() error {
		if _, err := s.Get(ctx, "ttl:short"); !errors.Is(err, l2.ErrNotFound) {
			return fmt.Errorf("Get: err = %v", err)
		}
		return nil
	})
}

func testMGetMSet(t *testing.T, d deployment) {
	ctx := context.Background()
	s := newStore(t, d, newRecorder())

	got, err := s.MGet(ctx, nil)
	if err != nil || len(got) != 0 {
		t.Fatalf("MGet(nil) = %q, %v", got, err)
	}
	if err := s.MSet(ctx, nil); err != nil {
		t.Fatalf("MSet(nil): %v", err)
	}

	// Enough keys to cover every master of a cluster many times over.
	const n = 600
	items := make([]l2.Item, n)
	for i := range items {
		items[i] = l2.Item{Key: "spread:" + strconv.Itoa(i), Value: []byte("v" + strconv.Itoa(i))}
	}
	items[7].Value = []byte{} // an empty value must come back non-nil
	if err := s.MSet(ctx, items); err != nil {
		t.Fatalf("MSet: %v", err)
	}

	keys := make([]string, 0, n+2)
	keys = append(keys, "spread:missing-a")
	for _, it := range items {
		keys = append(keys, it.Key)
	}
	keys = append(keys, "spread:missing-b")
	vals, err := s.MGet(ctx, keys)
	if err != nil {
		t.Fatalf("MGet: %v", err)
	}
	if len(vals) != len(keys) {
		t.Fatalf("MGet returned %d values for %d keys", len(vals), len(keys))
	}
	if vals[0] != nil || vals[n+1] != nil {
		t.Errorf("missing keys: got %q and %q, want nil", vals[0], vals[n+1])
	}
	for i, it := range items {
		if v := vals[i+1]; v == nil || string(v) != string(it.Value) {
			t.Fatalf("MGet[%s] = %q, want %q", it.Key, v, it.Value)
		}
	}

	// Every master got a share: the batch was split by node.
	total := 0
	for _, m := range d.masters() {
		reply, err := m.Do("KEYS", "spread:*")
		if err != nil {
			t.Fatal(err)
		}
		got := len(reply.([]any))
		if got == 0 {
			t.Errorf("master %s holds none of the %d keys", m.Addr, n)
		}
		total += got
	}
	if total != n {
		t.Errorf("masters hold %d keys in all, want %d", total, n)
	}

	del := make([]string, n)
	for i, it := range items {
		del[i] = it.Key
	}
	if err := s.Del(ctx, del...); err != nil {
		t.Fatalf("Del: %v", err)
	}
	vals, err = s.MGet(ctx, del)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vals {
		if v != nil {
			t.Fatalf("MGet[%s] after Del = %q, want nil", del[i], v)
		}
	}
}

func testInvalidation(t *testing.T, d deployment) {
	ctx := context.Background()
	rec := newRecorder()
	a := newStore(t, d, rec)
	b := newStore(t, d, nil)

	t.Run("write_by_another_client", func(t *testing.T) {
		mustSet(t, b, "inv:k", "v1", 0)
		mustGet(t, a, "inv:k", "v1")
		mustSet(t, b, "inv:k", "v2", 0)
		waitKey(t, rec, "inv:k", 0)

		// Tracking is one-shot: reading again re-arms it, and a
		// write by a plain client (not rueidis) is reported too.
		mustGet(t, a, "inv:k", "v2")
		mustDo(t, d, "SET", "inv:k", "v3")
		waitKey(t, rec, "inv:k", 1)
	})
	t.Run("missing_key_created", func(t *testing.T) {
		if _, err := a.Get(ctx, "inv:absent"); !errors.Is(err, l2.ErrNotFound) {
			t.Fatalf("Get: err = %v, want l2.ErrNotFound", err)
		}
		mustSet(t, b, "inv:absent", "now", 0)
		waitKey(t, rec, "inv:absent", 0)
	})
	t.Run("expiry", func(t *testing.T) {
		mustSet(t, b, "inv:exp", "v", 200*time.Millisecond)
		mustGet(t, a, "inv:exp", "v")
		waitKey(t, rec, "inv:exp", 0)
	})
	t.Run("del", func(t *testing.T) {
		mustSet(t, b, "inv:del", "v", 0)
		mustGet(t, a, "inv:del", "v")
		if err := b.Del(ctx, "inv:del"); err != nil {
			t.Fatal(err)
		}
		waitKey(t, rec, "inv:del", 0)
	})
	t.Run("mget", func(t *testing.T) {
		keys := []string{"inv:m1", "inv:m2", "inv:m3"}
		for _, k := range keys {
			mustSet(t, b, k, "v", 0)
		}
		if _, err := a.MGet(ctx, keys); err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			mustSet(t, b, k, "w", 0)
		}
		for _, k := range keys {
			waitKey(t, rec, k, 0)
		}
	})
	// Last: it empties the deployment.
	t.Run("flushall", func(t *testing.T) {
		mustSet(t, b, "inv:flush", "v", 0)
		mustGet(t, a, "inv:flush", "v")
		before := rec.allCount()
		for _, m := range d.masters() {
			if _, err := m.Do("FLUSHALL"); err != nil {
				t.Fatal(err)
			}
		}
		waitAll(t, rec, before)
	})
}

// TestStore_LinkLoss checks that losing the connections that carry the
// tracking state reports All, and that tracking resumes afterwards.
func TestStore_LinkLoss(t *testing.T) {
	t.Parallel()
	faults := []struct {
		name   string
		inject func(t *testing.T, d deployment)
	}{
		{"client_kill", func(t *testing.T, d deployment) {
			for _, m := range d.masters() {
				if _, err := m.Do("CLIENT", "KILL", "TYPE", "normal"); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"restart", func(t *testing.T, d deployment) {
			if err := d.masters()[0].Restart(); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tp := range topologies {
		t.Run(tp.name, func(t *testing.T) {
			t.Parallel()
			d := tp.start(t)
			// One seed only: a cluster client dials every seed at
			// once and closes all but the first, and each of those
			// closes reports All just after New, which would hide
			// whether the fault itself was reported.
			d.opts.Addrs = d.opts.Addrs[:1]
			for _, f := range faults {
				t.Run(f.name, func(t *testing.T) {
					ctx := context.Background()
					rec := newRecorder()
					a := newStore(t, d, rec)
					// Touch keys on every master so each has a
					// tracked connection to lose.
					var keys []string
					for i := range 30 {
						keys = append(keys, fmt.Sprintf("loss:%s:%d", f.name, i))
					}
					if _, err := a.MGet(ctx, keys); err != nil {
						t.Fatal(err)
					}
					// A fresh store on one seed has lost nothing
					// yet, so the All below comes from the fault.
					if n := rec.allCount(); n != 0 {
						t.Fatalf("All reported %d times before the fault", n)
					}
					f.inject(t, d)
					waitAll(t, rec, 0)

					// The store recovers by itself, and tracking
					// resumes on the new connections.
					key := keys[0]
					eventually(t, "write after the fault", func() error {
						return a.Set(ctx, key, []byte("after"), 0)
					})
					mustGet(t, a, key, "after")
					n := rec.key(key)
					mustDo(t, d, "SET", key, "changed")
					waitKey(t, rec, key, n)
				})
			}
		})
	}
}

// TestStore_SentinelFailover checks that the store follows a Sentinel
// failover and reports All when it switches masters.
func TestStore_SentinelFailover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := redistest.NewSentinel(t)
	rec := newRecorder()
	d := deployment{opts: Options{Addrs: st.SentinelAddrs(), SentinelMaster: st.MasterName}}
	a := newStore(t, d, rec)
	mustSet(t, a, "fo:k", "before", 0)
	mustGet(t, a, "fo:k", "before")
	before := rec.allCount()

	if err := st.Failover(); err != nil {
		t.Fatal(err)
	}
	// Until the sentinels demote it, the old master still accepts
	// writes, and the store may still be using it: poll until a write
	// through the store reaches the new master.
	start := time.Now()
	eventually(t, "write through the store to the new master", func() error {
		if err := a.Set(ctx, "fo:k", []byte("after"), 0); err != nil {
			return err
		}
		got, err := st.Master.Do("GET", "fo:k")
		if err != nil {
			return err
		}
		if got != "after" {
			return fmt.Errorf("GET on the new master %s = %v", st.Master.Addr, got)
		}
		return nil
	})
	t.Logf("writes reached the new master %v after Failover returned", time.Since(start).Round(time.Millisecond))
	mustGet(t, a, "fo:k", "after")
	waitAll(t, rec, before)

	// Tracking works on the new master.
	n := rec.key("fo:k")
	if _, err := st.Master.Do("SET", "fo:k", "changed"); err != nil {
		t.Fatal(err)
	}
	waitKey(t, rec, "fo:k", n)
}

// TestStore_KeepsNoClientCopy checks that rueidis keeps no client-side
// copy: every read reaches Redis as a plain GET on a tracking connection.
func TestStore_KeepsNoClientCopy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.NewStandalone(t)
	s := newStore(t, deployment{opts: Options{Addrs: []string{srv.Addr}}}, newRecorder())
	mustSet(t, s, "copy:k", "v", 0)
	if _, err := srv.Do("CONFIG", "RESETSTAT"); err != nil {
		t.Fatal(err)
	}
	const reads = 5
	for range reads {
		mustGet(t, s, "copy:k", "v")
	}
	if _, err := s.MGet(ctx, []string{"copy:k", "copy:k"}); err != nil {
		t.Fatal(err)
	}
	info, err := srv.Info("commandstats")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := calls(info["cmdstat_get"]), reads+2; got != want {
		t.Errorf("GET calls = %d, want %d (a read was answered client-side)", got, want)
	}
	if got := calls(info["cmdstat_client|caching"]); got != 0 {
		t.Errorf("CLIENT CACHING calls = %d, want 0 (default tracking mode needs no opt-in)", got)
	}
	stats, err := srv.Info("stats")
	if err != nil {
		t.Fatal(err)
	}
	if stats["tracking_clients"] == "0" || stats["tracking_total_keys"] == "0" {
		t.Errorf("tracking_clients=%s tracking_total_keys=%s: reads are not tracked", stats["tracking_clients"], stats["tracking_total_keys"])
	}
	for _, c := range []string{"cmdstat_multi", "cmdstat_pttl"} {
		if info[c] != "" {
			t.Errorf("%s = %s: reads should not be wrapped in MULTI/PTTL/EXEC", c, info[c])
		}
	}
}

// calls extracts calls=N from an INFO commandstats value.
func calls(stat string) int {
	var n int
	fmt.Sscanf(stat, "calls=%d", &n)
	return n
}

// TestStore_NoListener checks that without OnInvalidation the store reads
// with plain GETs and asks Redis to track nothing.
func TestStore_NoListener(t *testing.T) {
	t.Parallel()
	srv := redistest.NewStandalone(t)
	s := newStore(t, deployment{opts: Options{Addrs: []string{srv.Addr}}}, nil)
	mustSet(t, s, "nl:k", "v", 0)
	mustGet(t, s, "nl:k", "v")
	info, err := srv.Info("")
	if err != nil {
		t.Fatal(err)
	}
	if got := info["tracking_clients"]; got != "0" {
		t.Errorf("tracking_clients = %s, want 0", got)
	}
}

func TestStore_Close(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.NewStandalone(t)
	rec := newRecorder()
	s, err := New(Options{Addrs: []string{srv.Addr}, OnInvalidation: rec.record})
	if err != nil {
		t.Fatal(err)
	}
	mustSet(t, s, "close:k", "v", 0)
	mustGet(t, s, "close:k", "v")
	// Closing the connections must not be reported: the listener is
	// going away with the store.
	before := rec.allCount()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	ops := map[string]func() error{
		"Get":  func() error { _, err := s.Get(ctx, "close:k"); return err },
		"MGet": func() error { _, err := s.MGet(ctx, []string{"close:k"}); return err },
		"Set":  func() error { return s.Set(ctx, "close:k", nil, 0) },
		"MSet": func() error { return s.MSet(ctx, []l2.Item{{Key: "close:k"}}) },
		"Del":  func() error { return s.Del(ctx, "close:k") },
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: err = %v, want ErrClosed", name, err)
		}
	}
	if got := rec.allCount(); got != before || rec.key("close:k") != 0 {
		t.Errorf("OnInvalidation called by Close: all %d -> %d, key %d", before, got, rec.key("close:k"))
	}
}

func TestStore_ContextCanceled(t *testing.T) {
	t.Parallel()
	srv := redistest.NewStandalone(t)
	s := newStore(t, deployment{opts: Options{Addrs: []string{srv.Addr}}}, newRecorder())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Get(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get: err = %v, want context.Canceled", err)
	}
	if err := s.Set(ctx, "k", []byte("v"), 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Set: err = %v, want context.Canceled", err)
	}
}

// TestStore_TrackOnly: with TrackOnly, only the reads of the keys it picks
// are tracked, through Get and MGet (all picked, none, or a mix): another
// client's change of every key read brings invalidations of the picked
// keys alone, and the tracking table holds only them. Each tracked read
// costs one CLIENT CACHING YES and no MULTI/PTTL/EXEC.
func TestStore_TrackOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.NewStandalone(t)
	rec := newRecorder()
	opts := Options{Addrs: []string{srv.Addr}, OnInvalidation: rec.record,
		TrackOnly: func(k string) bool { return strings.HasPrefix(k, "v:") }}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	keys := []string{"v:get", "d:get", "v:all1", "v:all2", "d:none1", "d:none2", "v:mix", "d:mix"}
	for _, k := range keys {
		mustSet(t, s, k, "1", 0)
	}
	if _, err := srv.Do("CONFIG", "RESETSTAT"); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, "v:get", "1")
	mustGet(t, s, "d:get", "1")
	for _, batch := range [][]string{{"v:all1", "v:all2"}, {"d:none1", "d:none2"}, {"d:mix", "v:mix"}} {
		got, err := s.MGet(ctx, batch)
		if err != nil || len(got) != 2 || string(got[0]) != "1" || string(got[1]) != "1" {
			t.Fatalf("MGet %v: %q, %v", batch, got, err)
		}
	}
	info, err := srv.Info("commandstats")
	if err != nil {
		t.Fatal(err)
	}
	if got := calls(info["cmdstat_client|caching"]); got != 4 {
		t.Errorf("CLIENT CACHING calls = %d, want 4 (one per read of a v: key)", got)
	}
	if info["cmdstat_multi"] != "" || info["cmdstat_pttl"] != "" {
		t.Errorf("multi %q, pttl %q: tracked reads should not be wrapped in MULTI/PTTL/EXEC", info["cmdstat_multi"], info["cmdstat_pttl"])
	}
	stats, err := srv.Info("stats")
	if err != nil {
		t.Fatal(err)
	}
	if got := stats["tracking_total_keys"]; got != "4" {
		t.Errorf("tracking_total_keys = %s, want 4 (the v: keys)", got)
	}
	// Another client changes every key, the data keys first: their
	// invalidations, if any, would come before the last v: key's.
	for _, k := range append(slices.Clone(keys[1:]), keys[0]) {
		if _, err := srv.Do("SET", k, "2"); err != nil {
			t.Fatal(err)
		}
	}
	waitKey(t, rec, "v:get", 0)
	for _, k := range keys {
		want := 0
		if strings.HasPrefix(k, "v:") {
			want = 1
		}
		if got := rec.key(k); got != want {
			t.Errorf("%s reported %d times, want %d", k, got, want)
		}
	}
}
