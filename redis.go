package tiercache

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"

	"github.com/tiercache/tiercache/internal/l2"
	"github.com/tiercache/tiercache/internal/redisstore"
)

// newRedisStore connects the Redis L2 described by r (in the background
// with r.LazyConnect). onInv receives the server's invalidations; logger
// the store's connection and failover events. trackOnly, when not nil,
// limits tracking to the reads of the keys it picks (see trackOnly).
func newRedisStore(r RedisOptions, logger *slog.Logger, onInv func(l2.Invalidation), trackOnly func(string) bool) (l2.Store, error) {
	addrs := r.Addrs
	if r.SentinelMaster != "" {
		// The sentinels supply the addresses; a URL only supplies
		// credentials and the DB.
		addrs = r.SentinelAddrs
		if r.URL != "" {
			u, err := url.Parse(r.URL)
			if err != nil {
				return nil, optErr("malformed Redis URL %q", redactURL(r.URL))
			}
			if r.Username == "" && u.User != nil {
				r.Username = u.User.Username()
			}
			if p, ok := u.User.Password(); ok && r.Password == "" {
				r.Password = p
			}
			if db := strings.Trim(u.Path, "/"); db != "" && r.DB == 0 {
				if r.DB, err = strconv.Atoi(db); err != nil {
					return nil, optErr("Redis URL database %q is not a number", db)
				}
			}
			r.URL = ""
		}
	}
	s, err := redisstore.New(redisstore.Options{
		URL:              r.URL,
		Addrs:            addrs,
		Username:         r.Username,
		Password:         r.Password,
		DB:               r.DB,
		TLS:              r.TLS,
		SentinelMaster:   r.SentinelMaster,
		SentinelUsername: r.SentinelUsername,
		SentinelPassword: r.SentinelPassword,
		Cluster:          r.Cluster,
		DialTimeout:      r.DialTimeout,
		WriteTimeout:     r.WriteTimeout,
		DialContext:      r.DialContext,
		Lazy:             r.LazyConnect,
		Logger:           logger,
		OnInvalidation:   onInv,
		TrackOnly:        trackOnly,
	})
	if errors.Is(err, redisstore.ErrInvalidOptions) {
		return nil, fmt.Errorf("%w: Redis: %w", ErrInvalidOptions, err)
	}
	if err != nil {
		return nil, errorf("tiercache: connect to Redis (%s): %w", r, err)
	}
	return s, nil
}
