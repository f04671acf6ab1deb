package redisstore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/l2"
)

// Connecting in the background (Options.Lazy).
//
// A lazy store starts without a client. One goroutine tries to build it,
// with a backoff of 100 ms doubling to 5 s and a random quarter of jitter,
// until it succeeds or the store closes. Meanwhile every operation fails at
// once with an error matching l2.ErrUnavailable that carries the last
// reason, so that the layer above counts it against its breaker, queues
// writes for recovery and serves fail-safe values as for any outage. Once
// the client exists, the store is the same as one built by a plain New:
// client tracking, Sentinel watching and Cluster probing start then.

// Backoff of the background connector.
const (
	connectMinBackoff = 100 * time.Millisecond
	connectMaxBackoff = 5 * time.Second
)

// lazyState is what a lazy store knows before it has connected.
type lazyState struct {
	target   string                // the deployment, without credentials
	err      atomic.Pointer[error] // why the store is not connected, for operations
	attempts atomic.Int64
	done     chan struct{} // closed once connected; nil for a store built connected
}

// notConnected returns the error operations fail with before the store
// has connected.
func (l *lazyState) notConnected() error {
	if p := l.err.Load(); p != nil {
		return *p
	}
	return fmt.Errorf("redisstore: not connected to %s yet: %w", l.target, l2.ErrUnavailable)
}

// Connected reports whether the store has a client: always true for a
// store built by a plain New, and true for a lazy one once it has
// connected. It does not say whether Redis answers now.
func (s *Store) Connected() bool { return s.client.Load() != nil }

// WaitConnected returns a channel closed once a lazy store has connected;
// for a store built connected, a closed one.
func (s *Store) WaitConnected() <-chan struct{} {
	if s.lazy.done == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return s.lazy.done
}

// startConnecting starts the background connector of a lazy store.
func (s *Store) startConnecting(copt rueidis.ClientOption, opts Options) {
	s.lazy.target = s.mode + " " + s.desc
	s.lazy.done = make(chan struct{})
	s.watchers.Add(1)
	go s.connectLoop(copt, opts)
}

// connectLoop tries to connect until it succeeds or the store closes.
func (s *Store) connectLoop(copt rueidis.ClientOption, opts Options) {
	defer s.watchers.Done()
	start := time.Now()
	backoff := connectMinBackoff
	var lastMsg string
	for {
		n := s.lazy.attempts.Add(1)
		err := s.connect(copt, opts)
		if err == nil {
			close(s.lazy.done)
			s.logger.Info("tiercache: connected to Redis", "redis", s.Mode()+" "+s.desc,
				"after", time.Since(start).Round(time.Millisecond), "attempts", n)
			return
		}
		if errors.Is(err, ErrClosed) || s.bg.Err() != nil {
			return
		}
		msg := strings.TrimPrefix(err.Error(), "redisstore: ")
		wrapped := fmt.Errorf("redisstore: not connected to %s yet (%s): %w", s.lazy.target, msg, l2.ErrUnavailable)
		s.lazy.err.Store(&wrapped)
		if msg != lastMsg {
			// Once per distinct reason, not once per attempt.
			s.logger.Warn("tiercache: Redis unreachable; connecting in the background", "redis", s.lazy.target, "err", msg)
			lastMsg = msg
		}
		wait := backoff + time.Duration(rand.Int64N(int64(backoff/4)+1))
		t := time.NewTimer(wait)
		select {
		case <-s.bg.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, connectMaxBackoff)
	}
}
