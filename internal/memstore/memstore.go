// Package memstore is an in-process l2.Store: the embedded default when no
// Redis is configured. It is a sharded map with lazy and periodic expiry.
package memstore

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/tiercache/tiercache/internal/l2"
)

const shardCount = 64

type item struct {
	value    []byte
	expireAt int64 // unix nanoseconds; 0 = never
}

type shard struct {
	mu sync.RWMutex
	m  map[string]item
}

// Store is an in-memory l2.Store. Create it with New and release it with
// Close.
type Store struct {
	seed   maphash.Seed
	shards [shardCount]shard
	now    func() time.Time
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once

	subMu  sync.Mutex
	subs   map[int]func(l2.Invalidation) // views by id
	nextID int
}

// New returns a Store that sweeps expired keys every sweep interval
// (0 = one second). now may be nil (time.Now).
func New(sweep time.Duration, now func() time.Time) *Store {
	if sweep <= 0 {
		sweep = time.Second
	}
	if now == nil {
		now = time.Now
	}
	s := &Store{seed: maphash.MakeSeed(), now: now, stop: make(chan struct{}), done: make(chan struct{})}
	for i := range s.shards {
		s.shards[i].m = make(map[string]item)
	}
	go s.sweeper(sweep)
	return s
}

func (s *Store) shard(key string) *shard {
	return &s.shards[maphash.String(s.seed, key)%shardCount]
}

func (s *Store) live(it item, now int64) bool {
	return it.expireAt == 0 || it.expireAt > now
}

// Get implements l2.Store.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sh := s.shard(key)
	sh.mu.RLock()
	it, ok := sh.m[key]
	sh.mu.RUnlock()
	if !ok || !s.live(it, s.now().UnixNano()) {
		return nil, l2.ErrNotFound
	}
	return it.value, nil
}

// MGet implements l2.Store.
func (s *Store) MGet(ctx context.Context, keys []string) ([][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([][]byte, len(keys))
	now := s.now().UnixNano()
	for i, k := range keys {
		sh := s.shard(k)
		sh.mu.RLock()
		it, ok := sh.m[k]
		sh.mu.RUnlock()
		if ok && s.live(it, now) {
			out[i] = it.value
		}
	}
	return out, nil
}

// Set implements l2.Store. The value is copied.
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.put(key, value, ttl, s.now().UnixNano())
	return nil
}

func (s *Store) put(key string, value []byte, ttl time.Duration, now int64) {
	it := item{value: append([]byte(nil), value...)}
	if ttl > 0 {
		it.expireAt = now + int64(ttl)
	}
	sh := s.shard(key)
	sh.mu.Lock()
	sh.m[key] = it
	sh.mu.Unlock()
}

// MSet implements l2.Store.
func (s *Store) MSet(ctx context.Context, items []l2.Item) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.now().UnixNano()
	for _, it := range items {
		s.put(it.Key, it.Value, it.TTL, now)
	}
	return nil
}

// Del implements l2.Store.
func (s *Store) Del(ctx context.Context, keys ...string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, k := range keys {
		sh := s.shard(k)
		sh.mu.Lock()
		delete(sh.m, k)
		sh.mu.Unlock()
	}
	return nil
}

// Len returns the number of stored keys, expired ones not yet swept
// included.
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// Close stops the sweeper. It is idempotent.
func (s *Store) Close() error {
	s.once.Do(func() {
		close(s.stop)
		<-s.done
	})
	return nil
}

func (s *Store) sweeper(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sweep()
		}
	}
}

func (s *Store) sweep() {
	now := s.now().UnixNano()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, it := range sh.m {
			if !s.live(it, now) {
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
}

// Incr implements l2.Store.
func (s *Store) Incr(ctx context.Context, keys []string, by int64) ([]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := s.now().UnixNano()
	out := make([]int64, len(keys))
	for i, k := range keys {
		sh := s.shard(k)
		sh.mu.Lock()
		it, ok := sh.m[k]
		var n int64
		if ok && s.live(it, now) {
			v, err := strconv.ParseInt(string(it.value), 10, 64)
			if err != nil {
				sh.mu.Unlock()
				return out[:i], fmt.Errorf("memstore: incr %q: value is not an integer", k)
			}
			n = v
		} else {
			it = item{}
		}
		if (by > 0 && n > math.MaxInt64-by) || (by < 0 && n < math.MinInt64-by) {
			sh.mu.Unlock()
			return out[:i], fmt.Errorf("memstore: incr %q: increment would overflow", k)
		}
		n += by
		it.value = strconv.AppendInt(nil, n, 10)
		sh.m[k] = it
		sh.mu.Unlock()
		out[i] = n
	}
	return out, nil
}

// SetNX implements l2.Store.
func (s *Store) SetNX(ctx context.Context, items []l2.Item) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.now().UnixNano()
	for _, it := range items {
		sh := s.shard(it.Key)
		sh.mu.Lock()
		if old, ok := sh.m[it.Key]; !ok || !s.live(old, now) {
			n := item{value: append([]byte(nil), it.Value...)}
			if it.TTL > 0 {
				n.expireAt = now + int64(it.TTL)
			}
			sh.m[it.Key] = n
		}
		sh.mu.Unlock()
	}
	return nil
}

// View is an l2.Store over a shared Store whose writes notify every other
// view, synchronously, before they return: several caches in one process
// can share one in-memory L2 and stay coherent. Closing a view detaches it;
// the Store closes with its last view.
type View struct {
	*Store
	id int
}

// View returns a new view; onInv (may be nil) receives the keys other
// views write or delete.
func (s *Store) View(onInv func(l2.Invalidation)) *View {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if s.subs == nil {
		s.subs = map[int]func(l2.Invalidation){}
	}
	s.nextID++
	s.subs[s.nextID] = onInv
	return &View{Store: s, id: s.nextID}
}

func (v *View) notify(keys []string) {
	v.subMu.Lock()
	fns := make([]func(l2.Invalidation), 0, len(v.subs))
	for id, fn := range v.subs {
		if id != v.id && fn != nil {
			fns = append(fns, fn)
		}
	}
	v.subMu.Unlock()
	for _, fn := range fns {
		fn(l2.Invalidation{Keys: keys})
	}
}

// Set implements l2.Store.
func (v *View) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	err := v.Store.Set(ctx, key, value, ttl)
	v.notify([]string{key})
	return err
}

// MSet implements l2.Store.
func (v *View) MSet(ctx context.Context, items []l2.Item) error {
	err := v.Store.MSet(ctx, items)
	v.notify(itemKeys(items))
	return err
}

// Del implements l2.Store.
func (v *View) Del(ctx context.Context, keys ...string) error {
	err := v.Store.Del(ctx, keys...)
	v.notify(keys)
	return err
}

// Incr implements l2.Store.
func (v *View) Incr(ctx context.Context, keys []string, by int64) ([]int64, error) {
	out, err := v.Store.Incr(ctx, keys, by)
	v.notify(keys)
	return out, err
}

// SetNX implements l2.Store.
func (v *View) SetNX(ctx context.Context, items []l2.Item) error {
	err := v.Store.SetNX(ctx, items)
	v.notify(itemKeys(items))
	return err
}

func itemKeys(items []l2.Item) []string {
	keys := make([]string, len(items))
	for i, it := range items {
		keys[i] = it.Key
	}
	return keys
}

// Close detaches the view and closes the Store with its last view.
func (v *View) Close() error {
	v.subMu.Lock()
	delete(v.subs, v.id)
	last := len(v.subs) == 0
	v.subMu.Unlock()
	if last {
		return v.Store.Close()
	}
	return nil
}

// TryLock implements l2.Store.
func (s *Store) TryLock(ctx context.Context, key, token string, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	now := s.now().UnixNano()
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if it, ok := sh.m[key]; ok && s.live(it, now) {
		return false, nil
	}
	sh.m[key] = item{value: []byte(token), expireAt: now + int64(max(ttl, time.Millisecond))}
	return true, nil
}

// Unlock implements l2.Store.
func (s *Store) Unlock(ctx context.Context, key, token string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	now := s.now().UnixNano()
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if it, ok := sh.m[key]; ok && s.live(it, now) && string(it.value) == token {
		delete(sh.m, key)
		return true, nil
	}
	return false, nil
}
