// Package redisstore is the Redis implementation of l2.Store, on rueidis.
//
// One Store serves standalone Redis, Sentinel and Cluster deployments alike.
// When Options.OnInvalidation is set, connections turn on server-assisted
// client-side caching in its default mode: Redis tracks every key a
// connection reads and reports the key once when it changes (a write by
// anyone, an expiry, an eviction); a later read tracks it again. With
// Options.TrackOnly, tracking is in OPTIN mode and covers only the reads of
// the keys it picks. rueidis's own client-side cache is replaced by one that
// keeps nothing, so the layer above is the only in-process copy and every
// read reaches Redis.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
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
	// client is the current client; nil while a lazy store has not
	// connected yet (see connect.go).
	client atomic.Pointer[clientRef]
	closed atomic.Bool
	desc   string // the target, without credentials
	mode   string // the deployment expected before the first connection
	logger *slog.Logger

	// On Sentinel, the store listens to every sentinel and replaces the
	// client when one reports a failover the client has not followed yet
	// (see sentinelwatch.go).
	switchMu sync.Mutex
	bg       context.Context    // background work (connector, watchers) runs on it
	stopBg   context.CancelFunc // ends bg; called by Close
	watchers sync.WaitGroup
	followed atomic.Uint64 // times the client was replaced to follow a failover
	onLost   func()        // reports a lost tracking link; nil without tracking
	tracking bool          // the connections track keys (OnInvalidation is set)
	// trackOnly picks the keys whose reads are tracked (OPTIN mode); nil
	// tracks every read (default mode) or none (without tracking).
	trackOnly func(key string) bool

	lazy        lazyState   // the background connection of a lazy store
	failoverLog failoverLog // when the store last lost its master

	masters masterList // on Cluster, the masters Probe pings (see probe.go)
}

// clientRef holds the current client.
type clientRef struct{ rueidis.Client }

// cli returns the current client, or nil while a lazy store has not
// connected yet.
func (s *Store) cli() rueidis.Client {
	if r := s.client.Load(); r != nil {
		return r.Client
	}
	return nil
}

// conn returns the current client, or, while a lazy store has not
// connected yet, an error matching l2.ErrUnavailable.
func (s *Store) conn() (rueidis.Client, error) {
	if r := s.client.Load(); r != nil {
		return r.Client, nil
	}
	if s.closed.Load() {
		return nil, ErrClosed
	}
	return nil, s.lazy.notConnected()
}

var _ l2.Store = (*Store)(nil)

// New connects to Redis as opts describes and returns the Store. It fails
// when no server answers, unless opts.Lazy is set: it then returns at once
// and connects in the background (see connect.go). Errors start with
// "redisstore: " and never contain a password.
func New(opts Options) (*Store, error) {
	copt, err := opts.clientOption()
	if err != nil {
		return nil, err
	}
	s := &Store{desc: describe(copt), mode: expectedMode(copt, opts.Cluster), logger: opts.Logger}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if opts.OnInvalidation != nil {
		s.tracking = true
		s.trackOnly = opts.TrackOnly
		copt.NewCacheStoreFn = newNoStore
		copt.OnInvalidations = invalidations(opts.OnInvalidation, &s.closed)
		s.onLost = func() { opts.OnInvalidation(l2.Invalidation{All: true}) }
	}
	s.bg, s.stopBg = context.WithCancel(context.Background())
	if opts.Lazy {
		s.startConnecting(copt, opts)
		return s, nil
	}
	if err := s.connect(copt, opts); err != nil {
		s.closed.Store(true)
		s.stopBg()
		return nil, err
	}
	return s, nil
}

// connect builds the client, checks the deployment and starts what
// follows it. It fails when no server answers.
func (s *Store) connect(copt rueidis.ClientOption, opts Options) error {
	client, err := rueidis.NewClient(copt)
	if err != nil {
		return scrub(fmt.Errorf("redisstore: connect to %s: %w", s.desc, err), copt.Password, copt.Sentinel.Password)
	}
	if opts.Cluster && client.Mode() != rueidis.ClientModeCluster {
		client.Close()
		return fmt.Errorf("redisstore: connect to %s: Cluster is set but the server is not a Redis Cluster", s.desc)
	}
	s.switchMu.Lock()
	if s.closed.Load() {
		s.switchMu.Unlock()
		client.Close()
		return ErrClosed
	}
	s.client.Store(&clientRef{client})
	if copt.Sentinel.MasterSet != "" {
		s.failoverLog.master = currentMaster(slices.Collect(maps.Keys(client.Nodes())))
		s.watchSentinels(copt)
	}
	s.switchMu.Unlock()
	if opts.OnInvalidation != nil {
		// Open the connections the liveness probe will use (see Probe).
		// A master that does not answer now is the probe's to report.
		ctx, cancel := context.WithTimeout(s.bg, copt.Dialer.Timeout+time.Second)
		_ = s.pingMasters(ctx)
		cancel()
	}
	return nil
}

// expectedMode is the deployment the options ask for, before any server
// has answered: a Cluster that is detected rather than required reads as
// standalone until then.
func expectedMode(copt rueidis.ClientOption, cluster bool) string {
	switch {
	case copt.Sentinel.MasterSet != "":
		return string(rueidis.ClientModeSentinel)
	case cluster:
		return string(rueidis.ClientModeCluster)
	}
	return string(rueidis.ClientModeStandalone)
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
func (s *Store) String() string { return "redisstore.Store(" + s.Mode() + " " + s.desc + ")" }

// Client returns the underlying rueidis client, for features that need
// commands of their own (tag versions, locks). It must not be closed. It
// is nil while a lazy store has not connected yet.
func (s *Store) Client() rueidis.Client { return s.cli() }

// Get returns the value of key, or l2.ErrNotFound. When the store reports
// invalidations, the read also makes Redis track key for this client (with
// TrackOnly, only when it picks key). The returned slice belongs to the
// caller.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	var v []byte
	if s.trackOnly != nil && s.trackOnly(key) {
		v, err = c.DoCache(ctx, optIn(c.B(), key), optInTTL).AsBytes()
	} else {
		v, err = c.Do(ctx, c.B().Get().Key(key).Build()).AsBytes()
	}
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
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	res := s.getMulti(ctx, c, keys)
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
	c, err := s.conn()
	if err != nil {
		return err
	}
	if err := c.Do(ctx, setCmd(c.B(), key, string(value), ttl)).Error(); err != nil {
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
	c, err := s.conn()
	if err != nil {
		return err
	}
	multi := make([]rueidis.Completed, len(items))
	for i, it := range items {
		multi[i] = setCmd(c.B(), it.Key, rueidis.BinaryString(it.Value), it.TTL)
	}
	for i, r := range c.DoMulti(ctx, multi...) {
		if err := r.Error(); err != nil {
			return s.wrap(err, "mset %q (item %d of %d)", items[i].Key, i+1, len(items))
		}
	}
	return nil
}

// MaxTracked is the largest batch MSetTracked takes: its 2 commands a key
// stay under rueidis's threshold (BlockingPipeline, 2000) beyond which a
// pipeline moves to a pooled connection, whose tracking would end with it.
const MaxTracked = 512

// MSetTracked stores every item with SET and reads it back with GET in the
// same pipeline, on the connection that tracks invalidations: the GET
// makes the server track the key for this client again (the SET ended any
// tracking, and with NOLOOP the store is not told about its own writes).
// ok[i] is true when the GET returned items[i].Value, so that the tracked
// value is the one written; another client's write in between reads back
// as false. Batches over MaxTracked, and stores without tracking or with
// TrackOnly (whose reads of data keys are not tracked), return all false
// after a plain MSet.
func (s *Store) MSetTracked(ctx context.Context, items []l2.Item) ([]bool, error) {
	ok := make([]bool, len(items))
	if len(items) == 0 {
		return ok, nil
	}
	if !s.tracking || s.trackOnly != nil || len(items) > MaxTracked {
		if err := s.MSet(ctx, items); err != nil {
			return nil, err
		}
		return ok, nil
	}
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	multi := make([]rueidis.Completed, 0, 2*len(items))
	for _, it := range items {
		multi = append(multi,
			setCmd(c.B(), it.Key, rueidis.BinaryString(it.Value), it.TTL),
			c.B().Get().Key(it.Key).Build())
	}
	res := c.DoMulti(ctx, multi...)
	for i, it := range items {
		if err := res[2*i].Error(); err != nil {
			if len(items) == 1 {
				return nil, s.wrap(err, "set %q", it.Key)
			}
			return nil, s.wrap(err, "mset %q (item %d of %d)", it.Key, i+1, len(items))
		}
		// The read-back's own failure is no failure of the write: the
		// key is then just not kept in L1.
		v, err := res[2*i+1].ToString()
		ok[i] = err == nil && v == string(it.Value)
	}
	return ok, nil
}

// setCmd builds SET key value [PX ms]. Set passes a copy of its value:
// after a cancelled context rueidis may still be writing the command when
// the caller gets its slice back.
func setCmd(b rueidis.Builder, key, value string, ttl time.Duration) rueidis.Completed {
	cmd := b.Set().Key(key).Value(value)
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
	if len(keys) == 0 {
		return nil
	}
	c, err := s.conn()
	if err != nil {
		return err
	}
	if len(keys) == 1 {
		if err := c.Do(ctx, c.B().Del().Key(keys[0]).Build()).Error(); err != nil {
			return s.wrap(err, "del %q", keys[0])
		}
		return nil
	}
	multi := make([]rueidis.Completed, len(keys))
	for i, k := range keys {
		multi[i] = c.B().Del().Key(k).Build()
	}
	for i, r := range c.DoMulti(ctx, multi...) {
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
		s.stopBg()
		if c := s.cli(); c != nil {
			c.Close()
		}
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
		s.failoverLog.noteError(time.Now())
		return fmt.Errorf("redisstore: "+format+": %w: %w", append(args, l2.ErrUnavailable, err)...)
	}
	if ret, isReply := rueidis.IsRedisErr(err); isReply && (ret.IsTryAgain() || ret.IsClusterDown() || ret.IsLoading() || strings.HasPrefix(ret.Error(), "READONLY") || strings.HasPrefix(ret.Error(), "MASTERDOWN") || strings.HasPrefix(ret.Error(), "NOREPLICAS")) {
		// Transient server states during failover, resharding or start-up.
		s.failoverLog.noteError(time.Now())
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
