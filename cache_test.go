package tiercache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/codec"
	"github.com/tiercache/tiercache/internal/envelope"
	"github.com/tiercache/tiercache/internal/l2"
	"github.com/tiercache/tiercache/internal/redisstore"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

type user struct {
	ID    int      `json:"id"`
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
}

// fakeClock is a settable clock for logical expiry.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestCache_SetGet(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		for _, l1 := range []bool{true, false} {
			t.Run(fmt.Sprintf("l1=%v", l1), func(t *testing.T) {
				c := newCache(t, topo, func(o *Options) { o.L1.Disabled = !l1 })
				u := user{ID: 42, Name: "Ada", Roles: []string{"admin"}}
				if err := c.Set(ctx, "user:42", u); err != nil {
					t.Fatal(err)
				}
				for i := range 2 { // second read may come from L1
					var got user
					res, err := c.Lookup(ctx, "user:42", &got)
					if err != nil {
						t.Fatalf("read %d: %v", i, err)
					}
					if got.ID != 42 || got.Name != "Ada" || len(got.Roles) != 1 {
						t.Fatalf("read %d: got %+v", i, got)
					}
					if !l1 && res.Source != SourceL2 {
						t.Fatalf("without L1 the source is %v", res.Source)
					}
				}
				if l1 {
					// Set on a tracked L2 does not fill L1; the first read
					// does, and the next one is an L1 hit.
					var got user
					res, err := c.Lookup(ctx, "user:42", &got)
					if err != nil || res.Source != SourceL1 {
						ct := c.Counters()
						t.Fatalf("third read: source %v, err %v (link resets %d, of which liveness probe misses %d)", res.Source, err, ct.LinkResets, ct.LinkSuspects)
					}
				}

				cases := []struct {
					key   string
					value any
					dst   func() any
					want  func(any) bool
				}{
					{"bytes", []byte("hello"), func() any { return new([]byte) }, func(v any) bool { return string(*v.(*[]byte)) == "hello" }},
					{"string", "héllo", func() any { return new(string) }, func(v any) bool { return *v.(*string) == "héllo" }},
					{"int", 7, func() any { return new(int) }, func(v any) bool { return *v.(*int) == 7 }},
					{"map", map[string]int{"a": 1}, func() any { return new(map[string]int) }, func(v any) bool { return (*v.(*map[string]int))["a"] == 1 }},
					{"api:json", user{ID: 1}, func() any { return new(user) }, func(v any) bool { return v.(*user).ID == 1 }},
					{"a/b:c/d", true, func() any { return new(bool) }, func(v any) bool { return *v.(*bool) }},
				}
				for _, tc := range cases {
					if err := c.Set(ctx, tc.key, tc.value); err != nil {
						t.Fatalf("set %s: %v", tc.key, err)
					}
					for i := range 2 {
						d := tc.dst()
						if err := c.Get(ctx, tc.key, d); err != nil {
							t.Fatalf("get %s (%d): %v", tc.key, i, err)
						}
						if !tc.want(d) {
							t.Fatalf("get %s (%d): wrong value %v", tc.key, i, d)
						}
					}
				}

				var miss user
				if err := c.Get(ctx, "absent", &miss); !errors.Is(err, ErrNotFound) {
					t.Fatalf("missing key: %v", err)
				}
				var ke *KeyError
				if err := c.Get(ctx, "absent", &miss); !errors.As(err, &ke) || ke.Key != "absent" || ke.Op != "get" {
					t.Fatalf("missing key error is not a KeyError: %v", err)
				}
			})
		}
	})
}

func TestCache_Namespace(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		c := newCache(t, topo)
		if err := c.Set(ctx, "k", "v"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.store.Get(ctx, c.Namespace()+":k"); err != nil {
			t.Fatalf("raw key %s:k not in L2: %v", c.Namespace(), err)
		}
		if topo == "production" { // "k" is beyond the tiercache user's keys
			if n := rawDo(t, topo, "EXISTS", "k"); n != int64(0) {
				t.Fatalf("un-namespaced key exists: EXISTS k = %v", n)
			}
		} else if _, err := c.store.Get(ctx, "k"); !errors.Is(err, l2.ErrNotFound) {
			t.Fatalf("un-namespaced key exists: %v", err)
		}
		other, err := New(Options{Namespace: c.Namespace() + "x", Redis: c.opts.Redis})
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		if topo == "memory" {
			other.store = c.store // share the in-process L2 to compare namespaces
		}
		var s string
		if err := other.Get(ctx, "k", &s); !errors.Is(err, ErrNotFound) {
			t.Fatalf("another namespace sees the key: %v %q", err, s)
		}
	})
}

func TestCache_TTL(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		clk := newFakeClock()
		c := newCache(t, topo, func(o *Options) { o.Now = clk.Now; o.DefaultTTL = 10 * time.Minute })

		if err := c.Set(ctx, "short", 1, WithTTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := c.Set(ctx, "default", 2); err != nil {
			t.Fatal(err)
		}
		var v int
		res, err := c.Lookup(ctx, "short", &v)
		if err != nil {
			t.Fatal(err)
		}
		if got := res.ExpiresAt.Sub(clk.Now()); got < 59*time.Second || got > time.Minute {
			t.Fatalf("per-call TTL: expires in %v", got)
		}
		res, err = c.Lookup(ctx, "default", &v)
		if err != nil {
			t.Fatal(err)
		}
		if got := res.ExpiresAt.Sub(clk.Now()); got < 9*time.Minute || got > 10*time.Minute {
			t.Fatalf("default TTL: expires in %v", got)
		}
		// The L2's own expiry matches the TTL.
		if topo != "memory" {
			ms := pttl(t, topo, c, "short")
			if ms <= 50_000 || ms > 60_000 {
				t.Fatalf("PTTL of short = %d ms", ms)
			}
		}
		clk.Advance(2 * time.Minute)
		if err := c.Get(ctx, "short", &v); !errors.Is(err, ErrNotFound) {
			t.Fatalf("expired key still served: %v", err)
		}
		if err := c.Get(ctx, "default", &v); err != nil || v != 2 {
			t.Fatalf("unexpired key: %v %d", err, v)
		}
	})
}

// pttl reads a key's remaining TTL in Redis through the store's client,
// or on production, whose tiercache user may not run PTTL, as the admin.
func pttl(t *testing.T, topo string, c *Cache, key string) int64 {
	t.Helper()
	if topo == "production" {
		ms, _ := rawDo(t, topo, "PTTL", c.prefix+key).(int64)
		return ms
	}
	rs, ok := c.guard.s.(*redisstore.Store)
	if !ok {
		t.Fatalf("store %T is not Redis", c.store)
	}
	cl := rs.Client()
	ms, err := cl.Do(context.Background(), cl.B().Pttl().Key(c.prefix+key).Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func TestCache_TTLJitter(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		clk := newFakeClock()
		c := newCache(t, topo, func(o *Options) { o.Now = clk.Now; o.TTLJitter = 0.5 })
		seen := map[time.Duration]bool{}
		for i := range 50 {
			k := fmt.Sprint("j", i)
			if err := c.Set(ctx, k, i, WithTTL(time.Hour)); err != nil {
				t.Fatal(err)
			}
			var v int
			res, err := c.Lookup(ctx, k, &v)
			if err != nil {
				t.Fatal(err)
			}
			d := res.ExpiresAt.Sub(clk.Now()).Round(time.Second)
			if d < 30*time.Minute || d > time.Hour {
				t.Fatalf("jittered TTL %v outside [30m, 1h]", d)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Fatalf("jitter spread only %d distinct TTLs over 50 keys", len(seen))
		}
	})
}

func TestCache_Delete(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		c := newCache(t, topo)
		var keys []string
		for i := range 100 {
			k := fmt.Sprint("del:", i)
			keys = append(keys, k)
			if err := c.Set(ctx, k, i); err != nil {
				t.Fatal(err)
			}
			var v int
			if err := c.Get(ctx, k, &v); err != nil { // fill L1
				t.Fatal(err)
			}
		}
		if err := c.Delete(ctx, append(keys[:50:50], "never-set")...); err != nil {
			t.Fatal(err)
		}
		for i, k := range keys {
			var v int
			err := c.Get(ctx, k, &v)
			if i < 50 && !errors.Is(err, ErrNotFound) {
				t.Fatalf("%s survived Delete: %v", k, err)
			}
			if i >= 50 && err != nil {
				t.Fatalf("%s was deleted: %v", k, err)
			}
		}
	})
}

func TestCache_Codecs(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		c := newCache(t, topo, func(o *Options) { o.CompressAbove = 256 })
		big := strings.Repeat("compressible ", 200)
		cases := []struct {
			key        string
			value      any
			codec      byte
			compressed bool
		}{
			{"user:1", user{ID: 1}, codec.IDMsgPack, false},
			{"api:users", user{ID: 1}, codec.IDJSON, false},
			{"v1:response:x", map[string]int{"a": 1}, codec.IDJSON, false},
			{"config:flags", []string{"a"}, codec.IDJSON, false},
			{"blob", []byte("raw"), codec.IDRaw, false},
			{"big", big, codec.IDMsgPack, true},
		}
		for _, tc := range cases {
			if err := c.Set(ctx, tc.key, tc.value); err != nil {
				t.Fatal(err)
			}
			b, err := c.store.Get(ctx, c.prefix+tc.key)
			if err != nil {
				t.Fatal(err)
			}
			env, err := envelope.Decode(b, 1<<20)
			if err != nil {
				t.Fatalf("%s: %v", tc.key, err)
			}
			if env.Codec != tc.codec {
				t.Errorf("%s: codec %d, want %d", tc.key, env.Codec, tc.codec)
			}
			if got := len(b) < len(env.Payload); got != tc.compressed {
				t.Errorf("%s: compressed=%v (%d bytes stored for a %d byte payload), want %v", tc.key, got, len(b), len(env.Payload), tc.compressed)
			}
			if tc.codec == codec.IDJSON && !strings.HasPrefix(string(env.Payload), "{") && !strings.HasPrefix(string(env.Payload), "[") {
				t.Errorf("%s: JSON payload %q", tc.key, env.Payload)
			}
		}
		var s string
		if err := c.Get(ctx, "big", &s); err != nil || s != big {
			t.Fatalf("compressed value: %v", err)
		}
	})
}

func TestCache_Corrupt(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		c := newCache(t, topo, func(o *Options) { o.Logger = discardLogger() })
		for i, garbage := range [][]byte{{}, []byte("not an envelope"), {'T', 'C', 99, 1, 0}} {
			key := fmt.Sprint("corrupt:", i)
			if err := c.store.Set(ctx, c.prefix+key, garbage, time.Minute); err != nil {
				t.Fatal(err)
			}
			before := c.Counters().Corrupt
			var v string
			err := c.Get(ctx, key, &v)
			if !errors.Is(err, ErrNotFound) || !errors.Is(err, ErrCorrupt) && !errors.Is(err, envelope.ErrVersion) {
				t.Fatalf("corrupt value: %v", err)
			}
			if c.Counters().Corrupt != before+1 {
				t.Fatalf("corrupt value not counted")
			}
			// Fetch treats it as a miss and repairs it.
			got, err := Fetch(ctx, c, key, func(context.Context, string) (string, error) { return "fresh", nil })
			if err != nil || got != "fresh" {
				t.Fatalf("fetch over corrupt value: %q %v", got, err)
			}
			if err := c.Get(ctx, key, &v); err != nil || v != "fresh" {
				t.Fatalf("after repair: %q %v", v, err)
			}
		}
	})
}

func TestCache_BadInput(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		c := newCache(t, topo, func(o *Options) { o.MaxKeyLength = 16; o.MaxValueSize = 64 })
		long := strings.Repeat("k", 17)
		cases := []struct {
			name string
			key  string
			op   func() error
			want error
		}{
			{"empty key", "", func() error { return c.Set(ctx, "", 1) }, ErrInvalidKey},
			{"empty key get", "", func() error { var v int; return c.Get(ctx, "", &v) }, ErrInvalidKey},
			{"long key", long, func() error { return c.Set(ctx, long, 1) }, ErrInvalidKey},
			{"too large", "big", func() error { return c.Set(ctx, "big", strings.Repeat("x", 65)) }, ErrValueTooLarge},
			{"too large bytes", "bigb", func() error { return c.Set(ctx, "bigb", make([]byte, 65)) }, ErrValueTooLarge},
			{"empty tag", "tagged", func() error { return c.Set(ctx, "tagged", 1, WithTags("")) }, ErrInvalidTag},
			{"many with bad key", "ok1", func() error {
				return c.SetMany(ctx, map[string]any{"ok1": 1, "ok2": 2, long: 3})
			}, ErrInvalidKey},
			{"nil loader", "nl", func() error { _, err := Fetch[int](ctx, c, "nl", nil); return err }, ErrNilLoader},
			{"nil batch loader", "nbl", func() error { _, err := FetchMany[int](ctx, c, []string{"nbl"}, nil); return err }, ErrNilLoader},
			{"nil destination", "k", func() error { return c.Get(ctx, "k", nil) }, ErrInvalidDestination},
			{"bad GetMany destination", "k", func() error { return c.GetMany(ctx, []string{"k"}, 5) }, ErrInvalidDestination},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				if err := tc.op(); !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				if tc.key != "" {
					if _, err := c.store.Get(ctx, c.prefix+tc.key); !errors.Is(err, l2.ErrNotFound) {
						t.Fatalf("something was written for %q: %v", tc.key, err)
					}
				}
			})
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		var v int
		for name, err := range map[string]error{
			"get":    c.Get(ctx, "k", &v),
			"set":    c.Set(ctx, "k", 1),
			"delete": c.Delete(ctx, "k"),
			"many":   c.SetMany(ctx, map[string]any{"k": 1}),
		} {
			if !errors.Is(err, ErrClosed) {
				t.Errorf("%s after Close: %v", name, err)
			}
		}
		if _, err := Fetch(ctx, c, "k", func(context.Context, string) (int, error) { return 1, nil }); !errors.Is(err, ErrClosed) {
			t.Errorf("fetch after Close: %v", err)
		}
	})
}

func TestNew_InvalidOptions(t *testing.T) {
	cases := []struct {
		name string
		opts Options
		want error
	}{
		{"unknown codec", Options{Codec: "xml"}, ErrUnknownCodec},
		{"unknown rule codec", Options{CodecRules: []codec.Rule{{Pattern: "x:*", Codec: "yaml"}}}, ErrUnknownCodec},
		{"malformed URL", Options{Redis: RedisOptions{URL: "redis://user:s3cret@[::1"}}, ErrInvalidOptions},
		{"bad scheme", Options{Redis: RedisOptions{URL: "http://localhost:6379"}}, ErrInvalidOptions},
		{"sentinel without addrs", Options{Redis: RedisOptions{SentinelMaster: "m"}}, ErrInvalidOptions},
		{"namespace with space", Options{Namespace: "a b"}, ErrInvalidOptions},
		{"jitter", Options{TTLJitter: 1.5}, ErrInvalidOptions},
		{"negative L1", Options{L1: L1Options{MaxBytes: -1}}, ErrInvalidOptions},
		{"address without a port", Options{Redis: RedisOptions{Addrs: []string{"no-port"}}}, ErrInvalidOptions},
		{"cluster with a database", Options{Redis: RedisOptions{Addrs: []string{"127.0.0.1:1"}, Cluster: true, DB: 2}}, ErrInvalidOptions},
		{"unix socket URL", Options{Redis: RedisOptions{URL: "unix:///tmp/redis.sock"}}, ErrInvalidOptions},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.opts)
			if err == nil {
				c.Close()
				t.Fatal("New accepted bad options")
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrInvalidOptions) && tc.want == ErrInvalidOptions {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "tiercache: ") {
				t.Fatalf("error %q lacks the tiercache: prefix", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}

func TestCache_L1Bounds(t *testing.T) {
	ctx := context.Background()
	c := newCache(t, "memory", func(o *Options) { o.L1.MaxBytes = 64 << 10 })
	val := strings.Repeat("v", 1000)
	for i := range 2000 {
		k := fmt.Sprint("b", i)
		if err := c.Set(ctx, k, val); err != nil {
			t.Fatal(err)
		}
	}
	c.l1.CleanUp()
	s := c.Counters()
	if s.L1Bytes > 64<<10 || s.L1Entries == 0 {
		t.Fatalf("L1 holds %d bytes in %d entries; bound is %d", s.L1Bytes, s.L1Entries, 64<<10)
	}
	// Every entry written is either still held or counted as evicted.
	if s.L1Evictions == 0 || s.L1Evictions+uint64(s.L1Entries) != 2000 {
		t.Fatalf("%d evictions and %d entries held after 2000 writes", s.L1Evictions, s.L1Entries)
	}
	if js, _ := json.Marshal(s); !strings.Contains(string(js), fmt.Sprintf(`"l1_evictions":%d`, s.L1Evictions)) {
		t.Fatalf("the JSON counters %s lack l1_evictions", js)
	}
	// Everything is still readable from L2.
	var got string
	if err := c.Get(ctx, "b0", &got); err != nil || got != val {
		t.Fatalf("evicted entry not served from L2: %v", err)
	}
}

func TestCache_L1MaxTTL(t *testing.T) {
	ctx := context.Background()
	c := newCache(t, "memory", func(o *Options) { o.L1.MaxTTL = 20 * time.Millisecond })
	if err := c.Set(ctx, "k", 1, WithTTL(time.Hour)); err != nil {
		t.Fatal(err)
	}
	var v int
	if res, _ := c.Lookup(ctx, "k", &v); res.Source != SourceL1 {
		t.Fatalf("first read from %v", res.Source)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := c.Lookup(ctx, "k", &v)
		if err != nil {
			t.Fatal(err)
		}
		if res.Source == SourceL2 {
			return // L1 let go of it long before the TTL
		}
		if time.Now().After(deadline) {
			t.Fatal("L1 kept the entry past L1.MaxTTL")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOptions_OnAccess(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	seen := map[string]int{}
	c := newCache(t, "memory", func(o *Options) {
		o.OnAccess = func(k string) { mu.Lock(); seen[k]++; mu.Unlock() }
	})
	_ = c.Set(ctx, "a", 1)
	_, _ = getInt(c, "a")
	_, _ = getInt(c, "missing")
	_, _ = Fetch(ctx, c, "a", func(context.Context, string) (int, error) { return 1, nil })
	_ = c.GetMany(ctx, []string{"a", "b"}, map[string]int{})
	_, _ = FetchMany(ctx, c, []string{"b"}, func(context.Context, []string) (map[string]int, error) { return nil, nil })
	want := map[string]int{"a": 3, "missing": 1, "b": 2}
	for k, n := range want {
		if seen[k] != n {
			t.Errorf("OnAccess(%q) called %d times, want %d (all: %v)", k, seen[k], n, seen)
		}
	}
}
