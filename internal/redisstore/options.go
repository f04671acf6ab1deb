package redisstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/l2"
)

// Refresh intervals for the background topology checks. rueidis follows a
// Sentinel switch through +switch-master events and a Cluster reshard through
// MOVED replies; the periodic checks catch what those miss (a lost event, a
// demoted master that never closes its connections, a replica promoted while
// this client was idle). A few seconds keeps the extra load on sentinels and
// nodes negligible while bounding how long a missed event can pin the store to
// the wrong node. A check that finds nothing new closes no connection, so it
// reports no invalidation.
const (
	DefaultTopologyRefreshInterval = 5 * time.Second
	DefaultShardsRefreshInterval   = 5 * time.Second
)

// clientName is set on every connection so operators can tell the store's
// connections apart in CLIENT LIST.
const clientName = "tiercache"

// Options configures a Store. Set URL, Addrs, or both; every other field may
// be left zero.
type Options struct {
	// URL is a redis:// or rediss:// URL, for example
	// redis://user:pass@host:6379/2 or redis://host:7000?addr=host:7001.
	// Its query may carry dial_timeout, write_timeout, client_name,
	// master_set and skip_verify (rediss only). Empty means no URL: Addrs
	// must then be set. Fields set below override the URL's values.
	URL string

	// Addrs lists host:port addresses: the server for a standalone
	// deployment, seed nodes for a Cluster, or the sentinels when
	// SentinelMaster is set. Empty means the URL's addresses.
	Addrs []string

	// Username and Password authenticate to Redis. Empty means the URL's
	// credentials, or none.
	Username, Password string

	// DB selects the logical database. Zero means the URL's database, or 0.
	// It must be 0 on a Cluster.
	DB int

	// TLS enables TLS to Redis (and to the sentinels) with this
	// configuration. Nil means plain TCP, unless the URL is rediss://.
	TLS *tls.Config

	// SentinelMaster names the master set monitored by the sentinels listed
	// in Addrs. Empty means no Sentinel, unless the URL has master_set.
	SentinelMaster string

	// SentinelUsername and SentinelPassword authenticate to the sentinels.
	// Empty means the sentinels need no authentication.
	SentinelUsername, SentinelPassword string

	// Cluster requires a Redis Cluster: New fails when the servers are not
	// one. False still detects a Cluster by itself.
	Cluster bool

	// DialTimeout bounds each connection attempt. Zero means the rueidis
	// default (5s).
	DialTimeout time.Duration

	// WriteTimeout bounds how long a connection may wait for Redis to
	// answer before it is declared dead and closed. Zero means the rueidis
	// default (10s).
	WriteTimeout time.Duration

	// DialContext opens every TCP connection, to the nodes and to the
	// sentinels; TLS, when configured, runs over what it returns, and
	// DialTimeout bounds ctx. Nil means a plain dial.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// Lazy makes New return at once, without a server: the store then
	// connects in the background, retrying with a backoff (100 ms doubling
	// to 5 s), and until it has connected every operation fails with an
	// error matching l2.ErrUnavailable. False means New connects, and fails
	// when no server answers.
	Lazy bool

	// Logger receives the store's own events: a lazy store's first failed
	// connection and its success, and a Sentinel failover the store
	// followed. Nil means no log.
	Logger *slog.Logger

	// OnInvalidation receives the keys that Redis reports as changed after
	// this store read them, and Invalidation{All: true} whenever a
	// connection closes (the tracking state on it is lost) or Redis is
	// flushed. Each read arms a key once: after a report, only the next
	// read of it arms it again. Spurious All reports are possible, for
	// example a few just after New on a Cluster, when rueidis closes the
	// connections to the seeds it did not keep.
	//
	// It runs on a connection's read goroutine: it must return quickly and
	// must never call the Store. It may be called before New returns.
	// Once Close has been called no new call starts. Nil means nobody
	// listens: reads then skip client tracking altogether.
	OnInvalidation func(l2.Invalidation)

	// TrackOnly, with OnInvalidation set, narrows client tracking to the
	// keys for which it returns true: connections turn tracking on in
	// OPTIN mode, a read of such a key (Get, MGet, Probe) is preceded by
	// CLIENT CACHING YES on the same connection, and every other read
	// leaves nothing in the server's tracking table and brings no
	// invalidation. Nil means every key read is tracked (the default
	// mode). It is called with the key of every read, on the caller's
	// goroutine: it must be fast and safe for concurrent use.
	TrackOnly func(key string) bool
}

// validate checks the fields that do not depend on the URL.
func (o *Options) validate() error {
	if o.URL == "" && len(o.Addrs) == 0 {
		return errors.New("redisstore: no address: set URL or Addrs")
	}
	for i, addr := range o.Addrs {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("redisstore: Addrs[%d] %q is not host:port", i, addr)
		}
	}
	if o.DB < 0 {
		return fmt.Errorf("redisstore: DB %d is negative", o.DB)
	}
	if o.DialTimeout < 0 {
		return fmt.Errorf("redisstore: DialTimeout %v is negative", o.DialTimeout)
	}
	if o.WriteTimeout < 0 {
		return fmt.Errorf("redisstore: WriteTimeout %v is negative", o.WriteTimeout)
	}
	if o.Cluster && o.SentinelMaster != "" {
		return errors.New("redisstore: Cluster and SentinelMaster are mutually exclusive")
	}
	if o.Cluster && o.DB != 0 {
		return fmt.Errorf("redisstore: DB %d is not allowed on a Cluster (only 0)", o.DB)
	}
	return nil
}

// ErrInvalidOptions marks errors in Options: a bad address, URL or
// combination of fields. Nothing is dialled then.
var ErrInvalidOptions = errors.New("redisstore: invalid options")

// invalid marks err as an ErrInvalidOptions, keeping its message.
type invalid struct{ error }

func (e invalid) Unwrap() []error { return []error{e.error, ErrInvalidOptions} }

// clientOption turns o into rueidis options. Errors never contain a
// password, and match ErrInvalidOptions.
func (o *Options) clientOption() (rueidis.ClientOption, error) {
	opt, err := o.buildOption()
	if err != nil {
		return rueidis.ClientOption{}, invalid{err}
	}
	return opt, nil
}

func (o *Options) buildOption() (rueidis.ClientOption, error) {
	if err := o.validate(); err != nil {
		return rueidis.ClientOption{}, err
	}
	var opt rueidis.ClientOption
	if o.URL != "" {
		var err error
		if opt, err = parseURL(o.URL); err != nil {
			return rueidis.ClientOption{}, err
		}
	}
	if len(o.Addrs) > 0 {
		opt.InitAddress = append([]string(nil), o.Addrs...)
	}
	if o.Username != "" {
		opt.Username = o.Username
	}
	if o.Password != "" {
		opt.Password = o.Password
	}
	if o.DB != 0 {
		opt.SelectDB = o.DB
	}
	if o.TLS != nil {
		t := o.TLS.Clone()
		if t.ServerName == "" && opt.TLSConfig != nil {
			t.ServerName = opt.TLSConfig.ServerName
		}
		opt.TLSConfig = t
	}
	if o.SentinelMaster != "" {
		opt.Sentinel.MasterSet = o.SentinelMaster
	}
	if opt.Sentinel.MasterSet != "" {
		if o.Cluster {
			return rueidis.ClientOption{}, errors.New("redisstore: Cluster and a Sentinel master set are mutually exclusive")
		}
		opt.Sentinel.Username = o.SentinelUsername
		opt.Sentinel.Password = o.SentinelPassword
		opt.Sentinel.TLSConfig = opt.TLSConfig
		opt.Sentinel.ClientName = clientName
		opt.Sentinel.TopologyRefreshInterval = DefaultTopologyRefreshInterval
	}
	if o.Cluster && opt.SelectDB != 0 {
		return rueidis.ClientOption{}, fmt.Errorf("redisstore: database %d is not allowed on a Cluster (only 0)", opt.SelectDB)
	}
	if o.DialTimeout > 0 {
		opt.Dialer.Timeout = o.DialTimeout
		opt.Sentinel.Dialer.Timeout = o.DialTimeout
	}
	if o.WriteTimeout > 0 {
		opt.ConnWriteTimeout = o.WriteTimeout
	}
	if o.DialContext != nil {
		opt.DialCtxFn = dialWith(o.DialContext)
	}
	if opt.ClientName == "" {
		opt.ClientName = clientName
	}
	opt.ClusterOption.ShardsRefreshInterval = DefaultShardsRefreshInterval
	// Without a listener, tracking would only cost server memory.
	opt.DisableCache = o.OnInvalidation == nil
	// Default tracking mode (CLIENT TRACKING ON, no OPTIN): the server
	// tracks every key a connection reads, so a read is a plain GET. OPTIN
	// would add a CLIENT CACHING YES to every read, about 15% of read
	// throughput, for no benefit: the store reads nothing it does not want
	// tracked.
	//
	// NOLOOP: the server does not tell a connection about its own writes.
	// A write ends the key's tracking either way; MSetTracked reads the
	// key back in the same pipeline to track the value it wrote, and a
	// notification of the write itself, arriving after that read, would
	// drop the copy the writer has just kept. The cache drops or replaces
	// its own L1 entries when it writes, so it needs no such notice.
	opt.ClientTrackingOptions = []string{"NOLOOP"}
	if o.TrackOnly != nil {
		// OPTIN: only the reads TrackOnly picks are tracked, each after
		// a CLIENT CACHING YES (rueidis sends it before a DoCache).
		// Worth it when few reads need tracking, as without an L1.
		opt.ClientTrackingOptions = []string{"OPTIN", "NOLOOP"}
	}
	if !opt.DisableCache {
		// One connection per node: a key read on one connection and
		// written on another would still be notified to the first, since
		// NOLOOP only spares the writing connection. With one connection,
		// every notification this client receives is another client's
		// change, ordered with this client's own replies.
		opt.PipelineMultiplex = -1
	}
	// The cache's guard owns retries: it retries idempotent operations
	// with backoff, counts them against the circuit breaker and honours
	// the operation timeout. rueidis's own retry would also re-send a
	// command on a new connection while the broken connection's writer
	// may still hold it, and then recycle it under that writer.
	opt.DisableRetry = true
	// No CLIENT SETINFO in the handshake: Redis 7.0 has no such command,
	// so the least-privileged ACL user of deploy/acl.conf cannot be
	// granted it, and on Redis 7.2 every connection would then log a
	// denial in ACL LOG, which operators watch for missing rights.
	opt.ClientSetInfo = rueidis.DisableClientSetInfo
	return opt, nil
}

// dialWith turns a DialContext into rueidis's dial function: the dialer's
// timeout bounds the dial and the TLS handshake, which runs over the
// connection dial returns, with the server's host name when the TLS
// configuration names none (as tls.Dial does).
func dialWith(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(context.Context, string, *net.Dialer, *tls.Config) (net.Conn, error) {
	return func(ctx context.Context, dst string, d *net.Dialer, cfg *tls.Config) (net.Conn, error) {
		if d != nil && d.Timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d.Timeout)
			defer cancel()
		}
		conn, err := dial(ctx, "tcp", dst)
		if err != nil || cfg == nil {
			return conn, err
		}
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName, _, _ = net.SplitHostPort(dst)
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		return tc, nil
	}
}

// quoted matches the fragments of the input that net/url quotes in its
// errors; they may be pieces of a password.
var quoted = regexp.MustCompile(`"[^"]*"`)

// parseURL parses raw with rueidis.ParseURL and returns errors that hold
// neither the URL nor any piece of it.
func parseURL(raw string) (rueidis.ClientOption, error) {
	u, err := url.Parse(raw)
	if err != nil {
		reason := err
		var uerr *url.Error
		if errors.As(err, &uerr) {
			reason = uerr.Err
		}
		return rueidis.ClientOption{}, fmt.Errorf("redisstore: invalid URL: %s", quoted.ReplaceAllString(reason.Error(), `"…"`))
	}
	switch u.Scheme {
	case "redis", "rediss":
	case "":
		return rueidis.ClientOption{}, errors.New("redisstore: invalid URL: missing scheme (want redis:// or rediss://)")
	default:
		return rueidis.ClientOption{}, fmt.Errorf("redisstore: invalid URL: scheme %q is not redis or rediss", u.Scheme)
	}
	if u.Host == "" {
		return rueidis.ClientOption{}, fmt.Errorf("redisstore: invalid URL %s: no host", u.Redacted())
	}
	opt, err := rueidis.ParseURL(raw)
	if err != nil {
		// rueidis quotes only path and query values, never the user info;
		// scrub the password all the same in case it was repeated there.
		msg := strings.TrimPrefix(err.Error(), "redis: ")
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
		return rueidis.ClientOption{}, fmt.Errorf("redisstore: invalid URL %s: %s", u.Redacted(), msg)
	}
	return opt, nil
}
