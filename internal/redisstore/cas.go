package redisstore

import (
	"context"
	"errors"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/l2"
)

// casAttempts bounds how often CompareAndSwap starts again because the
// key changed between its read and its write.
const casAttempts = 8

// checkFailed carries check's error through Dedicated untouched, so that
// it is not taken for a Redis failure.
type checkFailed struct{ err error }

func (c checkFailed) Error() string { return c.err.Error() }

// CompareAndSwap implements l2.Swapper without Lua (production
// configurations may disable EVAL), with the commands the production ACL
// allows: on a dedicated connection, WATCH the key, GET it, run check,
// then SET (or DEL) inside MULTI/EXEC, which Redis refuses to run when the
// key was written meanwhile; then start again from the WATCH. On Cluster
// the dedicated connection goes to the node that serves the key's slot;
// every command names that one key. When check fails, UNWATCH.
func (s *Store) CompareAndSwap(ctx context.Context, key string, check func(ctx context.Context, cur []byte) error, value []byte, ttl time.Duration) error {
	cli, err := s.conn()
	if err != nil {
		return err
	}
	// A copy: after a cancelled context rueidis may still be writing the
	// command when the caller gets its slice back.
	val := string(value)
	for range casAttempts {
		done := false
		err := dedicated(ctx, cli, func(c rueidis.DedicatedClient) error {
			var err error
			done, err = s.casOnce(ctx, c, key, check, value == nil, val, ttl)
			return err
		})
		if cf, ok := errors.AsType[checkFailed](err); ok {
			return cf.err
		}
		if err != nil {
			return s.wrap(err, "compare and swap %q", key)
		}
		if done {
			return nil
		}
	}
	return l2.ErrConflict
}

// dedicated runs fn on a dedicated connection, but returns when ctx ends:
// taking a connection from the pool may have to open one, and opening one
// to a frozen server does not follow ctx. fn then still runs, later, and
// its commands fail at once on the ended ctx.
func dedicated(ctx context.Context, cli rueidis.Client, fn func(rueidis.DedicatedClient) error) error {
	done := make(chan error, 1)
	go func() { done <- cli.Dedicated(fn) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// casOnce is one attempt: it reports whether the write was applied, and
// false with no error when the key changed under WATCH.
func (s *Store) casOnce(ctx context.Context, c rueidis.DedicatedClient, key string, check func(context.Context, []byte) error, del bool, val string, ttl time.Duration) (bool, error) {
	if err := c.Do(ctx, c.B().Watch().Key(key).Build()).Error(); err != nil {
		return false, err
	}
	cur, err := c.Do(ctx, c.B().Get().Key(key).Build()).AsBytes()
	switch {
	case rueidis.IsRedisNil(err):
		cur = nil
	case err != nil:
		return false, err
	default:
		cur = nonNil(cur)
	}
	if err := check(ctx, cur); err != nil {
		if uerr := c.Do(ctx, c.B().Unwatch().Build()).Error(); uerr != nil {
			return false, uerr
		}
		return false, checkFailed{err}
	}
	op := c.B().Del().Key(key).Build()
	if !del {
		op = setCmd(c.B(), key, val, ttl)
	}
	res := c.DoMulti(ctx, c.B().Multi().Build(), op, c.B().Exec().Build())
	for _, r := range res[:len(res)-1] {
		if err := r.Error(); err != nil {
			return false, err
		}
	}
	exec := res[len(res)-1]
	if err := exec.Error(); err != nil {
		if rueidis.IsRedisNil(err) {
			return false, nil // the key changed under WATCH
		}
		return false, err
	}
	// EXEC answers with the replies of the queued command.
	replies, err := exec.ToArray()
	if err != nil {
		return false, err
	}
	for _, r := range replies {
		if err := r.Error(); err != nil {
			return false, err
		}
	}
	return true, nil
}
