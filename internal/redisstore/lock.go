package redisstore

import (
	"context"
	"time"

	"github.com/redis/rueidis"
)

// TryLock sets key to token unless key exists (SET NX PX): it reports
// whether this caller now holds the lock.
func (s *Store) TryLock(ctx context.Context, key, token string, ttl time.Duration) (bool, error) {
	ms := max(int64((ttl+time.Millisecond-1)/time.Millisecond), 1)
	c, err := s.conn()
	if err != nil {
		return false, err
	}
	err = c.Do(ctx, c.B().Set().Key(key).Value(token).Nx().PxMilliseconds(ms).Build()).Error()
	switch {
	case err == nil:
		return true, nil
	case rueidis.IsRedisNil(err):
		return false, nil
	}
	return false, s.wrap(err, "lock %q", key)
}

// Unlock deletes key if it still holds token, atomically and without Lua
// (production configurations may disable EVAL): WATCH the key, check it,
// and delete it in a MULTI that fails if the key changed meanwhile. It
// reports whether the lock was released by this call.
func (s *Store) Unlock(ctx context.Context, key, token string) (bool, error) {
	cli, err := s.conn()
	if err != nil {
		return false, err
	}
	released := false
	err = cli.Dedicated(func(c rueidis.DedicatedClient) error {
		if err := c.Do(ctx, c.B().Watch().Key(key).Build()).Error(); err != nil {
			return err
		}
		cur, err := c.Do(ctx, c.B().Get().Key(key).Build()).ToString()
		if rueidis.IsRedisNil(err) || (err == nil && cur != token) {
			return c.Do(ctx, c.B().Unwatch().Build()).Error()
		}
		if err != nil {
			return err
		}
		res := c.DoMulti(ctx, c.B().Multi().Build(), c.B().Del().Key(key).Build(), c.B().Exec().Build())
		exec := res[len(res)-1]
		if err := exec.Error(); err != nil {
			if rueidis.IsRedisNil(err) {
				return nil // the key changed under WATCH: not ours any more
			}
			return err
		}
		released = true
		return nil
	})
	if err != nil {
		return false, s.wrap(err, "unlock %q", key)
	}
	return released, nil
}
