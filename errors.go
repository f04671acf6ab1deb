package tiercache

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tiercache/tiercache/codec"
	"github.com/tiercache/tiercache/internal/envelope"
	"github.com/tiercache/tiercache/internal/l2"
)

var (
	// ErrNotFound is returned when a key is not in the cache, or when a
	// loader reports that the value does not exist. Loaders return it (or
	// an error wrapping it) to have the absence cached for
	// Options.NegativeTTL.
	ErrNotFound = errors.New("tiercache: not found")

	// ErrClosed is returned by every operation after Close.
	ErrClosed = errors.New("tiercache: cache is closed")

	// ErrInvalidKey is returned for an empty key or one longer than
	// Options.MaxKeyLength. Nothing is written.
	ErrInvalidKey = errors.New("tiercache: invalid key")

	// ErrInvalidTag is returned for an empty tag, one longer than the
	// envelope allows, or more tags on one entry than it allows. Nothing
	// is written.
	ErrInvalidTag = errors.New("tiercache: invalid tag")

	// ErrValueTooLarge is returned when an encoded value exceeds
	// Options.MaxValueSize. Nothing is written.
	ErrValueTooLarge = errors.New("tiercache: value too large")

	// ErrNilLoader is returned by Fetch and FetchMany when the loader is nil.
	ErrNilLoader = errors.New("tiercache: nil loader")

	// ErrInvalidOptions is wrapped by every error New and OptionsFromEnv
	// return for bad configuration, a malformed Redis URL included.
	ErrInvalidOptions = errors.New("tiercache: invalid options")

	// ErrUnknownCodec is returned when a codec name or id is not
	// registered. It is the same value as codec.ErrUnknownCodec.
	ErrUnknownCodec = codec.ErrUnknownCodec

	// ErrCorrupt marks a stored value that could not be decoded. Reads
	// treat it as a miss: the error they return matches both ErrNotFound
	// and ErrCorrupt, and Stats counts it.
	ErrCorrupt = envelope.ErrCorrupt

	// ErrCircuitOpen is returned by L2 operations while the circuit
	// breaker is open: they fail fast without reaching Redis.
	ErrCircuitOpen = errors.New("tiercache: circuit breaker open")

	// ErrUnavailable marks errors where L2 could not be reached or did not
	// answer within Options.OperationTimeout.
	ErrUnavailable = l2.ErrUnavailable

	// ErrQueued is returned by Set, SetMany, SetItems, Delete,
	// InvalidateTags and Clear when L2 was unreachable and the operation
	// went to the auto-recovery queue: it is not applied yet, and will be
	// once L2 answers. The error also matches the cause.
	ErrQueued = errors.New("tiercache: L2 unreachable; queued for recovery")

	// ErrQueueFull is returned instead of ErrQueued when the recovery
	// queue is full: the operation was not applied and not queued. For a
	// call on many keys (SetMany, SetItems, Delete of several keys), the
	// keys queued before the queue filled stay queued and are applied
	// with the queue; the others are neither applied nor queued.
	ErrQueueFull = errors.New("tiercache: L2 unreachable and the recovery queue is full")

	// ErrLoaderTimeout is returned by Fetch when the loader did not
	// answer within Options.LoaderHardTimeout and no stale value exists.
	ErrLoaderTimeout = errors.New("tiercache: loader timed out")

	// ErrInvalidDestination is returned when the destination of Get or
	// GetMany is not a non-nil pointer of a suitable type.
	ErrInvalidDestination = errors.New("tiercache: invalid destination")

	// ErrInvalidValue is returned by writes of a Raw value whose payload
	// is not valid for its codec (JSON that does not parse, MessagePack
	// that is not exactly one object), whose codec is not registered, or
	// whose ContentType is not a valid media type. Nothing is written.
	ErrInvalidValue = errors.New("tiercache: invalid value")

	// ErrConditionFailed is returned by a conditional write (Set with
	// IfMatch or IfAbsent, DeleteIfMatch) whose condition did not hold:
	// nothing was written.
	ErrConditionFailed = errors.New("tiercache: condition failed")

	// ErrNotTiercache is returned by a read of a key that holds bytes
	// tiercache did not write (no envelope: set by another program, such
	// as redis-cli or an older cache). The error also matches ErrNotFound
	// and ErrCorrupt, since no value can be read from it, so code that
	// treats those as misses keeps working. Options.ReadPlainValues reads
	// such bytes as raw values instead.
	ErrNotTiercache = errors.New("tiercache: the key holds a value tiercache did not write")
)

// notTiercacheError is the error of a read of bytes without an envelope.
type notTiercacheError struct{}

func (notTiercacheError) Error() string {
	return ErrNotTiercache.Error() + " (no envelope; Options.ReadPlainValues reads such values as raw bytes)"
}

func (notTiercacheError) Is(target error) bool {
	return target == ErrNotTiercache || target == ErrNotFound || target == ErrCorrupt
}

// KeyError describes a failed operation on one key. It wraps the cause, so
// errors.Is(err, ErrNotFound) and friends work through it.
type KeyError struct {
	Op  string // "get", "set", "delete", "fetch", ...
	Key string // the caller's key, without the namespace
	Err error
}

// Error implements error. Long keys are shortened so that a hostile key
// cannot flood logs.
func (e *KeyError) Error() string {
	return fmt.Sprintf("tiercache: %s %q: %v", e.Op, truncKey(e.Key), trimPrefix(e.Err))
}

// Unwrap returns the cause.
func (e *KeyError) Unwrap() error { return e.Err }

// trimPrefix avoids "tiercache: get "k": tiercache: not found".
func trimPrefix(err error) string {
	s := err.Error()
	const p = "tiercache: "
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

// errorf is fmt.Errorf for a message that begins with "tiercache: ": the
// "tiercache: " that a wrapped error of this package begins with is
// dropped, so that a message reads "tiercache: clear: cache is closed",
// not "tiercache: clear: tiercache: cache is closed". errors.Is and
// errors.As see through it as through fmt.Errorf.
func errorf(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	msg := err.Error()
	const p = "tiercache: "
	if !strings.HasPrefix(msg, p) || !strings.Contains(msg[len(p):], ": "+p) {
		return err
	}
	return &prefixedError{msg: p + strings.ReplaceAll(msg[len(p):], ": "+p, ": "), err: err}
}

// prefixedError is errorf's error: its own message, err's chain.
type prefixedError struct {
	msg string
	err error
}

func (e *prefixedError) Error() string { return e.msg }
func (e *prefixedError) Unwrap() error { return e.err }

func keyErr(op, key string, err error) error {
	if err == nil {
		return nil
	}
	return &KeyError{Op: op, Key: key, Err: err}
}

func optErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...)
}
