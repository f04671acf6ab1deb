package deploy_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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
)

// defragMissing is how redis-server refuses "activedefrag yes" when it was
// built against a jemalloc without defragmentation (Debian's package).
const defragMissing = "Active defragmentation cannot be enabled"

// confServer is a redis-server started from a configuration file.
type confServer struct {
	addr     string
	dir      string
	noDefrag bool // activedefrag had to be turned off for this build
}

func newPassword(t *testing.T) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// startConf starts redis-server from the configuration file conf, as an
// operator would, with only --port and --dir on the command line. The ACL
// users come from users.acl in the data directory, acl.conf with the
// given passwords. On a redis-server built without active defragmentation
// (Debian's), the first start must fail on "activedefrag yes" and on
// nothing else; the server then starts from a copy in which that one line
// says no. extra are more arguments, after --port and --dir.
func startConf(t *testing.T, conf string, passwords map[string]string, extra ...string) *confServer {
	t.Helper()
	redistest.Require(t)
	s := &confServer{dir: t.TempDir()}
	acl, err := lab.RenderACL(deploy.ACL, passwords)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "users.acl"), []byte(acl), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		err := s.start(t, conf, passwords[lab.UserAdmin], extra)
		switch {
		case err == nil:
			return s
		case errors.Is(err, redisproc.ErrPortInUse):
			continue
		case !s.noDefrag && strings.Contains(err.Error(), defragMissing) && strings.Contains(err.Error(), ">>> 'activedefrag yes'"):
			s.noDefrag = true
			conf = withoutDefrag(t, conf)
			t.Log("this redis-server has no active defragmentation (the official builds have it): activedefrag turned off")
			continue
		default:
			t.Fatal(err)
		}
	}
	t.Fatal("no free port after 5 attempts")
	return nil
}

// start starts one attempt on a fresh port and waits until the
// administrator can PING.
func (s *confServer) start(t *testing.T, conf, adminPassword string, extra []string) error {
	port, err := redisproc.FreePort(false)
	if err != nil {
		return err
	}
	s.addr = "127.0.0.1:" + strconv.Itoa(port)
	args := append([]string{conf, "--port", strconv.Itoa(port), "--dir", s.dir}, extra...)
	p, err := redisproc.Start("redis-server", args, s.dir, filepath.Join(s.dir, "redis.log"), true)
	if err != nil {
		return err
	}
	t.Cleanup(func() {
		if err := p.Kill(10 * time.Second); err != nil {
			t.Error(err)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	err = redisproc.Poll(ctx, 20*time.Millisecond, 2*time.Second, func(ctx context.Context) error {
		if err := p.Exited(); err != nil {
			return err
		}
		c, err := rueidis.NewClient(rueidis.ClientOption{
			InitAddress: []string{s.addr}, Username: lab.UserAdmin, Password: adminPassword,
			DisableCache: true, ForceSingleClient: true, ClientSetInfo: rueidis.DisableClientSetInfo,
		})
		if err != nil {
			return err
		}
		defer c.Close()
		return c.Do(ctx, c.B().Ping().Build()).Error()
	})
	if errors.Is(err, redisproc.ErrExited) {
		_ = p.Kill(10 * time.Second)
	}
	return err
}

// withoutDefrag writes a copy of conf whose one "activedefrag yes" line
// says no, and returns its path.
func withoutDefrag(t *testing.T, conf string) string {
	t.Helper()
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	if strings.Count(text, "\nactivedefrag yes\n") != 1 {
		t.Fatalf("%s: want exactly one \"activedefrag yes\" line", conf)
	}
	path := filepath.Join(t.TempDir(), "redis-nodefrag.conf")
	if err := os.WriteFile(path, []byte(strings.Replace(text, "\nactivedefrag yes\n", "\nactivedefrag no\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestProductionConf starts redis-server from redis-production.conf
// itself, overriding only the port and the data directory, and runs the
// checks of the deployment against it: the settings in force, what the
// tiercache ACL user may not do, that it may run every command tiercache
// sends, and the cache's behaviour as that user with nothing denied.
//
// The file makes a master refuse writes without a replica
// (min-replicas-to-write 1), so one replica joins it, started from the
// same file with the replication settings the file leaves to deploy time.
func TestProductionConf(t *testing.T) {
	conf, err := filepath.Abs("redis-production.conf")
	if err != nil {
		t.Fatal(err)
	}
	passwords := map[string]string{lab.UserTiercache: newPassword(t), lab.UserAdmin: newPassword(t), "replica": newPassword(t)}
	s := startConf(t, conf, passwords)
	password := func(user string) string { return passwords[user] }
	admin := passwords[lab.UserAdmin]

	// Writes are refused until a replica is connected.
	app := client(t, s.addr, lab.UserTiercache, passwords[lab.UserTiercache])
	if err := app.Do(t.Context(), app.B().Set().Key("tiercache:k").Value("v").Build()).Error(); err == nil || !strings.HasPrefix(err.Error(), "NOREPLICAS") {
		t.Errorf("SET without a replica: %v, want NOREPLICAS", err)
	}
	r := startConf(t, conf, passwords, "--replicaof", "127.0.0.1", s.addr[strings.LastIndexByte(s.addr, ':')+1:],
		"--masteruser", "replica", "--masterauth", passwords["replica"])
	waitReplica(t, s.addr, r.addr, admin)

	t.Run("settings", func(t *testing.T) { testSettings(t, s.addr, admin, s.noDefrag) })
	t.Run("acl_grants_every_store_command", func(t *testing.T) { testACLGrantsStoreCommands(t, s.addr, admin) })
	t.Run("acl", func(t *testing.T) { testACL(t, []string{s.addr, r.addr}, password) })
	t.Run("behaviour", func(t *testing.T) {
		// One instance reads the password from a file, the other from
		// the environment.
		pwFile := filepath.Join(t.TempDir(), "tiercache.password")
		if err := os.WriteFile(pwFile, []byte(passwords[lab.UserTiercache]+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		env := func(k, v string) map[string]string {
			return map[string]string{"REDIS_URL": "redis://" + s.addr, "REDIS_USERNAME": lab.UserTiercache,
				"CACHE_NAMESPACE": "tiercache", k: v}
		}
		a := cacheFromEnv(t, env("REDIS_PASSWORD_FILE", pwFile))
		b := cacheFromEnv(t, env("REDIS_PASSWORD", passwords[lab.UserTiercache]))
		testBehaviour(t, a, b)
	})
	t.Run("no_denied_commands", func(t *testing.T) { testNoDenials(t, []string{s.addr, r.addr}, admin) })
}

// waitReplica waits until the replica at replicaAddr has synced with the
// master at masterAddr and the master counts it.
func waitReplica(t *testing.T, masterAddr, replicaAddr, adminPassword string) {
	t.Helper()
	master := client(t, masterAddr, lab.UserAdmin, adminPassword)
	replica := client(t, replicaAddr, lab.UserAdmin, adminPassword)
	eventually(t, "the replica syncs", func() error {
		for _, c := range []struct {
			client rueidis.Client
			field  string
			want   string
		}{{replica, "master_link_status", "up"}, {master, "connected_slaves", "1"}} {
			text, err := c.client.Do(t.Context(), c.client.B().Info().Section("replication").Build()).ToString()
			if err != nil {
				return err
			}
			if got := redisproc.ParseInfo(text)[c.field]; got != c.want {
				return fmt.Errorf("%s:%s, want %s", c.field, got, c.want)
			}
		}
		return nil
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
// CLIENT TRACKING, SELECT for a database other than 0), keep-alive PINGs,
// ROLE to check a master found through Sentinel, the slot map and ASKING
// (with MULTI/EXEC) on a Cluster, and the reset of a dedicated connection
// (the lock's WATCH/MULTI/EXEC) when it goes back to the pool.
var connectionCommands = []string{
	"HELLO", "CLIENT TRACKING", "SELECT", "PING", "ROLE", "CLUSTER SLOTS", "CLUSTER SHARDS", "ASKING",
	"MULTI", "EXEC", "DISCARD", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE",
}

// sentinelCommands are sent to sentinels, which have no ACL users (only
// requirepass), never to data nodes.
var sentinelCommands = []string{"SENTINEL"}

// dryRunArgs are the arguments ACL DRYRUN checks for each command
// tiercache may send. Keys are in the namespace the ACL user is given.
var dryRunArgs = map[string][]string{
	"HELLO":           {"3"},
	"CLIENT TRACKING": {"ON"},
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
	"GET":             {"tiercache:k"},
	"SET":             {"tiercache:k", "v", "PX", "1000"},
	"DEL":             {"tiercache:k", "tiercache#t"},
	"INCR":            {"tiercache#t"},
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
