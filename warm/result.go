package warm

import (
	"errors"
	"fmt"
	"runtime/debug"
	"time"
)

var (
	// ErrInvalidStrategy is wrapped by every error NewRunner returns for a
	// bad Strategy.
	ErrInvalidStrategy = errors.New("warm: invalid strategy")

	// ErrUnknownStrategy is returned by Warm for a name no strategy has.
	ErrUnknownStrategy = errors.New("warm: unknown strategy")

	// ErrNotOnDemand is returned by Warm for a strategy that is disabled
	// or whose WarmOnDemand is false.
	ErrNotOnDemand = errors.New("warm: strategy not runnable on demand")

	// ErrRunning is the Result.Err of a run that did not start because the
	// same strategy was already running in this process.
	ErrRunning = errors.New("warm: strategy already running")

	// ErrClosed is returned after Runner.Close or Scheduler.Close.
	ErrClosed = errors.New("warm: closed")
)

// StrategyError is an error about one strategy. It wraps the cause.
type StrategyError struct {
	Strategy string
	Err      error
}

// Error implements error.
func (e *StrategyError) Error() string {
	return fmt.Sprintf("warm: strategy %q: %v", e.Strategy, trimPrefix(e.Err))
}

// Unwrap returns the cause.
func (e *StrategyError) Unwrap() error { return e.Err }

// trimPrefix avoids `warm: strategy "x": warm: ...`.
func trimPrefix(err error) string {
	s := err.Error()
	const p = "warm: "
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

// GeneratorPanicError is the Result.Err of a run whose generator panicked.
// The panic does not escape the run.
type GeneratorPanicError struct {
	Value any    // what the generator panicked with
	Stack []byte // the generator's stack at the panic
}

// Error implements error.
func (e *GeneratorPanicError) Error() string {
	return fmt.Sprintf("warm: generator panicked: %v", e.Value)
}

func newPanicError(v any) error {
	return &GeneratorPanicError{Value: v, Stack: debug.Stack()}
}

// Trigger says what started a run.
type Trigger string

// Triggers of a Result.
const (
	TriggerStartup  Trigger = "startup"
	TriggerDemand   Trigger = "demand"
	TriggerSchedule Trigger = "schedule"
)

// Result is the outcome of one run of one strategy.
type Result struct {
	Strategy string
	Trigger  Trigger
	Started  time.Time
	// Duration is the run's wall time, delays included:
	// Duration.Seconds() is the warming time a metrics recorder exports.
	Duration time.Duration
	Written  int64 // keys acknowledged by the cache
	Failed   int64 // keys not written: rejected by the cache, reported by the generator, or in a failed batch
	Batches  int64 // SetItems calls that wrote at least one key

	// Err is why the run ended early, or nil when it ran to the end. It is
	// a *StrategyError wrapping the cause: the generator's error, a
	// *GeneratorPanicError, the cache's error (tiercache.ErrQueued
	// included: a batch queued for recovery counts as failed and ends the
	// run), context.Canceled, or ErrRunning.
	Err error

	// KeyErr is the last per-key failure, when Failed counts some that
	// did not end the run.
	KeyErr error
}

// Status is a strategy's configuration and its runs in this process.
type Status struct {
	Name          string
	Priority      int
	Enabled       bool
	Schedule      string
	WarmOnStartup bool
	WarmOnDemand  bool
	BatchSize     int
	TTL           time.Duration
	Tags          []string

	Running bool  // a run is in progress
	Runs    int64 // runs finished in this process
	Skipped int64 // scheduled runs left to another instance, which held the fleet lock

	// Overlapped counts scheduled runs skipped because the previous run
	// of the strategy was still going.
	Overlapped int64

	// Last is the last finished run; Last.Started is zero before the
	// first.
	Last Result

	// NextRun is when the Scheduler runs the strategy next on this
	// instance (whichever instance takes the lock). Zero means not
	// scheduled.
	NextRun time.Time
}

// Progress reports a run in flight, after each batch.
type Progress struct {
	Strategy string
	Batches  int64
	Written  int64
	Failed   int64
}
