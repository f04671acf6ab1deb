package tiercache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"
)

// ErrLocked is returned by TryLock when another holder has the lock.
var ErrLocked = errors.New("tiercache: lock held elsewhere")

// Lock is a fleet-wide lock held in L2 under "<namespace>#lock:<name>".
// It expires by itself after its TTL, so a holder that dies blocks no one
// for longer. It is for efficiency (one runner, one loader), never for
// correctness: a Redis failover can lose it.
type Lock struct {
	c     *Cache
	key   string
	token string
}

// TryLock takes the lock called name for ttl, or returns ErrLocked when
// another holder has it. With the in-memory L2 the lock is process-wide.
func (c *Cache) TryLock(ctx context.Context, name string, ttl time.Duration) (*Lock, error) {
	if c.closed.Load() {
		return nil, errorf("tiercache: lock %q: %w", name, ErrClosed)
	}
	if name == "" || ttl <= 0 {
		if name == "" {
			return nil, errorf("tiercache: lock: %w: a lock needs a name", ErrInvalidKey)
		}
		return nil, errorf("tiercache: lock %q: %w: a lock needs a positive TTL, got %v", name, ErrInvalidOptions, ttl)
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	l := &Lock{c: c, key: c.vers.prefix + "lock:" + name, token: hex.EncodeToString(b[:])}
	ok, err := c.store.TryLock(ctx, l.key, l.token, ttl)
	if err != nil {
		return nil, errorf("tiercache: lock %q: %w", name, err)
	}
	if !ok {
		return nil, errorf("tiercache: lock %q: %w", name, ErrLocked)
	}
	return l, nil
}

// Unlock releases the lock if this holder still has it. Releasing a lock
// that expired (and may have been taken by another holder) does nothing.
func (l *Lock) Unlock(ctx context.Context) error {
	if _, err := l.c.store.Unlock(ctx, l.key, l.token); err != nil {
		return errorf("tiercache: unlock: %w", err)
	}
	return nil
}
