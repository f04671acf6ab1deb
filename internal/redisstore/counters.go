package redisstore

import (
	"context"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/l2"
)

// Incr adds by to each key with its own INCR (by 1) or INCRBY,
// pipelined: one round trip per node, and no cross-slot command.
func (s *Store) Incr(ctx context.Context, keys []string, by int64) ([]int64, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	multi := make([]rueidis.Completed, len(keys))
	for i, k := range keys {
		if by == 1 {
			multi[i] = c.B().Incr().Key(k).Build()
		} else {
			multi[i] = c.B().Incrby().Key(k).Increment(by).Build()
		}
	}
	out := make([]int64, len(keys))
	for i, r := range c.DoMulti(ctx, multi...) {
		n, err := r.AsInt64()
		if err != nil {
			return out[:i], s.wrap(err, "incr %q (key %d of %d)", keys[i], i+1, len(keys))
		}
		out[i] = n
	}
	return out, nil
}

// SetNX stores each item with SET NX, pipelined: keys that exist keep
// their value.
func (s *Store) SetNX(ctx context.Context, items []l2.Item) error {
	if len(items) == 0 {
		return nil
	}
	c, err := s.conn()
	if err != nil {
		return err
	}
	multi := make([]rueidis.Completed, len(items))
	for i, it := range items {
		cmd := c.B().Set().Key(it.Key).Value(string(it.Value)).Nx()
		if it.TTL > 0 {
			multi[i] = cmd.PxMilliseconds(it.TTL.Milliseconds()).Build()
		} else {
			multi[i] = cmd.Build()
		}
	}
	for i, r := range c.DoMulti(ctx, multi...) {
		if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
			return s.wrap(err, "set nx %q (item %d of %d)", items[i].Key, i+1, len(items))
		}
	}
	return nil
}
