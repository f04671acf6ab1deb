package redisstore

import (
	"slices"
	"sync/atomic"
	"time"
)

// Logging a Sentinel failover when the store follows it.
//
// Every error that says Redis is unreachable notes its time; errors more
// than failoverStreakGap apart start a new streak. When the store learns of
// a new master (see follow), it logs one line with the old and the new
// master and the time since the streak's first error: how long this
// client has been failing because of the failover, or zero when it saw no
// error. Each new master is logged once, however many sentinels announce
// it.

// failoverStreakGap separates two outages in the error timeline.
const failoverStreakGap = 30 * time.Second

// failoverLog is the store's memory of errors and of the master it logged.
type failoverLog struct {
	firstErr atomic.Int64 // unix nanoseconds of the current streak's first error
	lastErr  atomic.Int64 // unix nanoseconds of the latest error; 0 after a failover
	master   string       // the master known last; guarded by switchMu
}

// noteError records an error that says Redis is unreachable.
func (f *failoverLog) noteError(now time.Time) {
	n := now.UnixNano()
	if last := f.lastErr.Swap(n); last == 0 || n-last > int64(failoverStreakGap) {
		f.firstErr.Store(n)
	}
}

// sinceFirstError returns how long ago the current streak of errors began,
// or zero without a recent error, and starts a new streak.
func (f *failoverLog) sinceFirstError(now time.Time) time.Duration {
	last := f.lastErr.Swap(0)
	if last == 0 || now.UnixNano()-last > int64(failoverStreakGap) {
		return 0
	}
	return now.Sub(time.Unix(0, f.firstErr.Load()))
}

// currentMaster returns the address of the master the client talks to on
// Sentinel, or "" when it knows none.
func currentMaster(nodes []string) string {
	if len(nodes) == 0 {
		return ""
	}
	slices.Sort(nodes)
	return nodes[0]
}

// noteFailover logs that the store now follows master, once per master.
// old is the master the sentinel reported as replaced. The caller holds
// switchMu.
func (s *Store) noteFailover(sentinel, old, master string, replaced bool) {
	if s.failoverLog.master == master {
		return
	}
	if s.failoverLog.master != "" {
		old = s.failoverLog.master
	}
	s.failoverLog.master = master
	s.logger.Warn("tiercache: Redis Sentinel failover followed",
		"old_master", old, "new_master", master, "sentinel", sentinel,
		"since_first_error", s.failoverLog.sinceFirstError(time.Now()).Round(time.Millisecond),
		"client_replaced", replaced)
}
