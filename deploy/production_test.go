package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/deploy"
	"github.com/tiercache/tiercache/internal/lab"
	"github.com/tiercache/tiercache/internal/redisproc"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/internal/tiercachetest"
)

// TestProductionConf starts redis-server from redis-production.conf
// itself, overriding only the port and the data directory, and runs the
// checks of the deployment against it: the settings in force, what the
// tiercache ACL user may not do, that it may run every command tiercache
// sends, the cache's behaviour as that user with nothing denied, and that
// the master refuses writes without a replica.
//
// The file makes a master refuse writes without a replica
// (min-replicas-to-write 1), so one replica joins it, started from the
// same file with the replication settings the file leaves to deploy time
// (redistest.StartProduction).
func TestProductionConf(t *testing.T) {
	p := redistest.NewProduction(t)
	addrs := []string{p.Master.Addr, p.Replica.Addr}

	t.Run("settings", func(t *testing.T) { testSettings(t, p.Addr, p.AdminPassword) })
	t.Run("acl_grants_every_store_command", func(t *testing.T) { testACLGrantsStoreCommands(t, p.Addr, p.AdminPassword) })
	t.Run("acl", func(t *testing.T) { testACL(t, addrs, p.PasswordOf) })
	t.Run("behaviour", func(t *testing.T) {
		// One instance reads the password from a file, the other from
		// the environment.
		pwFile := filepath.Join(t.TempDir(), "tiercache.password")
		if err := os.WriteFile(pwFile, []byte(p.Password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		env := func(k, v string) map[string]string {
			return map[string]string{"REDIS_URL": "redis://" + p.Addr, "REDIS_USERNAME": p.Username,
				"CACHE_NAMESPACE": "tiercache", k: v}
		}
		a := tiercachetest.FromEnv(t, env("REDIS_PASSWORD_FILE", pwFile))
		b := tiercachetest.FromEnv(t, env("REDIS_PASSWORD", p.Password))
		testBehaviour(t, a, b)
	})
	t.Run("no_denied_commands", func(t *testing.T) { testNoDenials(t, addrs, p.AdminPassword) })
	t.Run("writes_need_a_replica", func(t *testing.T) {
		app := client(t, p.Addr, p.Username, p.Password)
		if err := p.Replica.Kill(); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the master refuses writes without its replica", func() error {
			err := app.Do(t.Context(), app.B().Set().Key("tiercache:k").Value("v").Build()).Error()
			if err == nil || !strings.HasPrefix(err.Error(), "NOREPLICAS") {
				return fmt.Errorf("SET without a replica: %v, want NOREPLICAS", err)
			}
			return nil
		})
	})
}

// TestProductionConf_ParseErrors checks that redis-server refuses to start
// from redis-production.conf with a line it cannot parse, naming the line:
// a typo in a deployed file is never silently ignored.
func TestProductionConf_ParseErrors(t *testing.T) {
	t.Parallel()
	redistest.Require(t)
	base, err := os.ReadFile("redis-production.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		"no-such-directive yes",
		"maxmemory-policy allkeys-lruu",
		"maxmemory 2gigabytes",
		"appendfsync sometimes",
		"save 900",
	} {
		t.Run(bad, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			// First, so that it is the first line Redis refuses.
			conf := filepath.Join(dir, "redis.conf")
			if err := os.WriteFile(conf, append([]byte(bad+"\n"), base...), 0o600); err != nil {
				t.Fatal(err)
			}
			port, err := redisproc.FreePort(false)
			if err != nil {
				t.Fatal(err)
			}
			p, err := redisproc.Start("redis-server", []string{conf, "--port", strconv.Itoa(port), "--dir", dir},
				dir, filepath.Join(dir, "redis.log"), true)
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-p.Done():
			case <-time.After(15 * time.Second):
				_ = p.Kill(10 * time.Second)
				t.Fatalf("redis-server still runs 15 s after starting with %q", bad)
			}
			log := redisproc.LogTail(p.Log)
			if !strings.Contains(log, "FATAL CONFIG FILE ERROR") || !strings.Contains(log, ">>> '"+bad+"'") {
				t.Errorf("redis-server's log does not name the bad line %q:\n%s", bad, log)
			}
		})
	}
}

// storeSource is where tiercache's Redis commands are built.
const storeSource = "../internal/redisstore"

// connectionCommands are the commands rueidis itself sends to a data node
// on the store's connections: the handshake (HELLO with AUTH and SETNAME,
// CLIENT TRACKING, SELECT for a database other than 0), CLIENT CACHING
// before a tracked read in OPTIN mode (a cache without L1), keep-alive PINGs,
// ROLE to check a master found through Sentinel, the slot map and ASKING
// (with MULTI/EXEC) on a Cluster, and the reset of a dedicated connection
// (the lock's WATCH/MULTI/EXEC) when it goes back to the pool.
var connectionCommands = []string{
	"HELLO", "CLIENT TRACKING", "CLIENT CACHING", "SELECT", "PING", "ROLE", "CLUSTER SLOTS", "CLUSTER SHARDS", "ASKING",
	"MULTI", "EXEC", "DISCARD", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE",
}

// sentinelCommands are sent to sentinels, which have no ACL users (only
// requirepass), never to data nodes.
var sentinelCommands = []string{"SENTINEL", "SUBSCRIBE"}

// dryRunArgs are the arguments ACL DRYRUN checks for each command
// tiercache may send. Keys are in the namespace the ACL user is given.
var dryRunArgs = map[string][]string{
	"HELLO":           {"3"},
	"CLIENT TRACKING": {"ON"},
	"CLIENT CACHING":  {"YES"},
	"SELECT":          {"0"},
	"PING":            nil,
	"ROLE":            nil,
	"CLUSTER SLOTS":   nil,
	"CLUSTER SHARDS":  nil,
	"CLUSTER INFO":    nil,
	"CLUSTER NODES":   nil,
	"ASKING":          nil,
	"MULTI":           nil,
	"EXEC":            nil,
	"DISCARD":         nil,
	"UNSUBSCRIBE":     nil,
	"PUNSUBSCRIBE":    nil,
	"SUNSUBSCRIBE":    nil,
	"INFO":            nil,
	"TIME":            nil,
	"GET":             {"tiercache:k"},
	"SET":             {"tiercache:k", "v", "PX", "1000"},
	"DEL":             {"tiercache:k", "tiercache#t"},
	"INCR":            {"tiercache#t"},
	"INCRBY":          {"tiercache#t", "4294967296"},
	"WATCH":           {"tiercache:k"},
	"UNWATCH":         nil,
}

var (
	builderCall   = regexp.MustCompile(`\.B\(\)\.([A-Z][A-Za-z]*)\(`)
	arbitraryCall = regexp.MustCompile(`\.Arbitrary\("([^"]+)"`)
	camelWord     = regexp.MustCompile(`[A-Z][a-z]*`)
)

// storeCommands returns the commands that the non-test sources of
// internal/redisstore build, such as "GET" or "CLUSTER INFO".
func storeCommands(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(storeSource, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no sources in %s: %v", storeSource, err)
	}
	var out []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range builderCall.FindAllStringSubmatch(string(b), -1) {
			if m[1] == "Arbitrary" {
				continue // named by arbitraryCall
			}
			out = append(out, strings.ToUpper(strings.Join(camelWord.FindAllString(m[1], -1), " ")))
		}
		for _, m := range arbitraryCall.FindAllStringSubmatch(string(b), -1) {
			out = append(out, strings.ToUpper(m[1]))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// testACLGrantsStoreCommands finds every command internal/redisstore
// builds, adds those rueidis sends on its connections, and asks the
// server with ACL DRYRUN whether the tiercache user of acl.conf may run
// each. A command added to the store without a grant fails here before
// it fails in production.
func testACLGrantsStoreCommands(t *testing.T, addr, adminPassword string) {
	ctx := t.Context()
	admin := client(t, addr, lab.UserAdmin, adminPassword)
	found := storeCommands(t)
	for _, want := range []string{"GET", "SET", "DEL", "INCR", "WATCH", "MULTI", "EXEC", "INFO", "PING"} {
		if !slices.Contains(found, want) {
			t.Fatalf("the scan of %s found no %s (found %v): the scan is broken", storeSource, want, found)
		}
	}
	t.Logf("internal/redisstore builds %v", found)
	var commands []string
	for _, c := range append(found, connectionCommands...) {
		if !slices.Contains(sentinelCommands, c) && !slices.Contains(commands, c) {
			commands = append(commands, c)
		}
	}
	dryRun := func(cmd string) (string, error) {
		args := append([]string{"ACL", "DRYRUN", lab.UserTiercache}, strings.Fields(cmd)...)
		return admin.Do(ctx, admin.B().Arbitrary(args...).Args(dryRunArgs[cmd]...).Build()).ToString()
	}
	for _, cmd := range commands {
		if _, ok := dryRunArgs[cmd]; !ok {
			t.Errorf("internal/redisstore sends %s: grant it to the tiercache user in deploy/acl.conf (if it is safe) and add its arguments to dryRunArgs", cmd)
			continue
		}
		if got, err := dryRun(cmd); err != nil || got != "OK" {
			t.Errorf("ACL DRYRUN tiercache %s: %q, %v; want OK", cmd, got, err)
		}
	}
	// The check can fail: what tiercache must never need is refused.
	for _, cmd := range []string{"EVAL", "FLUSHALL", "KEYS", "SCAN", "CONFIG GET"} {
		dryRunArgs := map[string][]string{"EVAL": {"return 1", "0"}, "KEYS": {"*"}, "SCAN": {"0"}, "CONFIG GET": {"maxmemory"}}[cmd]
		args := append(append([]string{"ACL", "DRYRUN", lab.UserTiercache}, strings.Fields(cmd)...), dryRunArgs...)
		got, err := admin.Do(ctx, admin.B().Arbitrary(args...).Build()).ToString()
		if err != nil || got == "OK" {
			t.Errorf("ACL DRYRUN tiercache %s: %q, %v; want a refusal", cmd, got, err)
		}
	}
	// Keys outside the namespace are refused too.
	if got, _ := admin.Do(ctx, admin.B().Arbitrary("ACL", "DRYRUN", lab.UserTiercache, "GET", "other:k").Build()).ToString(); got == "OK" {
		t.Error("ACL DRYRUN tiercache GET other:k: OK, want a refusal")
	}
}

// TestRedisConfFiles starts redis-server from the deploy files themselves,
// as docs/operations.md shows, with only the port, the data directory
// and the ACL's passwords chosen for a test machine: redis-production.conf
// alone must start on every build (Debian's redis-server 7.0.15, which
// cannot defragment, included); with redis-defrag.conf included, as the
// compose file does for the official image, activedefrag is on, or the
// server refuses that one line for want of defragmentation, naming it.
func TestRedisConfFiles(t *testing.T) {
	t.Parallel()
	redistest.Require(t)
	conf, err := filepath.Abs("redis-production.conf")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("redis-production.conf", func(t *testing.T) {
		t.Parallel()
		s := startConf(t, conf)
		if s.err != nil {
			t.Fatalf("redis-server %s did not start: %v", conf, s.err)
		}
		if got := s.config(t, "activedefrag"); got != "no" {
			t.Errorf("activedefrag = %q, want no", got)
		}
		if got := s.config(t, "maxmemory-policy"); got != "allkeys-lru" {
			t.Errorf("maxmemory-policy = %q: not the file's", got)
		}
	})
	t.Run("with redis-defrag.conf", func(t *testing.T) {
		t.Parallel()
		defrag, err := filepath.Abs("redis-defrag.conf")
		if err != nil {
			t.Fatal(err)
		}
		s := startConf(t, conf, "--include", defrag)
		if s.err == nil {
			if got := s.config(t, "activedefrag"); got != "yes" {
				t.Errorf("activedefrag = %q with redis-defrag.conf, want yes", got)
			}
			return
		}
		log := s.err.Error()
		if !errors.Is(s.err, redisproc.ErrExited) || !strings.Contains(log, "Active defragmentation cannot be enabled") ||
			!strings.Contains(log, ">>> 'activedefrag yes'") {
			t.Fatalf("redis-server refused redis-defrag.conf for another reason: %v", s.err)
		}
		t.Log("this redis-server cannot defragment (Debian's build): it refuses redis-defrag.conf, as documented")
	})
}

// confServer is a redis-server started by startConf.
type confServer struct {
	addr, adminPassword string
	err                 error // why it did not start
}

// startConf runs redis-server with the configuration file conf, then
// --port, --dir and args, in a directory holding users.acl (acl.conf with
// a password for admin), and waits until it answers as admin or exits.
func startConf(t *testing.T, conf string, args ...string) confServer {
	t.Helper()
	dir := t.TempDir()
	s := confServer{adminPassword: "admin-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	acl, err := lab.RenderACL(deploy.ACL, map[string]string{lab.UserAdmin: s.adminPassword})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "users.acl"), []byte(acl), 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := redisproc.FreePort(false)
	if err != nil {
		t.Fatal(err)
	}
	s.addr = "127.0.0.1:" + strconv.Itoa(port)
	argv := append([]string{conf, "--port", strconv.Itoa(port), "--dir", dir}, args...)
	p, err := redisproc.Start("redis-server", argv, dir, filepath.Join(dir, "redis.log"), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Kill(10 * time.Second) })
	deadline := time.Now().Add(waitFor)
	for {
		if s.err = p.Exited(); s.err != nil {
			return s
		}
		ping := rawCommand(s.addr, lab.UserAdmin, s.adminPassword, "PING")
		if ping == nil {
			return s
		}
		if time.Now().After(deadline) {
			s.err = fmt.Errorf("no answer after %v: %w", waitFor, ping)
			return s
		}
		select {
		case <-p.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// config returns a setting of the running server, asked as admin.
func (s confServer) config(t *testing.T, name string) string {
	t.Helper()
	c := client(t, s.addr, lab.UserAdmin, s.adminPassword)
	m, err := c.Do(t.Context(), c.B().ConfigGet().Parameter(name).Build()).AsStrMap()
	if err != nil {
		t.Fatalf("CONFIG GET %s: %v", name, err)
	}
	return m[name]
}

// rawCommand connects once, as user, and runs one command, for a server
// that may not be up yet.
func rawCommand(addr, user, password string, args ...string) error {
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: []string{addr}, Username: user, Password: password,
		DisableCache: true, ForceSingleClient: true, ClientSetInfo: rueidis.DisableClientSetInfo,
		DisableRetry: true, Dialer: net.Dialer{Timeout: time.Second},
	})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.Do(ctx, c.B().Arbitrary(args...).Build()).Error()
}
