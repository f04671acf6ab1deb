package tiercache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/l1"
	"github.com/tiercache/tiercache/internal/redistest"
)

// sibling returns a second instance of c's namespace on topology topo, as
// another process behind the same load balancer would be.
func sibling(t *testing.T, topo string, c *Cache) *Cache {
	t.Helper()
	o := Options{Namespace: c.Namespace(), Redis: redisFor(t, topo)}
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	if topo == "memory" {
		d.shareMemory(c)
	}
	return d
}

func lookupRaw(t *testing.T, c *Cache, key string) (Raw, Result) {
	t.Helper()
	var r Raw
	res, err := c.Lookup(context.Background(), key, &r)
	if err != nil {
		t.Fatalf("Lookup(%q): %v", key, err)
	}
	return r, res
}

func TestRaw_ContentTypeAndETag(t *testing.T) {
	t.Parallel()
	eachTopology(t, func(t *testing.T, topo string) {
		t.Parallel()
		ctx := context.Background()
		c := newCache(t, topo)
		d := sibling(t, topo, c)
		in := Raw{Codec: "json", ContentType: "application/json; charset=utf-8", Data: []byte(`{"id":7,"name":"Ada"}`)}
		if err := c.Set(ctx, "user:7", in, WithTTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
		got, res := lookupRaw(t, c, "user:7")
		if got.Codec != "json" || got.ContentType != in.ContentType || string(got.Data) != string(in.Data) {
			t.Fatalf("Lookup = %+v, want %+v", got, in)
		}
		if len(res.ETag) != 16 || res.ContentType != in.ContentType {
			t.Fatalf("Result = %+v, want a 16-digit ETag and the content type", res)
		}
		// Another instance computes the same ETag for the same value.
		_, res2 := lookupRaw(t, d, "user:7")
		if res2.ETag != res.ETag {
			t.Fatalf("ETag on the second instance = %q, want %q", res2.ETag, res.ETag)
		}
		// Stored with the json codec, it decodes into a Go type.
		var u struct {
			ID   int    `json:"id"`
			Name string `json:"name"`
		}
		if err := d.Get(ctx, "user:7", &u); err != nil || u.ID != 7 || u.Name != "Ada" {
			t.Fatalf("Get into a struct = %+v, %v", u, err)
		}
		// A write changes the ETag everywhere.
		in.Data = []byte(`{"id":7,"name":"Grace"}`)
		if err := c.Set(ctx, "user:7", in, WithTTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { _, r := lookupRaw(t, d, "user:7"); return r.ETag != res.ETag })
	})
}

func TestRaw_Invalid(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCache(t, "memory")
	for name, v := range map[string]Raw{
		"bad json":          {Codec: "json", Data: []byte(`{"a":`)},
		"empty json":        {Codec: "json"},
		"bad msgpack":       {Codec: "msgpack", Data: []byte{0x92, 0x01}},
		"two msgpacks":      {Codec: "msgpack", Data: []byte{0x01, 0x02}},
		"unknown codec":     {Codec: "yaml", Data: []byte("a: 1")},
		"bad content type":  {ContentType: "not a type", Data: []byte("x")},
		"no subtype":        {ContentType: "json", Data: []byte("x")},
		"content type crlf": {ContentType: "text/plain\r\nX-A: b", Data: []byte("x")},
		"long content type": {ContentType: "text/" + string(make([]byte, 300)), Data: []byte("x")},
	} {
		err := c.Set(ctx, "k", v)
		if !errors.Is(err, ErrInvalidValue) {
			t.Errorf("%s: Set error = %v, want ErrInvalidValue", name, err)
		}
		if err := c.Get(ctx, "k", new(Raw)); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: something was written: Get error = %v", name, err)
		}
	}
	if err := c.SetMany(ctx, map[string]any{"k": []byte("x")}, IfAbsent()); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("SetMany with IfAbsent: error = %v, want ErrInvalidOptions", err)
	}
}

func TestConditionalWrites(t *testing.T) {
	t.Parallel()
	eachTopology(t, func(t *testing.T, topo string) {
		t.Parallel()
		ctx := context.Background()
		c := newCache(t, topo)
		d := sibling(t, topo, c)
		if err := c.Set(ctx, "k", []byte("v1"), IfMatch("*")); !errors.Is(err, ErrConditionFailed) {
			t.Fatalf("IfMatch(*) on a missing key: %v, want ErrConditionFailed", err)
		}
		if err := c.Set(ctx, "k", []byte("v1"), IfAbsent(), WithTags("g")); err != nil {
			t.Fatalf("IfAbsent on a missing key: %v", err)
		}
		if err := d.Set(ctx, "k", []byte("v0"), IfAbsent()); !errors.Is(err, ErrConditionFailed) {
			t.Fatalf("IfAbsent on a present key: %v, want ErrConditionFailed", err)
		}
		_, r1 := lookupRaw(t, c, "k")
		var reported string
		if err := d.Set(ctx, "k", []byte("v2"), IfMatch(`"`+r1.ETag+`"`), WithTags("g"), ReportETag(&reported)); err != nil {
			t.Fatalf("IfMatch with the current quoted ETag: %v", err)
		}
		waitFor(t, func() bool { _, r := lookupRaw(t, c, "k"); return r.ETag == reported })
		waitFor(t, func() bool { v, _ := lookupRaw(t, c, "k"); return string(v.Data) == "v2" })
		if err := c.Set(ctx, "k", []byte("v3"), IfMatch(r1.ETag)); !errors.Is(err, ErrConditionFailed) {
			t.Fatalf("IfMatch with an old ETag: %v, want ErrConditionFailed", err)
		}
		if err := c.DeleteIfMatch(ctx, "k", r1.ETag); !errors.Is(err, ErrConditionFailed) {
			t.Fatalf("DeleteIfMatch with an old ETag: %v, want ErrConditionFailed", err)
		}
		v, r2 := lookupRaw(t, c, "k")
		if string(v.Data) != "v2" {
			t.Fatalf("after failed conditions the value is %q, want v2", v.Data)
		}
		// A tag invalidation makes the value not current.
		if err := d.InvalidateTags(ctx, "g"); err != nil {
			t.Fatal(err)
		}
		if err := c.Set(ctx, "k", []byte("v4"), IfMatch(r2.ETag)); !errors.Is(err, ErrConditionFailed) {
			t.Fatalf("IfMatch after the tag was invalidated: %v, want ErrConditionFailed", err)
		}
		if err := c.Set(ctx, "k", []byte("v4"), IfAbsent()); err != nil {
			t.Fatalf("IfAbsent after the tag was invalidated: %v", err)
		}
		_, r4 := lookupRaw(t, c, "k")
		if err := d.DeleteIfMatch(ctx, "k", r4.ETag); err != nil {
			t.Fatalf("DeleteIfMatch with the current ETag: %v", err)
		}
		waitFor(t, func() bool { return errors.Is(c.Get(ctx, "k", new(Raw)), ErrNotFound) })
	})
}

// An invalidation another instance has acknowledged fails a conditional
// write at once, even while its push is still on the way to this
// instance: the check reads versions from Redis, not from the tracked
// cache. The lagging push is modelled by putting the old versions back
// into this instance's cache after the invalidation.
func TestConditionalWrites_InvalidationPushInFlight(t *testing.T) {
	t.Parallel()
	eachTopology(t, func(t *testing.T, topo string) {
		t.Parallel()
		ctx := context.Background()
		c := newCache(t, topo)
		d := sibling(t, topo, c)
		if err := c.Set(ctx, "k", []byte("v1"), WithTags("g")); err != nil {
			t.Fatal(err)
		}
		_, r := lookupRaw(t, c, "k")
		ns, tv, err := c.vers.current(ctx, c, []string{"g"}, cachedVersions)
		if err != nil {
			t.Fatal(err)
		}
		lagging := func() {
			old := &l1.Entry{NsVer: ns, Tags: []string{"g"}, TagVers: tv}
			// Let the real push land first, so that it cannot undo the model.
			waitFor(t, func() bool { return c.vers.quickValidity(old) != validYes })
			c.vers.store(map[string]uint64{c.vers.tagKey("g"): tv[0], c.vers.nsKey: ns}, c.vers.gen.Load())
			if vd := c.vers.quickValidity(old); vd != validYes {
				t.Fatalf("the modelled lagging cache does not hold the old versions: %v", vd)
			}
		}
		if err := d.InvalidateTags(ctx, "g"); err != nil {
			t.Fatal(err)
		}
		lagging()
		if err := c.Set(ctx, "k", []byte("v2"), IfMatch(r.ETag)); !errors.Is(err, ErrConditionFailed) {
			t.Fatalf("IfMatch after another instance invalidated the tag: %v, want ErrConditionFailed", err)
		}
		if err := c.Set(ctx, "k", []byte("v2"), IfMatch("*")); !errors.Is(err, ErrConditionFailed) {
			t.Fatalf("IfMatch(*) after another instance invalidated the tag: %v, want ErrConditionFailed", err)
		}
		if err := c.Set(ctx, "k2", []byte("v1"), WithTags("g")); err != nil {
			t.Fatal(err)
		}
		_, r2 := lookupRaw(t, c, "k2")
		if ns, tv, err = c.vers.current(ctx, c, []string{"g"}, freshVersions); err != nil {
			t.Fatal(err)
		}
		if err := d.Clear(ctx); err != nil {
			t.Fatal(err)
		}
		lagging()
		if err := c.DeleteIfMatch(ctx, "k2", r2.ETag); !errors.Is(err, ErrConditionFailed) {
			t.Fatalf("DeleteIfMatch after another instance cleared the namespace: %v, want ErrConditionFailed", err)
		}
		if err := c.Set(ctx, "k2", []byte("v3"), IfAbsent()); err != nil {
			t.Fatalf("IfAbsent after another instance cleared the namespace: %v", err)
		}
	})
}

// Writers that all hold the same ETag race to replace the value: exactly
// one of them may win each round, on one instance or across two.
func TestConditionalWrites_OneWinner(t *testing.T) {
	t.Parallel()
	eachTopology(t, func(t *testing.T, topo string) {
		t.Parallel()
		ctx := context.Background()
		caches := []*Cache{newCache(t, topo)}
		caches = append(caches, sibling(t, topo, caches[0]))
		if err := caches[0].Set(ctx, "race", []byte("start")); err != nil {
			t.Fatal(err)
		}
		const rounds, writers = 10, 8
		for round := range rounds {
			_, res := lookupRaw(t, caches[0], "race")
			var wins, fails atomic.Int32
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					err := caches[w%2].Set(ctx, "race", []byte{byte(round), byte(w)}, IfMatch(res.ETag))
					switch {
					case err == nil:
						wins.Add(1)
					case errors.Is(err, ErrConditionFailed):
						fails.Add(1)
					default:
						t.Errorf("round %d writer %d: %v", round, w, err)
					}
				})
			}
			wg.Wait()
			if wins.Load() != 1 || fails.Load() != writers-1 {
				t.Fatalf("round %d: %d writers won and %d failed, want 1 and %d", round, wins.Load(), fails.Load(), writers-1)
			}
		}
	})
}

// waitFor polls cond for up to five seconds: another instance sees a write
// once its invalidation arrives.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	eventually(t, 5*time.Second, "waiting", func() error {
		if cond() {
			return nil
		}
		return errors.New("not yet")
	})
}

// A conditional write may be the half-open breaker's one probe: the
// version reads its check makes run under that admission instead of
// being refused as a second probe, so the write succeeds and the breaker
// closes.
func TestConditionalWrites_HalfOpenProbe(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.NewStandalone(t)
	ns := testNamespace(t)
	mk := func() *Cache {
		c, err := New(Options{Namespace: ns, Redis: RedisOptions{Addrs: []string{srv.Addr}}, Retries: -1,
			OperationTimeout: 200 * time.Millisecond,
			Breaker:          BreakerOptions{Threshold: 1, OpenTimeout: 100 * time.Millisecond, HalfOpenProbes: 1}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	writer, d := mk(), mk()
	if err := writer.Set(ctx, "k", []byte("v"), WithTags("g")); err != nil {
		t.Fatal(err)
	}
	_, res := lookupRaw(t, writer, "k")
	// d's breaker opens on a frozen Redis (and the lost link makes it
	// forget every version).
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := d.Get(ctx, "other", new(Raw)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get with Redis frozen: %v", err)
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return d.BreakerState() == BreakerHalfOpen })
	// A conditional delete needs no stamp: its compare-and-swap is the
	// probe, and its check must read the versions.
	if err := d.DeleteIfMatch(ctx, "k", res.ETag); err != nil {
		t.Fatalf("conditional delete as the half-open probe: %v", err)
	}
	if s := d.BreakerState(); s != BreakerClosed {
		t.Fatalf("breaker %s after the probe succeeded, want closed", s)
	}
}
