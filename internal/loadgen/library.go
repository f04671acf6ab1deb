package loadgen

import (
	"context"
	"errors"

	"github.com/tiercache/tiercache"
)

// LibraryTarget sends the operations to a tiercache.Cache in process:
// Lookup into a tiercache.Raw, Set of the value as bytes, Delete. Each
// operation is bounded by the cache's own OperationTimeout.
type LibraryTarget struct {
	cache *tiercache.Cache
	close bool
}

// NewLibrary returns a target for c. With owned, Close closes c.
func NewLibrary(c *tiercache.Cache, owned bool) *LibraryTarget {
	return &LibraryTarget{cache: c, close: owned}
}

// Name is "library".
func (t *LibraryTarget) Name() string { return "library" }

// Close closes the cache when the target owns it.
func (t *LibraryTarget) Close() error {
	if t.close {
		return t.cache.Close()
	}
	return nil
}

// Worker returns worker i's operations.
func (t *LibraryTarget) Worker(int) Worker { return &libWorker{c: t.cache} }

type libWorker struct {
	c   *tiercache.Cache
	raw tiercache.Raw
}

func (w *libWorker) Do(ctx context.Context, op Op, key string, value []byte) Outcome {
	switch op {
	case OpGet:
		res, err := w.c.Lookup(ctx, key, &w.raw)
		if errors.Is(err, tiercache.ErrNotFound) {
			return Outcome{Tier: "miss"}
		}
		if err != nil {
			return Outcome{Err: libErrorKind(err)}
		}
		return Outcome{Tier: res.Source.String()}
	case OpSet:
		return writeOutcome(w.c.Set(ctx, key, value))
	default:
		return writeOutcome(w.c.Delete(ctx, key))
	}
}

func writeOutcome(err error) Outcome {
	if errors.Is(err, tiercache.ErrQueued) {
		return Outcome{Queued: true}
	}
	if err != nil {
		return Outcome{Err: libErrorKind(err)}
	}
	return Outcome{}
}

// libErrorKind classifies a failed operation by the library's errors.
func libErrorKind(err error) string {
	for _, k := range []struct {
		err  error
		kind string
	}{
		{context.DeadlineExceeded, "timeout"},
		{context.Canceled, "canceled"},
		{tiercache.ErrCircuitOpen, "circuit_open"},
		{tiercache.ErrQueueFull, "queue_full"},
		{tiercache.ErrUnavailable, "unavailable"},
		{tiercache.ErrCorrupt, "corrupt"},
		{tiercache.ErrValueTooLarge, "value_too_large"},
		{tiercache.ErrInvalidKey, "invalid_key"},
		{tiercache.ErrClosed, "closed"},
	} {
		if errors.Is(err, k.err) {
			return k.kind
		}
	}
	return "error"
}
