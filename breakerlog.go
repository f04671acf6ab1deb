package tiercache

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// breakerLog logs the breaker's outages, not its every flip: while L2 is
// down, the breaker goes open, half-open (one probe), open again every
// OpenTimeout, which would be a line every 200 ms. It logs one WARN when the
// breaker opens after being closed, with the error that tripped it, and
// one INFO when it closes again, with how long it was open and how many
// calls it failed fast meanwhile. Re-trips during the outage are logged at
// DEBUG.
type breakerLog struct {
	logger *slog.Logger
	redact func(error) string // removes the Redis passwords

	cause      atomic.Pointer[error] // the last "unreachable" error of an L2 call
	failedFast atomic.Uint64         // calls refused while open, since it opened
	openedAt   atomic.Int64          // unix nanoseconds; 0 while closed
}

// changed runs on every state change, under the breaker's lock.
func (b *breakerLog) changed(from, to BreakerState, threshold uint32) {
	var opened int64
	switch {
	case to == BreakerOpen && from == BreakerClosed:
		b.openedAt.Store(time.Now().UnixNano())
		b.failedFast.Store(0)
	case to == BreakerClosed:
		opened = b.openedAt.Swap(0)
	}
	if b.logger == nil {
		return
	}
	switch {
	case to == BreakerOpen && from == BreakerClosed:
		cause := "unknown"
		if p := b.cause.Load(); p != nil {
			cause = b.redact(*p)
		}
		b.logger.Warn("tiercache: L2 circuit breaker opened: L2 calls fail fast until Redis answers again",
			"consecutive_failures", threshold, "cause", cause)
	case to == BreakerClosed:
		if opened == 0 {
			return
		}
		b.logger.Info("tiercache: L2 circuit breaker closed: Redis answers again",
			"open_for", time.Since(time.Unix(0, opened)).Round(time.Millisecond),
			"failed_fast", b.failedFast.Swap(0))
	default:
		b.logger.Debug("tiercache: L2 circuit breaker changed state", "from", string(from), "to", string(to))
	}
}
