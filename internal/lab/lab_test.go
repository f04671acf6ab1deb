package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/internal/tiercachetest"
)

func TestRenderConfig(t *testing.T) {
	t.Parallel()
	base := "# comment port 1\nport 6379\nbind * -::*\nsave 900 1\nsave 300 10\nsentinel monitor mymaster redis-master 6379 2\nsentinel down-after-milliseconds mymaster 5000\nlast line without newline"
	got := renderConfig(base, []directive{
		set("port", "7000"),
		set("save", ""),
		set("sentinel monitor mymaster", "127.0.0.1", "7001", "2"),
		set("dir", "/tmp/a dir"),
	})
	want := "# comment port 1\nport 7000\nbind * -::*\nsave \"\"\n# set above: save 300 10\n" +
		"sentinel monitor mymaster 127.0.0.1 7001 2\nsentinel down-after-milliseconds mymaster 5000\n" +
		"last line without newline\ndir \"/tmp/a dir\"\n"
	if got != want {
		t.Errorf("renderConfig =\n%s\nwant\n%s", got, want)
	}
}

func TestQuote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"plain": "plain", "": `""`, "a b": `"a b"`, `q"\`: `"q\"\\"`, "#x": `"#x"`, "é": `"\xc3\xa9"`, "-::1": "-::1",
	} {
		if got := quote(in); got != want {
			t.Errorf("quote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestRenderACL(t *testing.T) {
	t.Parallel()
	tmpl := "user default off\nuser app on " + PlaceholderHash + " ~app:* -@all +get\nuser ops on >old nopass ~* +@all\n"
	got, err := RenderACL(tmpl, map[string]string{"app": "pw1", "ops": "pw2"})
	if err != nil {
		t.Fatal(err)
	}
	hash := func(pw string) string { s := sha256.Sum256([]byte(pw)); return "#" + hex.EncodeToString(s[:]) }
	want := "user default off\nuser app " + hash("pw1") + " on ~app:* -@all +get\nuser ops " + hash("pw2") + " on ~* +@all\n"
	if got != want {
		t.Errorf("RenderACL =\n%s\nwant\n%s", got, want)
	}
	if _, err := RenderACL(tmpl, map[string]string{"nobody": "pw"}); err == nil {
		t.Error("RenderACL of an unknown user succeeded")
	}
}

// startLab starts a lab of the embedded deploy files and closes it when
// the test ends, checking that no process survives and the directory is
// gone.
func startLab(t *testing.T, topology string) *Lab {
	t.Helper()
	redistest.Require(t)
	l, err := Start(t.Context(), topology, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeLab(t, l) })
	return l
}

// closeLab closes l and checks that every process it started is gone.
func closeLab(t *testing.T, l *Lab) {
	t.Helper()
	var pids []int
	for _, n := range l.Nodes() {
		if pid := n.PID(); pid != 0 {
			pids = append(pids, pid)
		}
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists after Close (kill 0: %v)", pid, err)
		}
	}
	if _, err := os.Stat(l.Dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after Close: %v", l.Dir, err)
	}
}

// connect builds a tiercache.Cache from the lab's settings through the
// environment, as `tiercache serve` does.
func connect(t *testing.T, l *Lab) *tiercache.Cache {
	t.Helper()
	env := make(map[string]string)
	for _, s := range l.Settings() {
		env[s.Name] = s.Value
	}
	// Give up on an attempt quickly so that the drill measures outages.
	return tiercachetest.FromEnv(t, env, func(o *tiercache.Options) { o.OperationTimeout = time.Second })
}

// writeUntilOK writes key until a write is acknowledged and returns how
// long that took.
func writeUntilOK(t *testing.T, c *tiercache.Cache, key, value string) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(topologyTimeout)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		err := c.Set(ctx, key, value)
		cancel()
		if err == nil {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("Set(%q) still fails after %v: %v", key, topologyTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustRead(t *testing.T, c *tiercache.Cache, key, want string) {
	t.Helper()
	var got string
	if err := c.Get(t.Context(), key, &got); err != nil || got != want {
		t.Fatalf("Get(%q) = %q, %v; want %q", key, got, err, want)
	}
}

// TestLab_SentinelDrill starts the Sentinel lab, connects tiercache with
// the printed settings, and runs the failover drills of
// docs/operations.md: a forced failover, then a crash of the master that
// rejoins as a replica.
func TestLab_SentinelDrill(t *testing.T) {
	l := startLab(t, Sentinel)
	c := connect(t, l)
	writeUntilOK(t, c, "drill:before", "v0")
	mustRead(t, c, "drill:before", "v0")

	// Forced failover (SENTINEL FAILOVER): a graceful switch.
	promoted, err := l.Failover(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("forced failover: %s is master; writes back after %v", promoted.Name, writeUntilOK(t, c, "drill:forced", "v1"))
	mustRead(t, c, "drill:before", "v0")
	// Replication is asynchronous: wait until the other nodes follow the
	// new master and have its writes, or the crash below may lose them.
	if err := l.WaitSynced(t.Context(), promoted); err != nil {
		t.Fatal(err)
	}

	// Crash: kill the master. The sentinels promote a replica after
	// down-after-milliseconds (5 s in sentinel.conf).
	old := promoted
	if err := old.Kill(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	next, err := l.WaitNewMaster(t.Context(), old.Addr)
	if err != nil {
		t.Fatal(err)
	}
	took := writeUntilOK(t, c, "drill:crash", "v2")
	t.Logf("crash: %s promoted %v after the kill; writes back after %v", next.Name, time.Since(start), took)
	mustRead(t, c, "drill:forced", "v1")

	// The crashed master comes back as a replica of the new one.
	if err := old.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitReplica(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	writeUntilOK(t, c, "drill:after", "v3")
	mustRead(t, c, "drill:after", "v3")
}

// TestLab_ClusterDrill starts the Cluster lab, connects tiercache with the
// printed settings and fails a shard over.
func TestLab_ClusterDrill(t *testing.T) {
	l := startLab(t, Cluster)
	c := connect(t, l)
	keys := make([]string, 30) // spread over the three shards
	for i := range keys {
		keys[i] = fmt.Sprintf("drill:%d", i)
		writeUntilOK(t, c, keys[i], "v0")
	}
	promoted, err := l.Failover(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	masters, replicas, err := l.Roles(t.Context())
	if err != nil || len(masters) != 3 || len(replicas) != 3 {
		t.Fatalf("after the failover: %d masters, %d replicas, %v", len(masters), len(replicas), err)
	}
	for _, k := range keys {
		took := writeUntilOK(t, c, k, "v1")
		if took > time.Second {
			t.Logf("%s: writes back after %v", k, took)
		}
		mustRead(t, c, k, "v1")
	}
	t.Logf("%s took over its shard", promoted.Name)
}

func TestStart_Errors(t *testing.T) {
	t.Parallel()
	if _, err := Start(t.Context(), "ring", Options{}); err == nil || !strings.Contains(err.Error(), `unknown topology "ring"`) {
		t.Errorf("Start(ring): %v", err)
	}
	redistest.Require(t)
	// A configuration Redis cannot parse fails the start and leaves
	// nothing behind.
	files := DeployFiles()
	files.RedisConf += "\nno-such-directive yes\n"
	dir := t.TempDir()
	_, err := Start(t.Context(), Sentinel, Options{Files: files, Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "no-such-directive") {
		t.Fatalf("Start with a bad directive: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("Start left %d entries in %s", len(entries), dir)
	}
	if _, err := ReadFiles(dir); err == nil {
		t.Error("ReadFiles of an empty directory succeeded")
	}
}
