// Package redisstore is the Redis implementation of l2.Store, on rueidis.
//
// One Store serves standalone Redis, Sentinel and Cluster deployments alike.
// When Options.OnInvalidation is set, connections turn on server-assisted
// client-side caching in its default mode: Redis tracks every key a
// connection reads and reports the key once when it changes (a write by
// anyone, an expiry, an eviction); a later read tracks it again. rueidis's
// own client-side cache is replaced by one that keeps nothing, so the layer
// above is the only in-process copy and every read reaches Redis.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/l2"
)

// ErrClosed is returned by every method called after Close.
var ErrClosed = errors.New("redisstore: closed")

// Store is an l2.Store on Redis. It is safe for concurrent use.
type Store struct {
	client atomic.Pointer[clientRef]
	closed atomic.Bool
	desc   string

	// On Sentinel, the store listens to every sentinel and replaces the
	// client when one reports a failover the client has not followed yet
	// (see sentinelwatch.go).
	switchMu  sync.Mutex
	stopWatch context.CancelFunc // nil when nothing is watched
	watchers  sync.WaitGroup
	followed  atomic.Uint64 // times the client was replaced to follow a failover
	onLost    func()        // reports a lost tracking link; nil without tracking

	masters masterList // on Cluster, the masters Probe pings (see probe.go)
}

// clientRef holds the current client.
type clientRef struct{ rueidis.Client }

// cli returns the current client.
func (s *Store) cli() rueidis.Client { return s.client.Load().Client }

var _ l2.Store = (*Store)(nil)

// New connects to Redis as opts describes and returns the Store. It fails
// when no server answers. Errors start with "redisstore: " and never contain
// a password.
func New(opts Options) (*Store, error) {
	copt, err := opts.clientOption()
	if err != nil {
		return nil, err
	}
	s := &Store{desc: describe(copt)}
	if opts.OnInvalidation != nil {
		copt.NewCacheStoreFn = newNoStore
		copt.OnInvalidations = invalidations(opts.OnInvalidation, &s.closed)
		s.onLost = func() { opts.OnInvalidation(l2.Invalidation{All: true}) }
	}
	client, err := rueidis.NewClient(copt)
	if err != nil {
		return nil, scrub(fmt.Errorf("redisstore: connect to %s: %w", s.desc, err), copt.Password, copt.Sentinel.Password)
	}
	if opts.Cluster && client.Mode() != rueidis.ClientModeCluster {
		s.closed.Store(true)
		client.Close()
		return nil, fmt.Errorf("redisstore: connect to %s: Cluster is set but the server is not a Redis Cluster", s.desc)
	}
	s.client.Store(&clientRef{client})
	s.desc = string(client.Mode()) + " " + s.desc
	if copt.Sentinel.MasterSet != "" {
		s.watchSentinels(copt)
	}
	if opts.OnInvalidation != nil {
		// Open the connections the liveness probe will use (see Probe).
		// A master that does not answer now is the probe's to report.
		ctx, cancel := context.WithTimeout(context.Background(), copt.Dialer.Timeout+time.Second)
		_ = s.pingMasters(ctx)
		cancel()
	}
	return s, nil
}

// describe names the deployment for errors and String, without credentials.
func describe(opt rueidis.ClientOption) string {
	var b strings.Builder
	if opt.Sentinel.MasterSet != "" {
		fmt.Fprintf(&b, "master %q via sentinels ", opt.Sentinel.MasterSet)
	}
	b.WriteString(strings.Join(opt.InitAddress, ","))
	if opt.SelectDB != 0 {
		fmt.Fprintf(&b, " db=%d", opt.SelectDB)
	}
	if opt.Username != "" {
		fmt.Fprintf(&b, " user=%s", opt.Username)
	}
	if opt.TLSConfig != nil {
		b.WriteString(" tls")
	}
	return b.String()
}

// scrub returns err unchanged unless its text holds one of the secrets; it
// then returns a plain error with the secrets masked, dropping the chain so
// that no wrapped error can reveal them.
func scrub(err error, secrets ...string) error {
	msg := err.Error()
	masked := msg
	for _, s := range secrets {
		if s != "" {
			masked = strings.ReplaceAll(masked, s, "xxxxx")
		}
	}
	if masked == msg {
		return err
	}
	return errors.New(masked)
}

// String describes the store's deployment without credentials.
func (s *Store) String() string { return "redisstore.Store(" + s.desc + ")" }

// Client returns the underlying rueidis client, for features that need
// commands of their own (tag versions, locks). It must not be closed.
func (s *Store) Client() rueidis.Client { return s.cli() }

// Get returns the value of key, or l2.ErrNotFound. When the store reports
// invalidations, the read also makes Redis track key for this client. The
// returned slice belongs to the caller.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := s.cli().Do(ctx, s.cli().B().Get().Key(key).Build()).AsBytes()
	if err != nil {
		if rueidis.IsRedisNil(err) {
			return nil, l2.ErrNotFound
		}
		return nil, s.wrap(err, "get %q", key)
	}
	return nonNil(v), nil
}

// MGet returns one value per key, nil where the key is missing. rueidis
// groups the GETs by node and pipelines them: one round trip per node, and
// no cross-slot command.
func (s *Store) MGet(ctx context.Context, keys []string) ([][]byte, error) {
	if len(keys) == 0 {
		return [][]byte{}, nil
	}
	multi := make([]rueidis.Completed, len(keys))
	for i, k := range keys {
		multi[i] = s.cli().B().Get().Key(k).Build()
	}
	res := s.cli().DoMulti(ctx, multi...)
	out := make([][]byte, len(keys))
	for i := range res {
		v, err := res[i].AsBytes()
		if err != nil {
			if rueidis.IsRedisNil(err) {
				continue
			}
			return nil, s.wrap(err, "mget %q (key %d of %d)", keys[i], i+1, len(keys))
		}
		out[i] = nonNil(v)
	}
	return out, nil
}

// Set stores value under key, expiring after ttl (<= 0: never).
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := s.cli().Do(ctx, s.set(key, value, ttl)).Error(); err != nil {
		return s.wrap(err, "set %q", key)
	}
	return nil
}

// MSet stores every item with one SET each, pipelined: one round trip per
// node, and no cross-slot command.
//
// Unlike Set, MSet does not copy the values: it is the bulk write path
// (warming, SetItems), where a copy of every value costs as much as the
// rest of the client's work. The caller must not modify an item's Value
// once MSet is called, even after it returns: when ctx ends first, rueidis
// may still be writing the commands. The cache's encoded values are never
// modified after they are built.
func (s *Store) MSet(ctx context.Context, items []l2.Item) error {
	if len(items) == 0 {
		return nil
	}
	multi := make([]rueidis.Completed, len(items))
	for i, it := range items {
		multi[i] = s.setString(it.Key, rueidis.BinaryString(it.Value), it.TTL)
	}
	for i, r := range s.cli().DoMulti(ctx, multi...) {
		if err := r.Error(); err != nil {
			return s.wrap(err, "mset %q (item %d of %d)", items[i].Key, i+1, len(items))
		}
	}
	return nil
}

// set builds SET key value [PX ms]. The value is copied: after a cancelled
// context rueidis may still be writing the command when the caller gets its
// slice back.
func (s *Store) set(key string, value []byte, ttl time.Duration) rueidis.Completed {
	return s.setString(key, string(value), ttl)
}

func (s *Store) setString(key, value string, ttl time.Duration) rueidis.Completed {
	cmd := s.cli().B().Set().Key(key).Value(value)
	if ttl <= 0 {
		return cmd.Build()
	}
	// Round up: PX 0 is an error, and a TTL is a lower bound on freshness
	// the caller asked for.
	return cmd.PxMilliseconds(int64((ttl + time.Millisecond - 1) / time.Millisecond)).Build()
}

// Del removes the keys, one DEL each so that no command spans slots.
// Missing keys are not an error.
func (s *Store) Del(ctx context.Context, keys ...string) error {
	switch len(keys) {
	case 0:
		return nil
	case 1:
		if err := s.cli().Do(ctx, s.cli().B().Del().Key(keys[0]).Build()).Error(); err != nil {
			return s.wrap(err, "del %q", keys[0])
		}
		return nil
	}
	multi := make([]rueidis.Completed, len(keys))
	for i, k := range keys {
		multi[i] = s.cli().B().Del().Key(k).Build()
	}
	for i, r := range s.cli().DoMulti(ctx, multi...) {
		if err := r.Error(); err != nil {
			return s.wrap(err, "del %q (key %d of %d)", keys[i], i+1, len(keys))
		}
	}
	return nil
}

// Close closes every connection. No call of OnInvalidation starts once
// Close has been called. Closing twice is a no-op.
func (s *Store) Close() error {
	if s.closed.CompareAndSwap(false, true) {
		s.switchMu.Lock()
		if s.stopWatch != nil {
			s.stopWatch()
		}
		s.cli().Close()
		s.switchMu.Unlock()
		s.watchers.Wait()
	}
	return nil
}

// wrap adds the operation to err, and turns the client's "closing" error
// into ErrClosed once Close was called.
func (s *Store) wrap(err error, format string, args ...any) error {
	if s.closed.Load() && errors.Is(err, rueidis.ErrClosing) {
		return ErrClosed
	}
	if _, isReply := rueidis.IsRedisErr(err); !isReply && !errors.Is(err, context.Canceled) {
		// No reply, or no reply in time: Redis is unreachable for now.
		return fmt.Errorf("redisstore: "+format+": %w: %w", append(args, l2.ErrUnavailable, err)...)
	}
	if ret, isReply := rueidis.IsRedisErr(err); isReply && (ret.IsTryAgain() || ret.IsClusterDown() || ret.IsLoading() || strings.HasPrefix(ret.Error(), "READONLY") || strings.HasPrefix(ret.Error(), "MASTERDOWN") || strings.HasPrefix(ret.Error(), "NOREPLICAS")) {
		// Transient server states during failover, resharding or start-up.
		return fmt.Errorf("redisstore: "+format+": %w: %w", append(args, l2.ErrUnavailable, err)...)
	}
	return fmt.Errorf("redisstore: "+format+": %w", append(args, err)...)
}

// nonNil keeps an empty value distinct from a missing one in MGet.
func nonNil(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}
