package warm

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/go-co-op/gocron/v2"
)

// Defaults applied to zero-valued Strategy fields.
const (
	DefaultPriority            = 1
	DefaultBatchSize           = 100
	DefaultDelayBetweenBatches = 100 * time.Millisecond

	// MinPriority and MaxPriority bound Strategy.Priority: 1 runs first.
	MinPriority = 1
	MaxPriority = 10
)

// Item is one entry a Generator produces.
type Item struct {
	// Key is the cache key, without the namespace.
	Key string

	// Value is stored as tiercache.Cache.Set would store it: a []byte
	// as-is, anything else through the key's codec.
	Value any

	// TTL is the entry's lifetime. Zero or less means Strategy.TTL.
	TTL time.Duration

	// Tags are attached in addition to Strategy.Tags.
	Tags []string

	// Err, when not nil, reports an item the generator could not produce
	// (a malformed line, a failed load): it is counted in Result.Failed
	// and not written, and the strategy goes on.
	Err error
}

// Generator streams a strategy's items: it calls yield once per item, in
// order, from its own goroutine, and returns when it has no more. When
// yield returns an error (the run was cancelled, or L2 failed) the
// generator should stop and return it. Items are written in batches as they
// come, so a generator never needs to hold all of them.
//
// A Generator's error or panic fails its strategy's run only.
type Generator func(ctx context.Context, yield func(Item) error) error

// Items returns a Generator that yields items in order.
func Items(items ...Item) Generator {
	return func(_ context.Context, yield func(Item) error) error {
		for _, it := range items {
			if err := yield(it); err != nil {
				return err
			}
		}
		return nil
	}
}

// FromSeq returns a Generator that yields what seq produces. A non-nil
// error from seq ends the run with that error.
func FromSeq(seq iter.Seq2[Item, error]) Generator {
	return func(_ context.Context, yield func(Item) error) error {
		for it, err := range seq {
			if err != nil {
				return err
			}
			if err := yield(it); err != nil {
				return err
			}
		}
		return nil
	}
}

// Strategy is one named source of entries to warm, with when and how to
// write them. The zero value of each field is documented; note that a
// Strategy whose Enabled is false never runs.
type Strategy struct {
	// Name identifies the strategy in Warm, Status and logs. It is
	// required and unique within a Runner.
	Name string

	// Priority orders runs: 1 is the highest, 10 the lowest. Zero means
	// DefaultPriority (1, as in the seed). Strategies of equal priority run in the order
	// they were given to NewRunner.
	Priority int

	// Enabled must be true for the strategy to run at all.
	Enabled bool

	// Schedule is a cron expression: five fields (minute first), six
	// (seconds first), or a descriptor such as "@hourly" or "@every 10m",
	// optionally prefixed by "CRON_TZ=Area/City ". Empty means no
	// schedule. A Scheduler runs it on one instance of the fleet.
	Schedule string

	// WarmOnStartup makes Runner.Startup run the strategy.
	WarmOnStartup bool

	// WarmOnDemand lets Runner.Warm (HTTP POST /v1/warm, the warm
	// command) run the strategy.
	WarmOnDemand bool

	// BatchSize is the number of items per SetItems call. Zero means
	// DefaultBatchSize (100).
	BatchSize int

	// DelayBetweenBatches is the pause between two batches. Zero means
	// DefaultDelayBetweenBatches (100 ms); a negative value means none.
	DelayBetweenBatches time.Duration

	// TTL is the lifetime of items that have none of their own. Zero
	// means the cache's DefaultTTL.
	TTL time.Duration

	// Tags are attached to every item.
	Tags []string

	// Generator produces the items. It is required.
	Generator Generator
}

// withDefaults returns s with zero values replaced by defaults and its
// slices copied, so that the caller may reuse them.
func (s Strategy) withDefaults() Strategy {
	if s.Priority == 0 {
		s.Priority = DefaultPriority
	}
	if s.BatchSize == 0 {
		s.BatchSize = DefaultBatchSize
	}
	if s.DelayBetweenBatches == 0 {
		s.DelayBetweenBatches = DefaultDelayBetweenBatches
	}
	s.Tags = slices.Clone(s.Tags)
	return s
}

// validate checks a defaulted strategy; now anchors the cron check.
func (s Strategy) validate(now time.Time) error {
	bad := func(format string, args ...any) error {
		return &StrategyError{Strategy: s.Name, Err: fmt.Errorf("%w: "+format, append([]any{ErrInvalidStrategy}, args...)...)}
	}
	switch {
	case s.Name == "":
		return bad("the name is empty")
	case s.Priority < MinPriority || s.Priority > MaxPriority:
		return bad("priority %d is out of range %d..%d", s.Priority, MinPriority, MaxPriority)
	case s.BatchSize < 0:
		return bad("batch size %d is negative", s.BatchSize)
	case s.TTL < 0:
		return bad("TTL %v is negative", s.TTL)
	case s.Generator == nil:
		return bad("no generator")
	case slices.Contains(s.Tags, ""):
		return bad("a tag is empty")
	}
	if s.Schedule != "" {
		if err := CheckSchedule(s.Schedule, now); err != nil {
			return &StrategyError{Strategy: s.Name, Err: fmt.Errorf("%w: %w", ErrInvalidStrategy, err)}
		}
	}
	return nil
}

// CheckSchedule reports whether expr is a cron expression a Strategy
// accepts, with the parser's reason when it is not. now anchors the check
// that the schedule ever fires.
func CheckSchedule(expr string, now time.Time) error {
	err := gocron.NewDefaultCron(true).IsValid(expr, time.UTC, now)
	if err == nil {
		return nil
	}
	// gocron joins its own sentinel with the parser's reason; the reason
	// alone says what is wrong.
	reason := err
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		if errs := j.Unwrap(); len(errs) > 0 {
			reason = errs[len(errs)-1]
		}
	}
	if errors.Is(err, gocron.ErrCronJobInvalid) {
		reason = errors.New("it never fires")
	}
	return fmt.Errorf("schedule %q is not a valid cron expression: %v", expr, reason)
}
