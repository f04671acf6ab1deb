package memstore

import (
	"bytes"
	"context"
	"time"

	"github.com/tiercache/tiercache/internal/l2"
)

// casAttempts bounds how often CompareAndSwap starts again because the
// key changed between its read and its write.
const casAttempts = 8

// CompareAndSwap implements l2.Swapper. check runs without the shard's
// lock held (it may read other keys of the store); the write then takes
// the lock and goes ahead only if the key still holds what check saw.
func (s *Store) CompareAndSwap(ctx context.Context, key string, check func(ctx context.Context, cur []byte) error, value []byte, ttl time.Duration) error {
	sh := s.shard(key)
	for range casAttempts {
		if err := ctx.Err(); err != nil {
			return err
		}
		sh.mu.RLock()
		cur := s.currentLocked(sh, key)
		sh.mu.RUnlock()
		if err := check(ctx, cur); err != nil {
			return err
		}
		sh.mu.Lock()
		if now := s.currentLocked(sh, key); (now == nil) != (cur == nil) || !bytes.Equal(now, cur) {
			sh.mu.Unlock()
			continue
		}
		if value == nil {
			delete(sh.m, key)
		} else {
			it := item{value: bytes.Clone(value)}
			if ttl > 0 {
				it.expireAt = s.now().UnixNano() + int64(ttl)
			}
			sh.m[key] = it
		}
		sh.mu.Unlock()
		return nil
	}
	return l2.ErrConflict
}

// currentLocked returns key's live value, or nil. The caller holds sh.mu,
// for reading or writing.
func (s *Store) currentLocked(sh *shard, key string) []byte {
	it, ok := sh.m[key]
	if !ok || !s.live(it, s.now().UnixNano()) {
		return nil
	}
	if it.value == nil {
		return []byte{}
	}
	return it.value
}

// CompareAndSwap implements l2.Swapper and notifies the other views of a
// write it made.
func (v *View) CompareAndSwap(ctx context.Context, key string, check func(ctx context.Context, cur []byte) error, value []byte, ttl time.Duration) error {
	err := v.Store.CompareAndSwap(ctx, key, check, value, ttl)
	if err == nil {
		v.notify([]string{key})
	}
	return err
}
