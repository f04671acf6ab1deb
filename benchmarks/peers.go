package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/dgraph-io/ristretto"
	ekocache "github.com/eko/gocache/lib/v4/cache"
	ekostore "github.com/eko/gocache/lib/v4/store"
	ekoredis "github.com/eko/gocache/store/redis/v4"
	ekoristretto "github.com/eko/gocache/store/ristretto/v4"
	grcache "github.com/go-redis/cache/v9"
	"github.com/maypok86/otter/v2"
	jetcache "github.com/mgtv-tech/jetcache-go"
	jetlocal "github.com/mgtv-tech/jetcache-go/local"
	jetremote "github.com/mgtv-tech/jetcache-go/remote"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	"github.com/redis/rueidis/rueidisaside"

	"github.com/tiercache/tiercache"
)

// The same lifetimes for every library: an hour in Redis, a minute in the
// local tier where the library has a separate local lifetime.
const (
	remoteTTL = time.Hour
	localTTL  = time.Minute
)

// errMiss is what every adapter's get returns when the key is absent.
var errMiss = errors.New("miss")

// instCfg configures one instance of a library (one "process" of a fleet).
type instCfg struct {
	addr         string
	ns           string // key prefix, so that runs never share keys
	id           int    // instance number within a fleet
	localOff     bool   // no local tier (L2-only reads)
	localBytes   int64  // local tier bound in bytes
	localEntries int    // for go-redis/cache's TinyLFU, bounded by entries
	lock         bool   // tiercache: Options.Lock.Enabled
	syncLocal    bool   // jetcache-go: the README's pub/sub local invalidation
	oneConn      bool   // rueidis: PipelineMultiplex -1 (one connection), as tiercache and rueidisaside set it
	load         func(ctx context.Context, key string) ([]byte, error)
}

// inst is one instance of a library behind the operations the workloads
// use. fetch is the library's own get-or-load API with cfg.load.
type inst struct {
	set   func(ctx context.Context, key string, v []byte) error
	get   func(ctx context.Context, key string) ([]byte, error)
	fetch func(ctx context.Context, key string) ([]byte, error)
	note  func() string
	// localHits, where set, is the library's own count of reads answered
	// by its local tier (used where Redis's GET count would not do).
	localHits func() uint64
	close     func()
}

// libs are the libraries in the order of the tables.
var libs = []string{"rueidis", "tiercache", "rueidisaside", "go-redis/cache", "eko/gocache", "jetcache-go", "otter"}

func newInst(lib string, cfg instCfg) (*inst, error) {
	switch lib {
	case "rueidis":
		return newRueidis(cfg)
	case "rueidis+1conn":
		cfg.oneConn = true
		return newRueidis(cfg)
	case "tiercache":
		return newTiercache(cfg)
	case "rueidisaside":
		return newAside(cfg)
	case "go-redis/cache":
		return newGoRedisCache(cfg)
	case "eko/gocache":
		return newEko(cfg)
	case "jetcache-go":
		return newJetcache(cfg)
	case "otter":
		return newOtter(cfg)
	}
	return nil, fmt.Errorf("unknown library %q", lib)
}

// rueidis: a plain client; with a local tier, reads use DoCache (server-
// assisted client-side caching, CacheSizeEachConn bytes per connection).
// It has no loader API.
func newRueidis(cfg instCfg) (*inst, error) {
	opt := rueidis.ClientOption{InitAddress: []string{cfg.addr}, DisableCache: cfg.localOff}
	if !cfg.localOff {
		opt.CacheSizeEachConn = int(cfg.localBytes)
	}
	if cfg.oneConn {
		opt.PipelineMultiplex = -1
	}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, err
	}
	return &inst{
		set: func(ctx context.Context, key string, v []byte) error {
			return c.Do(ctx, c.B().Set().Key(cfg.ns+key).Value(rueidis.BinaryString(v)).Px(remoteTTL).Build()).Error()
		},
		get: func(ctx context.Context, key string) ([]byte, error) {
			var r rueidis.RedisResult
			if cfg.localOff {
				r = c.Do(ctx, c.B().Get().Key(cfg.ns+key).Build())
			} else {
				r = c.DoCache(ctx, c.B().Get().Key(cfg.ns+key).Cache(), localTTL)
			}
			b, err := r.AsBytes()
			if rueidis.IsRedisNil(err) {
				return nil, errMiss
			}
			return b, err
		},
		close: c.Close,
	}, nil
}

// tiercache: New with Redis, L1 bounded by bytes, DefaultTTL an hour,
// L1.MaxTTL a minute; Fetch as the loader API.
func newTiercache(cfg instCfg) (*inst, error) {
	c, err := tiercache.New(tiercache.Options{
		Namespace:  "tc" + cfg.ns[:len(cfg.ns)-1],
		Redis:      tiercache.RedisOptions{Addrs: []string{cfg.addr}},
		L1:         tiercache.L1Options{Disabled: cfg.localOff, MaxBytes: cfg.localBytes, MaxTTL: localTTL},
		DefaultTTL: remoteTTL,
		Lock:       tiercache.LockOptions{Enabled: cfg.lock},
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, err
	}
	return &inst{
		set: func(ctx context.Context, key string, v []byte) error { return c.Set(ctx, key, v) },
		get: func(ctx context.Context, key string) ([]byte, error) {
			var b []byte
			err := c.Get(ctx, key, &b)
			if errors.Is(err, tiercache.ErrNotFound) {
				return nil, errMiss
			}
			return b, err
		},
		fetch: func(ctx context.Context, key string) ([]byte, error) {
			return tiercache.Fetch(ctx, c, key, cfg.load)
		},
		note: func() string {
			k := c.Counters()
			return fmt.Sprintf("tiercache counters: hits_l1=%d hits_l2=%d misses=%d loads=%d lock_waits=%d l1_entries=%d l1_bytes=%d",
				k.HitsL1, k.HitsL2, k.Misses, k.Loads, k.LockWaits, k.L1Entries, k.L1Bytes)
		},
		localHits: func() uint64 { return c.Counters().HitsL1 },
		close:     func() { _ = c.Close() },
	}, nil
}

// rueidisaside: NewClient as in its README; Get(ctx, ttl, key, fn) is both
// the read and the loader API, its ttl is the Redis and the client-side
// lifetime alike. It has no write but Del: writes are a SET through its
// Client(). Its client-side cache is CacheSizeEachConn bytes on its one
// connection (it sets PipelineMultiplex to -1).
func newAside(cfg instCfg) (*inst, error) {
	opt := rueidis.ClientOption{InitAddress: []string{cfg.addr}, DisableCache: cfg.localOff}
	if !cfg.localOff {
		opt.CacheSizeEachConn = int(cfg.localBytes)
	}
	c, err := rueidisaside.NewClient(rueidisaside.ClientOption{ClientOption: opt})
	if err != nil {
		return nil, err
	}
	str := func(v string, err error) ([]byte, error) {
		if rueidis.IsRedisNil(err) {
			return nil, errMiss
		}
		if err != nil {
			return nil, err
		}
		return []byte(v), nil
	}
	return &inst{
		set: func(ctx context.Context, key string, v []byte) error {
			raw := c.Client()
			return raw.Do(ctx, raw.B().Set().Key(cfg.ns+key).Value(rueidis.BinaryString(v)).Px(remoteTTL).Build()).Error()
		},
		get: func(ctx context.Context, key string) ([]byte, error) {
			return str(c.Get(ctx, remoteTTL, cfg.ns+key, nil))
		},
		fetch: func(ctx context.Context, key string) ([]byte, error) {
			return str(c.Get(ctx, remoteTTL, cfg.ns+key, func(ctx context.Context, _ string) (string, error) {
				b, err := cfg.load(ctx, key)
				return string(b), err
			}))
		},
		close: c.Close,
	}, nil
}

// go-redis/cache: New with a Ring (as its README) and, with a local tier,
// NewTinyLFU(entries, a minute); Once as the loader API.
func newGoRedisCache(cfg instCfg) (*inst, error) {
	ring := goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"server1": cfg.addr}})
	opt := &grcache.Options{Redis: ring}
	if !cfg.localOff {
		opt.LocalCache = grcache.NewTinyLFU(cfg.localEntries, localTTL)
	}
	c := grcache.New(opt)
	return &inst{
		set: func(ctx context.Context, key string, v []byte) error {
			return c.Set(&grcache.Item{Ctx: ctx, Key: cfg.ns + key, Value: v, TTL: remoteTTL})
		},
		get: func(ctx context.Context, key string) ([]byte, error) {
			var b []byte
			err := c.Get(ctx, cfg.ns+key, &b)
			if errors.Is(err, grcache.ErrCacheMiss) {
				return nil, errMiss
			}
			return b, err
		},
		fetch: func(ctx context.Context, key string) ([]byte, error) {
			var b []byte
			err := c.Once(&grcache.Item{Ctx: ctx, Key: cfg.ns + key, Value: &b, TTL: remoteTTL,
				Do: func(it *grcache.Item) (any, error) { return cfg.load(it.Context(), key) }})
			return b, err
		},
		close: func() { _ = ring.Close() },
	}, nil
}

// eko/gocache: a chain of a Ristretto store (MaxCost = the byte budget,
// cost = value length + 16 for the key, plus Ristretto's internal cost)
// and a Redis store (go-redis v9 client, expiration an hour), as its
// README's chained cache; NewLoadable over the chain as the loader API.
// Without a local tier, the Redis store alone.
func newEko(cfg instCfg) (*inst, error) {
	rdb := goredis.NewClient(&goredis.Options{Addr: cfg.addr})
	redisStore := ekoredis.NewRedis(rdb, ekostore.WithExpiration(remoteTTL))
	var mgr ekocache.CacheInterface[any]
	var rc *ristretto.Cache
	if cfg.localOff {
		mgr = ekocache.New[any](redisStore)
	} else {
		var err error
		rc, err = ristretto.NewCache(&ristretto.Config{
			NumCounters: max(10*int64(cfg.localEntries), 1000),
			MaxCost:     cfg.localBytes,
			BufferItems: 64,
			Cost: func(v any) int64 {
				switch v := v.(type) {
				case []byte:
					return int64(len(v)) + 16
				case string:
					return int64(len(v)) + 16
				}
				return 1
			},
		})
		if err != nil {
			return nil, err
		}
		mgr = ekocache.NewChain[any](ekocache.New[any](ekoristretto.NewRistretto(rc, ekostore.WithExpiration(localTTL))), ekocache.New[any](redisStore))
	}
	loadable := ekocache.NewLoadable[any](func(ctx context.Context, key any) (any, []ekostore.Option, error) {
		k := key.(string)[len(cfg.ns):]
		b, err := cfg.load(ctx, k)
		return b, []ekostore.Option{ekostore.WithExpiration(remoteTTL)}, err
	}, mgr)
	conv := func(v any, err error) ([]byte, error) {
		if err != nil {
			if errors.Is(err, ekostore.NotFound{}) {
				return nil, errMiss
			}
			return nil, err
		}
		switch v := v.(type) {
		case []byte:
			return v, nil
		case string:
			return []byte(v), nil
		}
		return nil, fmt.Errorf("eko: unexpected %T", v)
	}
	return &inst{
		set: func(ctx context.Context, key string, v []byte) error {
			err := mgr.Set(ctx, cfg.ns+key, v, ekostore.WithExpiration(remoteTTL))
			if rc != nil {
				rc.Wait()
			}
			return err
		},
		get:   func(ctx context.Context, key string) ([]byte, error) { return conv(mgr.Get(ctx, cfg.ns+key)) },
		fetch: func(ctx context.Context, key string) ([]byte, error) { return conv(loadable.Get(ctx, cfg.ns+key)) },
		close: func() { _ = loadable.Close(); _ = rdb.Close() },
	}, nil
}

// jetcache-go: New with the go-redis v9 adapter on a Ring and FreeCache
// (the byte budget, a minute) as its README; Once as the loader API. Its
// FreeCache is one per process (created once), so each instance of a
// fleet uses its own inner key prefix. With syncLocal, the README's
// pub/sub invalidation of other instances' local caches.
func newJetcache(cfg instCfg) (*inst, error) {
	ring := goredis.NewRing(&goredis.RingOptions{Addrs: map[string]string{"localhost": cfg.addr}})
	opts := []jetcache.Option{
		jetcache.WithName("jc" + cfg.ns[:len(cfg.ns)-1]),
		jetcache.WithRemote(jetremote.NewGoRedisV9Adapter(ring)),
		jetcache.WithRemoteExpiry(remoteTTL),
	}
	if !cfg.localOff {
		opts = append(opts, jetcache.WithLocal(jetlocal.NewFreeCache(jetlocal.Size(cfg.localBytes), localTTL, fmt.Sprint("i", cfg.id, ":"))))
	}
	var c jetcache.Cache
	var pubsub *goredis.PubSub
	if cfg.syncLocal {
		const channel = "jetcache-sync"
		source := fmt.Sprint("instance-", cfg.id)
		pubsub = ring.Subscribe(context.Background(), channel)
		if _, err := pubsub.Receive(context.Background()); err != nil { // subscribed
			return nil, err
		}
		opts = append(opts,
			jetcache.WithSourceId(source),
			jetcache.WithSyncLocal(true),
			jetcache.WithEventHandler(func(event *jetcache.Event) {
				bs, _ := json.Marshal(event)
				ring.Publish(context.Background(), channel, string(bs))
			}))
		c = jetcache.New(opts...)
		go func() {
			for msg := range pubsub.Channel() {
				var event *jetcache.Event
				if err := json.Unmarshal([]byte(msg.Payload), &event); err != nil {
					continue
				}
				if event.SourceID != source {
					for _, key := range event.Keys {
						c.DeleteFromLocalCache(key)
					}
				}
			}
		}()
	} else {
		c = jetcache.New(opts...)
	}
	return &inst{
		set: func(ctx context.Context, key string, v []byte) error {
			return c.Set(ctx, key, jetcache.Value(v), jetcache.TTL(remoteTTL))
		},
		get: func(ctx context.Context, key string) ([]byte, error) {
			var b []byte
			err := c.Get(ctx, key, &b)
			if errors.Is(err, jetcache.ErrCacheMiss) {
				return nil, errMiss
			}
			return b, err
		},
		fetch: func(ctx context.Context, key string) ([]byte, error) {
			var b []byte
			err := c.Once(ctx, key, jetcache.Value(&b), jetcache.TTL(remoteTTL),
				jetcache.Do(func(ctx context.Context) (any, error) { return cfg.load(ctx, key) }))
			return b, err
		},
		close: func() {
			c.Close()
			if pubsub != nil {
				_ = pubsub.Close()
			}
			_ = ring.Close()
		},
	}, nil
}

// otterWeight is the weigher that tiercache's L1 uses: key, payload and
// 160 bytes of bookkeeping per entry. Raw otter gets the same, so that the
// same byte budget holds the same number of entries.
func otterWeight(k string, v []byte) uint32 { return uint32(len(k) + len(v) + 160) }

// otter: configured as an L1 needs it (a byte bound, expiry after write
// on a coarse clock); Get with a loader as the loader API. No shared tier.
func newOtter(cfg instCfg) (*inst, error) {
	clock := otter.NewCoarseClock(time.Millisecond)
	o, err := otter.New(&otter.Options[string, []byte]{
		MaximumWeight:    uint64(cfg.localBytes),
		Weigher:          otterWeight,
		ExpiryCalculator: otter.ExpiryWriting[string, []byte](localTTL),
		Clock:            clock,
	})
	if err != nil {
		return nil, err
	}
	loader := otter.LoaderFunc[string, []byte](func(ctx context.Context, key string) ([]byte, error) {
		return cfg.load(ctx, key)
	})
	return &inst{
		set: func(_ context.Context, key string, v []byte) error { o.Set(key, v); return nil },
		get: func(_ context.Context, key string) ([]byte, error) {
			if v, ok := o.GetIfPresent(key); ok {
				return v, nil
			}
			return nil, errMiss
		},
		fetch: func(ctx context.Context, key string) ([]byte, error) { return o.Get(ctx, key, loader) },
		note: func() string {
			return fmt.Sprintf("otter entries=%d weight=%d", o.EstimatedSize(), o.WeightedSize())
		},
		close: func() { o.StopAllGoroutines(); clock.Stop() },
	}, nil
}
