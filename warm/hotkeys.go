package warm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache"
)

// Defaults applied to zero-valued HotKeysOptions and RefreshOptions fields.
const (
	DefaultHotKeys       = 100
	DefaultDecayEvery    = 1 << 17
	DefaultRefreshWithin = time.Minute
)

// hotShards spreads OnAccess calls over this many locks. Every key lives
// in one shard, so the union of the shards' top keys holds the top keys.
const hotShards = 8

// KeyCount is a key and its estimated number of recent reads.
type KeyCount struct {
	Key   string
	Count uint64
}

// HotKeysOptions configure a HotKeys tracker.
type HotKeysOptions struct {
	// Size is the number of hottest keys tracked. Zero means
	// DefaultHotKeys (100).
	Size int

	// DecayEvery is the number of counted reads after which every count
	// is halved, so that keys that were hot and are no longer fade out.
	// Zero means DefaultDecayEvery (131072).
	DecayEvery int

	// SampleEvery counts one read in this many, chosen at random, to take
	// the tracker's cost (a hash and a lock, about 110 ns a read under
	// parallel zipf reads; docs/warming.md) off most reads. Counts are then
	// of sampled reads. Zero or one means every read.
	SampleEvery int
}

// HotKeys tracks the most-read keys of a cache in bounded memory: a
// count-min sketch and a heap of the Size hottest keys, in a few shards.
// Wire it to the cache with tiercache.Options{OnAccess: hk.Observe}, then
// run its Refresher as a strategy. It is safe for concurrent use.
type HotKeys struct {
	seed   maphash.Seed
	sample uint32 // count one read in sample; 0 or 1: all
	shards [hotShards]*topK
	epoch  atomic.Uint64 // decay epochs, shared by the shards

	// Reads made by the Refresher are not the application's: they are
	// announced here and not counted.
	selfN  atomic.Int64
	selfMu sync.Mutex
	self   map[string]int
}

// NewHotKeys returns an empty tracker.
func NewHotKeys(opts HotKeysOptions) (*HotKeys, error) {
	if opts.Size < 0 || opts.DecayEvery < 0 || opts.SampleEvery < 0 {
		return nil, fmt.Errorf("warm: HotKeysOptions: Size %d, DecayEvery %d and SampleEvery %d may not be negative",
			opts.Size, opts.DecayEvery, opts.SampleEvery)
	}
	if opts.Size == 0 {
		opts.Size = DefaultHotKeys
	}
	if opts.DecayEvery == 0 {
		opts.DecayEvery = DefaultDecayEvery
	}
	// Four counters per tracked key and row keep collisions rare among
	// the keys that matter; the width is a power of two for masking.
	width := uint64(1) << bits.Len64(uint64(max(1024, 4*opts.Size))-1)
	decay := uint64(max(1, opts.DecayEvery/hotShards))
	h := &HotKeys{seed: maphash.MakeSeed(), sample: uint32(min(opts.SampleEvery, math.MaxUint32)), self: map[string]int{}}
	for i := range h.shards {
		h.shards[i] = newTopK(opts.Size, width, decay, &h.epoch)
	}
	return h, nil
}

// Observe counts one read of key. Its signature fits
// tiercache.Options.OnAccess.
func (h *HotKeys) Observe(key string) {
	if h.selfN.Load() > 0 && h.ownRead(key) {
		return
	}
	if h.sample > 1 && rand.Uint32N(h.sample) != 0 {
		return
	}
	sum := maphash.String(h.seed, key)
	h.shards[sum>>61].add(key, sum)
}

// Top returns up to n of the hottest keys, hottest first; n <= 0 means all
// tracked. Counts are estimates, halved every DecayEvery reads.
func (h *HotKeys) Top(n int) []KeyCount {
	var all []KeyCount
	for _, s := range h.shards {
		all = s.snapshot(all)
	}
	slices.SortFunc(all, func(a, b KeyCount) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	if n > 0 && len(all) > n {
		all = all[:n]
	}
	return all
}

// announce marks a read of key as the tracker's own.
func (h *HotKeys) announce(key string) {
	h.selfMu.Lock()
	h.self[key]++
	h.selfMu.Unlock()
	h.selfN.Add(1)
}

// withdraw removes an announcement that no read consumed (OnAccess may
// not be wired to this tracker).
func (h *HotKeys) withdraw(key string) {
	h.selfMu.Lock()
	defer h.selfMu.Unlock()
	if h.self[key] > 0 {
		h.consume(key)
	}
}

// ownRead consumes an announcement for key, if there is one.
func (h *HotKeys) ownRead(key string) bool {
	h.selfMu.Lock()
	defer h.selfMu.Unlock()
	if h.self[key] == 0 {
		return false
	}
	h.consume(key)
	return true
}

func (h *HotKeys) consume(key string) {
	if h.self[key]--; h.self[key] == 0 {
		delete(h.self, key)
	}
	h.selfN.Add(-1)
}

// LoadFunc loads the current value of a hot key for the Refresher. The
// returned Item's Key is set to key. A zero TTL means the lifetime the
// entry had (or Strategy.TTL for an entry that was missing); return the
// entry's tags too, since the cache does not report them. Return
// tiercache.ErrNotFound to leave the key alone.
type LoadFunc func(ctx context.Context, key string) (Item, error)

// RefreshOptions configure HotKeys.Refresher.
type RefreshOptions struct {
	// Cache is read (Lookup) for each hot key's expiry. It is required.
	Cache *tiercache.Cache

	// Load reloads a key. It is required. An error or panic counts that
	// key as failed; the other keys are refreshed.
	Load LoadFunc

	// Within selects the keys to reload: those missing from the cache or
	// expiring within this long. Make it longer than the interval between
	// two runs of the strategy. Zero means DefaultRefreshWithin (1 min).
	Within time.Duration

	// Keys is the number of hottest keys considered. Zero means all that
	// are tracked.
	Keys int

	// Now is the clock expiry is compared with. Nil means time.Now.
	Now func() time.Time
}

// Refresher returns a Generator that reloads the hottest keys before they
// expire: for each, hottest first, it reads the entry's expiry with
// Cache.Lookup and, when the entry is missing or expires within
// opts.Within, yields what opts.Load returns. Use it as a scheduled
// strategy:
//
//	warm.Strategy{Name: "hot-keys", Enabled: true, Schedule: "@every 30s", Generator: gen}
func (h *HotKeys) Refresher(opts RefreshOptions) (Generator, error) {
	switch {
	case opts.Cache == nil:
		return nil, errors.New("warm: RefreshOptions.Cache is nil")
	case opts.Load == nil:
		return nil, errors.New("warm: RefreshOptions.Load is nil")
	case opts.Within < 0 || opts.Keys < 0:
		return nil, fmt.Errorf("warm: RefreshOptions: Within %v and Keys %d may not be negative", opts.Within, opts.Keys)
	}
	if opts.Within == 0 {
		opts.Within = DefaultRefreshWithin
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return func(ctx context.Context, yield func(Item) error) error {
		for _, kc := range h.Top(opts.Keys) {
			it, ok, err := h.refresh(ctx, opts, kc.Key)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if err := yield(it); err != nil {
				return err
			}
		}
		return nil
	}, nil
}

// refresh decides whether key needs reloading and loads it. An error
// means the cache could not be read, which ends the run.
func (h *HotKeys) refresh(ctx context.Context, opts RefreshOptions, key string) (Item, bool, error) {
	var raw tiercache.Raw
	h.announce(key)
	res, err := opts.Cache.Lookup(ctx, key, &raw)
	h.withdraw(key)
	var ttl time.Duration
	switch {
	case err == nil:
		if res.ExpiresAt.IsZero() || res.ExpiresAt.Sub(opts.Now()) > opts.Within {
			return Item{}, false, nil
		}
		if !res.CreatedAt.IsZero() {
			ttl = res.ExpiresAt.Sub(res.CreatedAt)
		}
	case errors.Is(err, tiercache.ErrNotFound):
	default:
		return Item{}, false, err
	}
	it, err := load(ctx, opts.Load, key)
	switch {
	case errors.Is(err, tiercache.ErrNotFound):
		return Item{}, false, nil
	case err != nil:
		return Item{Key: key, Err: err}, true, nil
	}
	it.Key = key
	if it.TTL <= 0 {
		it.TTL = ttl
	}
	return it, true, nil
}

func load(ctx context.Context, f LoadFunc, key string) (it Item, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("warm: load panicked: %v", v)
		}
	}()
	return f(ctx, key)
}
