package redisstore

import (
	"context"
	"crypto/tls"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

func TestOptions_ClientOption(t *testing.T) {
	t.Parallel()
	custom := &tls.Config{MinVersion: tls.VersionTLS13}
	tests := []struct {
		name  string
		opts  Options
		check func(t *testing.T, got clientView)
	}{
		{"url_user_password_db", Options{URL: "redis://alice:s3cret@cache.example:6380/3"}, func(t *testing.T, got clientView) {
			want := clientView{addrs: []string{"cache.example:6380"}, user: "alice", password: "s3cret", db: 3}
			got.expect(t, want)
		}},
		{"url_default_port", Options{URL: "redis://cache.example"}, func(t *testing.T, got clientView) {
			got.expect(t, clientView{addrs: []string{"cache.example:6379"}})
		}},
		{"url_password_only", Options{URL: "redis://:s3cret@cache.example:6379"}, func(t *testing.T, got clientView) {
			got.expect(t, clientView{addrs: []string{"cache.example:6379"}, password: "s3cret"})
		}},
		{"rediss", Options{URL: "rediss://cache.example:6380"}, func(t *testing.T, got clientView) {
			if !got.tls || got.serverName != "cache.example" {
				t.Errorf("tls %v, ServerName %q; want TLS for cache.example", got.tls, got.serverName)
			}
		}},
		{"url_seed_addrs", Options{URL: "redis://a:7000?addr=b:7001&addr=c:7002"}, func(t *testing.T, got clientView) {
			got.expect(t, clientView{addrs: []string{"a:7000", "b:7001", "c:7002"}})
		}},
		{"url_timeouts", Options{URL: "redis://a:7000?dial_timeout=2s&write_timeout=3s"}, func(t *testing.T, got clientView) {
			if got.dial != 2*time.Second || got.write != 3*time.Second {
				t.Errorf("dial %v, write %v; want 2s, 3s", got.dial, got.write)
			}
		}},
		{"url_master_set", Options{URL: "redis://s1:26379?addr=s2:26379&master_set=mymaster", SentinelPassword: "sp"}, func(t *testing.T, got clientView) {
			if got.master != "mymaster" || got.sentinelPassword != "sp" || got.topologyRefresh != DefaultTopologyRefreshInterval {
				t.Errorf("master %q, sentinel password %q, refresh %v", got.master, got.sentinelPassword, got.topologyRefresh)
			}
		}},
		{"fields_override_url", Options{
			URL: "redis://alice:old@a:1/1", Addrs: []string{"b:2"}, Username: "bob", Password: "new", DB: 2,
			TLS: custom, DialTimeout: time.Second, WriteTimeout: 4 * time.Second,
		}, func(t *testing.T, got clientView) {
			got.expect(t, clientView{addrs: []string{"b:2"}, user: "bob", password: "new", db: 2, tls: true,
				dial: time.Second, write: 4 * time.Second})
		}},
		{"sentinel_fields", Options{Addrs: []string{"s:26379"}, SentinelMaster: "m", SentinelUsername: "su", SentinelPassword: "sp"}, func(t *testing.T, got clientView) {
			if got.master != "m" || got.sentinelUser != "su" || got.sentinelPassword != "sp" {
				t.Errorf("sentinel %q %q %q", got.master, got.sentinelUser, got.sentinelPassword)
			}
		}},
		{"refresh_intervals", Options{Addrs: []string{"a:1"}}, func(t *testing.T, got clientView) {
			if got.shardsRefresh != DefaultShardsRefreshInterval || got.master != "" {
				t.Errorf("shards refresh %v, master %q", got.shardsRefresh, got.master)
			}
		}},
		{"no_listener_no_tracking", Options{Addrs: []string{"a:1"}}, func(t *testing.T, got clientView) {
			if !got.disableCache {
				t.Error("tracking enabled without OnInvalidation")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opt, err := tt.opts.clientOption()
			if err != nil {
				t.Fatalf("clientOption: %v", err)
			}
			tt.check(t, clientView{
				addrs: opt.InitAddress, user: opt.Username, password: opt.Password, db: opt.SelectDB,
				tls: opt.TLSConfig != nil, dial: opt.Dialer.Timeout, write: opt.ConnWriteTimeout,
				serverName: serverName(opt.TLSConfig), master: opt.Sentinel.MasterSet,
				sentinelUser: opt.Sentinel.Username, sentinelPassword: opt.Sentinel.Password,
				topologyRefresh: opt.Sentinel.TopologyRefreshInterval,
				shardsRefresh:   opt.ClusterOption.ShardsRefreshInterval, disableCache: opt.DisableCache,
			})
		})
	}
}

// clientView is the part of rueidis.ClientOption the tests compare.
type clientView struct {
	addrs                          []string
	user, password                 string
	db                             int
	tls                            bool
	dial, write                    time.Duration
	serverName, master             string
	sentinelUser, sentinelPassword string
	topologyRefresh, shardsRefresh time.Duration
	disableCache                   bool
}

// expect compares the connection fields of v with want.
func (v clientView) expect(t *testing.T, want clientView) {
	t.Helper()
	if !slices.Equal(v.addrs, want.addrs) || v.user != want.user || v.password != want.password ||
		v.db != want.db || v.tls != want.tls || v.dial != want.dial || v.write != want.write {
		t.Errorf("got addrs %v user %q password %q db %d tls %v dial %v write %v\n"+
			"want addrs %v user %q password %q db %d tls %v dial %v write %v",
			v.addrs, v.user, v.password, v.db, v.tls, v.dial, v.write,
			want.addrs, want.user, want.password, want.db, want.tls, want.dial, want.write)
	}
}

func serverName(c *tls.Config) string {
	if c == nil {
		return ""
	}
	return c.ServerName
}

// TestNew_InvalidOptions checks that bad options fail before any dial with
// a clear error that never holds a password or a piece of one.
func TestNew_InvalidOptions(t *testing.T) {
	t.Parallel()
	// A slash in a password breaks the URL's structure: net/url then
	// reads part of it as a port.
	const pw = "p4ss/w0rd"
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"nothing", Options{}, "no address"},
		{"addr_without_port", Options{Addrs: []string{"localhost"}}, "not host:port"},
		{"negative_db", Options{Addrs: []string{"a:1"}, DB: -1}, "DB -1 is negative"},
		{"negative_dial_timeout", Options{Addrs: []string{"a:1"}, DialTimeout: -time.Second}, "DialTimeout"},
		{"negative_write_timeout", Options{Addrs: []string{"a:1"}, WriteTimeout: -time.Second}, "WriteTimeout"},
		{"cluster_and_sentinel", Options{Addrs: []string{"a:1"}, Cluster: true, SentinelMaster: "m"}, "mutually exclusive"},
		{"cluster_and_url_master_set", Options{URL: "redis://a:1?master_set=m", Cluster: true}, "mutually exclusive"},
		{"cluster_db", Options{Addrs: []string{"a:1"}, Cluster: true, DB: 1}, "not allowed on a Cluster"},
		{"cluster_url_db", Options{URL: "redis://a:1/2", Cluster: true}, "not allowed on a Cluster"},
		{"scheme", Options{URL: "http://u:p4ssw0rd@a:1"}, `scheme "http"`},
		{"no_scheme", Options{URL: "//u:p4ssw0rd@a:1"}, "missing scheme"},
		{"no_host", Options{URL: "redis://u:p4ssw0rd@/0"}, "no host"},
		{"password_with_slash", Options{URL: "redis://u:" + pw + "@a:1"}, "invalid URL"},
		{"bad_port", Options{URL: "redis://u:" + pw + "@a:port"}, "invalid port"},
		{"bad_escape_in_password", Options{URL: "redis://u:p4ss%w0rd@a:1"}, "invalid URL escape"},
		{"bad_db", Options{URL: "redis://u:p4ssw0rd@a:1/zero"}, "invalid database number"},
		{"bad_path", Options{URL: "redis://u:p4ssw0rd@a:1/1/2"}, "invalid URL path"},
		{"bad_dial_timeout", Options{URL: "redis://u:p4ssw0rd@a:1?dial_timeout=soon"}, "invalid dial timeout"},
		{"control_character", Options{URL: "redis://u:p4ssw0rd@a:1/\x7f"}, "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := New(tt.opts)
			if err == nil {
				s.Close()
				t.Fatal("New succeeded")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "redisstore: ") || !strings.Contains(msg, tt.want) {
				t.Errorf("error %q: want prefix %q and %q", msg, "redisstore: ", tt.want)
			}
			for _, secret := range []string{"p4ss", "w0rd"} {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q reveals the password", msg)
				}
			}
		})
	}
}

// TestNew_Connect covers the options against real servers: credentials and
// database from a URL, failures that must not reveal the password, and a
// Cluster requirement that a standalone server cannot meet.
func TestNew_Connect(t *testing.T) {
	t.Parallel()
	srv := redistest.NewStandalone(t, "--user", "alice", "on", ">alice-s3cret", "~*", "&*", "+@all")
	port := strconv.Itoa(srv.Port)

	t.Run("url_user_and_db", func(t *testing.T) {
		s, err := New(Options{URL: "redis://alice:alice-s3cret@127.0.0.1:" + port + "/3"})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		info, err := s.Client().Do(context.Background(), s.Client().B().ClientInfo().Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(info, " db=3 ") || !strings.Contains(info, " user=alice ") || !strings.Contains(info, " name=tiercache ") {
			t.Errorf("CLIENT INFO = %q, want db=3 user=alice name=tiercache", info)
		}
		if str := s.String(); strings.Contains(str, "s3cret") || !strings.Contains(str, "user=alice") {
			t.Errorf("String() = %q", str)
		}
	})

	failures := []struct {
		name string
		opts Options
		want string
	}{
		{"wrong_password", Options{Addrs: []string{srv.Addr}, Username: "alice", Password: "wrong-s3cret"}, "WRONGPASS"},
		{"wrong_password_url", Options{URL: "redis://alice:wrong-s3cret@" + srv.Addr}, "WRONGPASS"},
		{"refused", Options{Addrs: []string{closedAddr(t)}, Password: "wrong-s3cret", DialTimeout: time.Second}, "connect to"},
		{"cluster_required", Options{Addrs: []string{srv.Addr}, Cluster: true}, "not a Redis Cluster"},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.opts)
			if err == nil {
				s.Close()
				t.Fatal("New succeeded")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "redisstore: ") || !strings.Contains(msg, tt.want) || strings.Contains(msg, "s3cret") {
				t.Errorf("error %q: want prefix %q, %q, and no password", msg, "redisstore: ", tt.want)
			}
		})
	}
}

// closedAddr returns a loopback address on which nothing listens.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
