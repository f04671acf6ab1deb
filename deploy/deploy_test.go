package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/lab"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/internal/tiercachetest"
)

// waitFor bounds every poll of these tests.
const waitFor = 30 * time.Second

// startDeployment starts a topology from redis-production.conf, acl.conf
// and sentinel.conf as they are, changing only what a test machine must:
// ports, data directories, the path of the ACL file, the master's address
// in "sentinel monitor", the cluster settings of a Cluster, and the
// secrets that the files leave to deploy time (masteruser/masterauth,
// sentinel auth-pass, requirepass). Any line Redis cannot parse fails the
// start. Sentinel: a master, two replicas, three sentinels; Cluster: three
// masters, three replicas.
func startDeployment(t *testing.T, topology string) *lab.Lab {
	t.Helper()
	redistest.Require(t)
	l, err := lab.Start(t.Context(), topology, lab.Options{KeepBind: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	for _, n := range l.Notes {
		t.Errorf("the lab changed the deploy files: %s", n)
	}
	return l
}

// client connects to a data node as user, outside tiercache, to check
// what the ACL allows.
func client(t *testing.T, addr, user, password string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: []string{addr}, Username: user, Password: password,
		DisableCache: true, ForceSingleClient: true, ClientSetInfo: rueidis.DisableClientSetInfo,
	})
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestDeployment runs the checks on a Sentinel and on a Cluster
// deployment. It is not parallel: the behaviour check configures the cache
// through the environment, as `tiercache serve` does.
func TestDeployment(t *testing.T) {
	for _, topology := range []string{lab.Sentinel, lab.Cluster} {
		t.Run(topology, func(t *testing.T) {
			l := startDeployment(t, topology)
			t.Run("settings", func(t *testing.T) { testSettings(t, l.Data[0].Addr, l.Password(lab.UserAdmin)) })
			if topology == lab.Sentinel {
				t.Run("sentinel_settings", func(t *testing.T) { testSentinelSettings(t, l) })
			}
			t.Run("acl", func(t *testing.T) { testACL(t, nodeAddrs(l), l.Password) })
			t.Run("behaviour", func(t *testing.T) { testBehaviour(t, cacheFromSettings(t, l), cacheFromSettings(t, l)) })
			t.Run("no_denied_commands", func(t *testing.T) { testNoDenials(t, nodeAddrs(l), l.Password(lab.UserAdmin)) })
			t.Run("wrong_credentials", func(t *testing.T) { testWrongCredentials(t, l) })
		})
	}
}

// nodeAddrs returns the addresses of the lab's data nodes, master first.
func nodeAddrs(l *lab.Lab) []string {
	var out []string
	for _, n := range l.Data {
		out = append(out, n.Addr)
	}
	return out
}

// testSettings checks that the file's settings are in force on the data
// node at addr.
func testSettings(t *testing.T, addr, adminPassword string) {
	admin := client(t, addr, lab.UserAdmin, adminPassword)
	want := map[string]string{
		"maxmemory":                   strconv.Itoa(2 << 30),
		"maxmemory-policy":            "allkeys-lru",
		"maxmemory-samples":           "5",
		"save":                        "900 1 300 10 60 10000",
		"appendonly":                  "yes",
		"appendfsync":                 "everysec",
		"slowlog-log-slower-than":     "10000",
		"hash-max-listpack-entries":   "512",
		"io-threads":                  "4",
		"io-threads-do-reads":         "yes",
		"protected-mode":              "yes",
		"min-replicas-to-write":       "1",
		"min-replicas-max-lag":        "10",
		"tracking-table-max-keys":     "1000000",
		"lazyfree-lazy-eviction":      "yes",
		"latency-monitor-threshold":   "100",
		"hash-max-listpack-value":     "64",
		"zset-max-listpack-entries":   "128",
		"set-max-intset-entries":      "512",
		"timeout":                     "0",
		"replica-read-only":           "yes",
		"stop-writes-on-bgsave-error": "yes",
		// On in the official image through redis-defrag.conf
		// (TestDefragInclude).
		"activedefrag": "no",
	}
	for name, v := range want {
		got, err := admin.Do(t.Context(), admin.B().ConfigGet().Parameter(name).Build()).AsStrMap()
		if err != nil {
			t.Fatalf("CONFIG GET %s: %v", name, err)
		}
		if got[name] != v {
			t.Errorf("%s = %q, want %q", name, got[name], v)
		}
	}
}

// testSentinelSettings checks the failover settings of sentinel.conf on
// every sentinel.
func testSentinelSettings(t *testing.T, l *lab.Lab) {
	for _, sn := range l.Sentinels {
		m, err := sn.Do(t.Context(), "SENTINEL", "MASTER", lab.MasterName).AsStrMap()
		if err != nil {
			t.Fatalf("%s: SENTINEL MASTER: %v", sn.Name, err)
		}
		for k, v := range map[string]string{
			"quorum": "2", "down-after-milliseconds": "5000", "parallel-syncs": "1", "failover-timeout": "60000",
			"port": strconv.Itoa(l.Data[0].Port), "num-slaves": "2", "num-other-sentinels": "2",
		} {
			if m[k] != v {
				t.Errorf("%s: %s = %q, want %q", sn.Name, k, m[k], v)
			}
		}
	}
	// The sentinels require their password.
	if err := noAuthPing(l.Sentinels[0].Addr); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("PING to a sentinel without a password: %v, want NOAUTH", err)
	}
}

// noAuthPing connects without credentials and sends PING.
func noAuthPing(addr string) error {
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: []string{addr}, DisableCache: true, ForceSingleClient: true,
		ClientSetInfo: rueidis.DisableClientSetInfo, AlwaysRESP2: true,
	})
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Do(context.Background(), c.B().Ping().Build()).Error()
}

// testACL checks what the least-privileged tiercache user may not do, on
// the data nodes at addrs (master first); password returns an ACL user's
// password.
func testACL(t *testing.T, addrs []string, password func(user string) string) {
	ctx := t.Context()
	master := addrs[0]
	app := client(t, master, lab.UserTiercache, password(lab.UserTiercache))
	for _, cmd := range [][]string{
		{"FLUSHALL"}, {"FLUSHDB"}, {"EVAL", "return 1", "0"}, {"EVALSHA", "0000000000000000000000000000000000000000", "0"},
		{"FUNCTION", "LIST"}, {"KEYS", "*"}, {"SCAN", "0"}, {"CONFIG", "GET", "maxmemory"}, {"CONFIG", "SET", "maxmemory", "1"},
		{"DEBUG", "SLEEP", "0"}, {"SHUTDOWN"}, {"SLAVEOF", "NO", "ONE"}, {"REPLICAOF", "NO", "ONE"},
		{"ACL", "LIST"}, {"MODULE", "LIST"}, {"CLIENT", "KILL", "TYPE", "normal"}, {"CLIENT", "LIST"},
		{"PUBLISH", "ch", "m"}, {"MIGRATE", "127.0.0.1", "1", "k", "0", "1"}, {"BGSAVE"}, {"SAVE"},
		{"SCRIPT", "FLUSH"}, {"CLUSTER", "RESET"}, {"CLUSTER", "FAILOVER"},
		// Keys outside the namespace.
		{"GET", "other:key"}, {"SET", "other#key", "v"}, {"DEL", "session:1"},
	} {
		err := app.Do(ctx, app.B().Arbitrary(cmd...).Build()).Error()
		if !refused(err) {
			t.Errorf("%s as tiercache: %v, want NOPERM", strings.Join(cmd, " "), err)
		}
	}
	// Its own namespace works (a cluster node may redirect the write).
	if err := app.Do(ctx, app.B().Set().Key("tiercache:acl-probe").Value("v").Build()).Error(); err != nil && !strings.HasPrefix(err.Error(), "MOVED") {
		t.Errorf("SET in the namespace: %v", err)
	}
	// The default user is off, and the placeholder passwords of the
	// users that the deployment gives none stay locked.
	if err := noAuthPing(master); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("PING without credentials: %v, want NOAUTH", err)
	}
	// The administrator can manage but not wipe.
	admin := client(t, master, lab.UserAdmin, password(lab.UserAdmin))
	for _, cmd := range [][]string{{"FLUSHALL"}, {"FLUSHDB"}, {"DEBUG", "SLEEP", "0"}} {
		if err := admin.Do(ctx, admin.B().Arbitrary(cmd...).Build()).Error(); !refused(err) {
			t.Errorf("%s as admin: %v, want NOPERM", strings.Join(cmd, " "), err)
		}
	}
	if err := admin.Do(ctx, admin.B().ConfigGet().Parameter("maxmemory").Build()).Error(); err != nil {
		t.Errorf("CONFIG GET as admin: %v", err)
	}
	// The denials above are logged; clear the log for testNoDenials.
	for _, addr := range addrs {
		c := client(t, addr, lab.UserAdmin, password(lab.UserAdmin))
		if err := c.Do(ctx, c.B().AclLog().Reset().Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
}

// refused reports whether err is the server refusing a command: NOPERM
// from the ACL, or DEBUG's own refusal (enable-debug-command no).
func refused(err error) bool {
	return err != nil && (strings.HasPrefix(err.Error(), "NOPERM") || strings.HasPrefix(err.Error(), "DEBUG command not allowed"))
}

// cacheFromSettings builds a tiercache.Cache from the lab's settings, as
// `tiercache serve` would read them from its environment.
func cacheFromSettings(t *testing.T, l *lab.Lab) *tiercache.Cache {
	t.Helper()
	env := make(map[string]string)
	for _, s := range l.Settings() {
		env[s.Name] = s.Value
	}
	return tiercachetest.FromEnv(t, env)
}

// testBehaviour runs the cache's operations as the tiercache user, with
// two instances that must stay coherent.
func testBehaviour(t *testing.T, a, b *tiercache.Cache) {
	testReadsAndWrites(t, a, b)
	testCoherence(t, a, b)
}

// testReadsAndWrites runs Set, Get, Delete, SetMany, GetMany and Fetch
// across the two instances a and b.
func testReadsAndWrites(t *testing.T, a, b *tiercache.Cache) {
	ctx := t.Context()
	// Set, Get, Delete.
	if err := a.Set(ctx, "user:1", "ada", tiercache.WithTTL(time.Minute), tiercache.WithTags("users")); err != nil {
		t.Fatalf("Set: %v", err)
	}
	var s string
	if err := b.Get(ctx, "user:1", &s); err != nil || s != "ada" {
		t.Fatalf("Get on the other instance = %q, %v", s, err)
	}
	if err := a.Delete(ctx, "user:1"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	eventuallyMissing(t, b, "user:1")

	// SetMany, GetMany.
	if err := a.SetMany(ctx, map[string]any{"m:1": 1, "m:2": 2, "m:3": 3}, tiercache.WithTags("many")); err != nil {
		t.Fatalf("SetMany: %v", err)
	}
	got := map[string]int{}
	if err := b.GetMany(ctx, []string{"m:1", "m:2", "m:3", "m:4"}, &got); err != nil {
		t.Fatalf("GetMany: %v", err)
	}
	if len(got) != 3 || got["m:2"] != 2 {
		t.Fatalf("GetMany = %v", got)
	}

	// Fetch loads once, then serves from the cache on both instances.
	loads := 0
	load := func(context.Context, string) (string, error) { loads++; return "loaded", nil }
	for _, c := range []*tiercache.Cache{a, b, a} {
		v, err := tiercache.Fetch(ctx, c, "f:1", load, tiercache.WithTags("fetched"))
		if err != nil || v != "loaded" {
			t.Fatalf("Fetch = %q, %v", v, err)
		}
	}
	if loads != 1 {
		t.Fatalf("the loader ran %d times, want 1", loads)
	}

	// FetchMany loads only the keys that neither instance has cached.
	var asked []string
	batch := func(_ context.Context, keys []string) (map[string]int, error) {
		asked = append(asked, keys...)
		out := make(map[string]int, len(keys))
		for _, k := range keys {
			out[k] = len(k)
		}
		return out, nil
	}
	many, err := tiercache.FetchMany(ctx, b, []string{"m:1", "fm:1", "fm:22"}, batch)
	if err != nil || len(many) != 3 || many["m:1"] != 1 || many["fm:22"] != 5 {
		t.Fatalf("FetchMany = %v, %v", many, err)
	}
	slices.Sort(asked)
	if !slices.Equal(asked, []string{"fm:1", "fm:22"}) {
		t.Fatalf("FetchMany loaded %v, want [fm:1 fm:22]", asked)
	}
	if st := b.Counters(); st.HitsL2 == 0 || st.Errors != 0 {
		t.Errorf("Counters after reads through Redis: %+v", st)
	}
}

// testCoherence checks that writes, tag invalidations, locks, Health and
// Clear through one instance are seen by the other.
func testCoherence(t *testing.T, a, b *tiercache.Cache) {
	ctx := t.Context()
	var s string
	// b holds user:2 in its L1; a write through a reaches it.
	if err := a.Set(ctx, "user:2", "v1"); err != nil {
		t.Fatal(err)
	}
	if err := b.Get(ctx, "user:2", &s); err != nil || s != "v1" {
		t.Fatalf("Get = %q, %v", s, err)
	}
	if err := a.Set(ctx, "user:2", "v2"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b sees user:2 = v2", func() error {
		var v string
		if err := b.Get(ctx, "user:2", &v); err != nil {
			return err
		}
		if v != "v2" {
			return fmt.Errorf("b reads %q", v)
		}
		return nil
	})

	// InvalidateTags reaches both instances.
	if err := a.InvalidateTags(ctx, "many"); err != nil {
		t.Fatalf("InvalidateTags: %v", err)
	}
	eventuallyMissing(t, b, "m:1")
	eventuallyMissing(t, a, "m:2")

	// TryLock excludes the other instance until Unlock.
	lock, err := a.TryLock(ctx, "job", time.Minute)
	if err != nil {
		t.Fatalf("TryLock: %v", err)
	}
	if _, err := b.TryLock(ctx, "job", time.Minute); !errors.Is(err, tiercache.ErrLocked) {
		t.Fatalf("TryLock while held elsewhere: %v, want ErrLocked", err)
	}
	if err := lock.Unlock(ctx); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	lock, err = b.TryLock(ctx, "job", time.Minute)
	if err != nil {
		t.Fatalf("TryLock after Unlock: %v", err)
	}
	if err := lock.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	// Health asks Redis directly (PING, INFO, CLUSTER INFO and NODES) as
	// the same user; testNoDenials then shows that it needed nothing more.
	if h := a.Health(ctx); h.Checks.Connectivity.Status != tiercache.CheckPass {
		t.Errorf("Health connectivity as the tiercache user: %+v", h.Checks.Connectivity)
	}

	// Clear empties the namespace for both.
	if err := b.Clear(ctx); err != nil {
		t.Fatalf("Clear: %v", err)
	}
	eventuallyMissing(t, a, "f:1")
	eventuallyMissing(t, b, "user:2")
}

// testNoDenials checks that the behaviour above needed no command or key
// that the tiercache user is denied: ACL LOG records every denial.
func testNoDenials(t *testing.T, addrs []string, adminPassword string) {
	for _, addr := range addrs {
		admin := client(t, addr, lab.UserAdmin, adminPassword)
		entries, err := admin.Do(t.Context(), admin.B().AclLog().Count(128).Build()).ToArray()
		if err != nil {
			t.Fatalf("%s: ACL LOG: %v", addr, err)
		}
		for _, e := range entries {
			m, _ := e.AsMap()
			var parts []string
			for _, k := range []string{"username", "reason", "object", "context"} {
				msg := m[k]
				v, _ := msg.ToString()
				parts = append(parts, k+"="+v)
			}
			t.Errorf("%s: denied: %s", addr, strings.Join(parts, " "))
		}
	}
}

func eventuallyMissing(t *testing.T, c *tiercache.Cache, key string) {
	t.Helper()
	eventually(t, key+" missing", func() error {
		var v any
		err := c.Get(t.Context(), key, &v)
		if errors.Is(err, tiercache.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("Get = %v, %v", v, err)
	})
}

// eventually polls cond until it holds, failing the test after waitFor.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	redistest.Eventually(t, waitFor, what, cond)
}

// testWrongCredentials connects with the lab's settings but a wrong
// password, for the tiercache user and (on Sentinel) for the sentinels:
// New must fail at once with Redis's reason, without a retry loop that
// hides it and without showing a password.
func testWrongCredentials(t *testing.T, l *lab.Lab) {
	const wrong = "wrong-Pw-7c1d"
	pwFile := filepath.Join(t.TempDir(), "wrong.password")
	if err := os.WriteFile(pwFile, []byte(wrong+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := []string{"REDIS_PASSWORD_FILE"}
	if l.Topology == lab.Sentinel {
		vars = append(vars, "REDIS_SENTINEL_PASSWORD_FILE")
	}
	for _, v := range vars {
		t.Run(v, func(t *testing.T) {
			env := make(map[string]string)
			for _, s := range l.Settings() {
				env[s.Name] = s.Value
			}
			env[v] = pwFile
			for k, v := range env {
				t.Setenv(k, v)
			}
			opts, err := tiercache.OptionsFromEnv()
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			c, err := tiercache.New(opts)
			took := time.Since(start)
			if err == nil {
				c.Close()
				t.Fatal("New succeeded with a wrong password")
			}
			msg := err.Error()
			if !strings.Contains(msg, "WRONGPASS") && !strings.Contains(msg, "NOAUTH") {
				t.Errorf("the error does not say that the credentials were refused: %v", err)
			}
			for _, pw := range []string{wrong, l.Password(lab.UserTiercache), l.Password("sentinels")} {
				if pw != "" && strings.Contains(msg, pw) {
					t.Errorf("the error shows a password: %v", err)
				}
			}
			if took > 5*time.Second {
				t.Errorf("New took %v to fail: a retry loop hides the cause", took)
			}
			t.Logf("%v (after %v)", err, took)
		})
	}
}
