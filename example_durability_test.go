package tiercache_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/tiercache/tiercache"
)

// A cache whose recovery queue survives a stop or a crash: what a write
// queued while Redis was unreachable is on disk before ErrQueued, and the
// next New with the same directory applies it. Before stopping, Drain
// tries to apply the queue for a while; what it keeps stays in the journal.
func ExampleCache_Drain() {
	dir, err := os.MkdirTemp("", "tiercache-state")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	c, err := tiercache.New(tiercache.Options{
		Namespace:          "app",
		Redis:              tiercache.RedisOptions{URL: "redis://127.0.0.1:1", LazyConnect: true}, // nothing listens there
		RecoveryJournalDir: dir,
		Logger:             slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	err = c.Set(context.Background(), "user:1", []byte("Ada"))
	fmt.Println(errors.Is(err, tiercache.ErrQueued))

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	rep, err := c.Drain(ctx)
	fmt.Printf("applied %d, kept %d, %v\n", rep.Applied, rep.Kept, errors.Is(err, context.DeadlineExceeded))
	c.Close() // the journal keeps the operation for the next New
	// Output:
	// true
	// applied 0, kept 1, true
}
