package deploy_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/lab"
	"github.com/tiercache/tiercache/internal/redisproc"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/internal/tiercachetest"
)

// deployNamespace is the namespace the deployment of TestDeployFilesTopology
// is generated for: not acl.conf's "tiercache", so that an ACL that does
// not follow the namespace fails.
const deployNamespace = "pynomaly_prod"

// warmedKey is a key of deploy/warming/critical-app-data.jsonl, which
// tiercache.yaml's first warming strategy loads at start-up.
const warmedKey = "config:app:features"

// failoverTarget is the seed's target for a failover: the service answers
// reads and writes again within it.
const failoverTarget = 30 * time.Second

// TestDeployFilesTopology runs the compose deployment's topology as local
// processes, from the deploy files and the secrets of make-secrets.sh: a
// master and two replicas from redis-production.conf, three sentinels
// from sentinel.conf, users.acl and every password as generated for the
// namespace pynomaly_prod; only ports and directories change. On it, it
// logs in as every ACL user, runs the cache as the tiercache user in that
// namespace with nothing denied, and then runs `tiercache serve` (the
// binary, configured as the compose file configures it) and kills the
// master: the service must read and write again within the seed's 30 s.
func TestDeployFilesTopology(t *testing.T) {
	redistest.Require(t)
	secrets := makeSecrets(t, "--namespace", deployNamespace)
	l, err := lab.Start(t.Context(), lab.Sentinel, lab.Options{KeepBind: true, Secrets: secrets.dir, Namespace: deployNamespace})
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
	t.Run("acl_users", func(t *testing.T) { testGeneratedUsers(t, l, secrets) })
	t.Run("cache_in_namespace", func(t *testing.T) { testCacheInNamespace(t, l) })
	t.Run("serve_failover", func(t *testing.T) { testServeFailover(t, l, secrets) })
}

// testGeneratedUsers logs in to the master as every ACL user with the
// generated passwords, and to a sentinel with the sentinels' password; a
// wrong password is refused.
func testGeneratedUsers(t *testing.T, l *lab.Lab, s secretsRun) {
	master := l.Data[0].Addr
	for _, u := range []string{"tiercache", "admin", "replica", "sentinel", "exporter"} {
		if err := rawCommand(master, u, s.read(t, u+".password"), "PING"); err != nil {
			t.Errorf("PING as %s with %s.password: %v", u, u, err)
		}
		if err := rawCommand(master, u, "wrong-password", "PING"); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
			t.Errorf("PING as %s with a wrong password: %v, want WRONGPASS", u, err)
		}
	}
	// redis_exporter logs in with the password of exporter.json.
	if pw := s.read(t, "exporter.password"); !strings.Contains(s.read(t, "exporter.json"), `"`+pw+`"`) {
		t.Error("exporter.json does not hold the exporter's password")
	}
	if err := rawCommand(l.Sentinels[0].Addr, "", s.read(t, "sentinels.password"), "PING"); err != nil {
		t.Errorf("PING to a sentinel with sentinels.password: %v", err)
	}
	// The replicas replicate as "replica" and the sentinels monitor as
	// "sentinel": the lab waited for both before it returned.
	resetACLLog(t, l) // of the wrong passwords above
}

// resetACLLog clears ACL LOG on every data node, for testNoDenials.
func resetACLLog(t *testing.T, l *lab.Lab) {
	t.Helper()
	for _, addr := range nodeAddrs(l) {
		c := client(t, addr, lab.UserAdmin, l.Password(lab.UserAdmin))
		if err := c.Do(t.Context(), c.B().AclLog().Reset().Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
}

// testCacheInNamespace runs the cache's operations as the generated
// tiercache user in the generated namespace, with the Fetch lock on, and
// checks that Redis denied nothing; a cache in acl.conf's namespace is
// refused.
func testCacheInNamespace(t *testing.T, l *lab.Lab) {
	ctx := t.Context()
	env := make(map[string]string)
	for _, s := range l.Settings() {
		env[s.Name] = s.Value
	}
	if env["CACHE_NAMESPACE"] != deployNamespace {
		t.Fatalf("the lab's CACHE_NAMESPACE = %q", env["CACHE_NAMESPACE"])
	}
	withLock := func(o *tiercache.Options) { o.Lock.Enabled = true }
	a := tiercachetest.FromEnv(t, env, withLock)
	b := tiercachetest.FromEnv(t, env, withLock)
	if err := a.Set(ctx, "user:1", "ada", tiercache.WithTags("users")); err != nil {
		t.Fatalf("Set: %v", err)
	}
	var s string
	if err := b.Get(ctx, "user:1", &s); err != nil || s != "ada" {
		t.Fatalf("Get = %q, %v", s, err)
	}
	loads := 0
	load := func(context.Context, string) (string, error) { loads++; return "loaded", nil }
	for _, c := range []*tiercache.Cache{a, b} {
		if v, err := tiercache.Fetch(ctx, c, "f:1", load, tiercache.WithTags("users")); err != nil || v != "loaded" {
			t.Fatalf("Fetch with the lock = %q, %v", v, err)
		}
	}
	if loads != 1 {
		t.Errorf("the loader ran %d times, want 1", loads)
	}
	if err := a.Delete(ctx, "user:1"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	eventuallyMissing(t, b, "user:1")
	if err := a.InvalidateTags(ctx, "users"); err != nil {
		t.Fatalf("InvalidateTags: %v", err)
	}
	eventuallyMissing(t, b, "f:1")
	if err := a.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if err := b.Clear(ctx); err != nil {
		t.Fatalf("Clear: %v", err)
	}
	eventuallyMissing(t, a, "k")
	if h := a.Health(ctx); h.Checks.Connectivity.Status != tiercache.CheckPass {
		t.Errorf("Health connectivity: %+v", h.Checks.Connectivity)
	}
	// Every key was under the namespace: Redis denied nothing.
	testNoDenials(t, nodeAddrs(l), l.Password(lab.UserAdmin))
	admin := client(t, l.Data[0].Addr, lab.UserAdmin, l.Password(lab.UserAdmin))
	if n, err := admin.Do(ctx, admin.B().Exists().Key(deployNamespace+"#ns").Build()).AsInt64(); err != nil || n != 1 {
		t.Errorf("EXISTS %s#ns = %d, %v: Clear did not bump the namespace's version", deployNamespace, n, err)
	}

	// The ACL follows the namespace: acl.conf's own is now refused.
	env["CACHE_NAMESPACE"] = "tiercache"
	other := tiercachetest.FromEnv(t, env)
	if err := other.Set(ctx, "k", "v"); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("Set in the namespace tiercache as a user of %s: %v, want NOPERM", deployNamespace, err)
	}
	resetACLLog(t, l)
}

// serveProc is a running `tiercache serve`.
type serveProc struct {
	base, token string
	out         *tiercachetest.Buffer
	client      *http.Client
	heldReads   readTally
}

// testServeFailover runs `tiercache serve` against the lab as the compose
// file runs it, writes and reads a key over HTTP, kills the master, and
// measures how long until the service answers a write and reads it back.
func testServeFailover(t *testing.T, l *lab.Lab, s secretsRun) {
	srv := startServe(t, l, s)
	ctx := t.Context()
	if code, body, _ := srv.do(ctx, http.MethodPut, "before", "v0"); code != http.StatusNoContent {
		t.Fatalf("PUT before: %d %s\n%s", code, body, srv.out)
	}
	if code, body, _ := srv.do(ctx, http.MethodGet, "before", ""); code != http.StatusOK || body != "v0" {
		t.Fatalf("GET before: %d %q", code, body)
	}
	admin := client(t, l.Data[0].Addr, lab.UserAdmin, l.Password(lab.UserAdmin))
	if n, err := admin.Do(ctx, admin.B().Exists().Key(deployNamespace+":before").Build()).AsInt64(); err != nil || n != 1 {
		t.Fatalf("EXISTS %s:before = %d, %v: the service does not write under its namespace", deployNamespace, n, err)
	}
	// tiercache.yaml's warming strategies ran at start-up from their
	// files, as mounted beside it in the compose file.
	redistest.Eventually(t, waitFor, "start-up warming from deploy/warming", func() error {
		key := deployNamespace + ":" + warmedKey
		if n, err := admin.Do(ctx, admin.B().Exists().Key(key).Build()).AsInt64(); err != nil || n != 1 {
			return fmt.Errorf("EXISTS %s = %d, %v", key, n, err)
		}
		return nil
	})
	if err := l.WaitSynced(ctx, l.Data[0]); err != nil {
		t.Fatal(err)
	}

	old := l.Data[0]
	killed := time.Now()
	if err := old.Kill(); err != nil {
		t.Fatal(err)
	}
	outage, failures, last := srv.waitWritable(t, failoverTarget+30*time.Second)
	t.Logf("master %s killed: the service wrote and read back after %v (%d failed attempts before; last: %s)",
		old.Addr, outage.Round(time.Millisecond), failures, last)
	t.Logf("GET of a key the service held, during the outage: %s", srv.heldReads)
	if srv.heldReads.failed > 0 {
		t.Errorf("GET of a key the service held failed %d times during the failover (fail-safe is on in tiercache.yaml): %s",
			srv.heldReads.failed, srv.heldReads)
	}
	if outage > failoverTarget {
		t.Errorf("the service answered reads and writes again after %v, over the %v target\n%s", outage, failoverTarget, srv.out)
		for _, sn := range l.Sentinels {
			t.Logf("%s's log:\n%s", sn.Name, sn.LogTail())
		}
	}
	newMaster, err := l.WaitNewMaster(ctx, old.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("new master %s, %v after the kill", newMaster.Addr, time.Since(killed).Round(time.Millisecond))
	if code, body, _ := srv.do(ctx, http.MethodGet, "before", ""); code != http.StatusOK || body != "v0" {
		t.Errorf("GET before after the failover: %d %q", code, body)
	}
	na := client(t, newMaster.Addr, lab.UserAdmin, l.Password(lab.UserAdmin))
	if n, err := na.Do(ctx, na.B().Exists().Key(deployNamespace+":after").Build()).AsInt64(); err != nil || n != 1 {
		t.Errorf("EXISTS %s:after on the new master = %d, %v", deployNamespace, n, err)
	}
}

// readTally counts the answers to GET of the key "before" (value v0)
// during a failover, by X-Cache, and the failures.
type readTally struct {
	byXCache map[string]int
	failed   int
	lastFail string
}

func (r *readTally) add(code int, body string, h http.Header) {
	if code == http.StatusOK && body == "v0" {
		if r.byXCache == nil {
			r.byXCache = map[string]int{}
		}
		r.byXCache[h.Get("X-Cache")]++
		return
	}
	r.failed++
	r.lastFail = fmt.Sprintf("%d %s", code, strings.TrimSpace(body))
}

func (r readTally) String() string {
	return fmt.Sprintf("200 by X-Cache %v, %d failed (last: %s)", r.byXCache, r.failed, r.lastFail)
}

// waitWritable PUTs "after" every 100 ms until a PUT is stored (204, not
// queued) and a GET then reads the value back fresh, and meanwhile reads
// "before" into s.heldReads. It returns the time that took, the number of
// failed attempts and the last failure.
func (s *serveProc) waitWritable(t *testing.T, limit time.Duration) (time.Duration, int, string) {
	t.Helper()
	start := time.Now()
	failures, last := 0, ""
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := 1; ; i++ {
		s.heldReads.add(s.do(t.Context(), http.MethodGet, "before", ""))
		v := "v" + strconv.Itoa(i)
		code, body, _ := s.do(t.Context(), http.MethodPut, "after", v)
		if code == http.StatusNoContent {
			gcode, gbody, h := s.do(t.Context(), http.MethodGet, "after", "")
			if gcode == http.StatusOK && gbody == v && h.Get("X-Cache") != "stale" {
				return time.Since(start), failures, last
			}
			code, body = gcode, fmt.Sprintf("GET %q X-Cache %q", gbody, h.Get("X-Cache"))
		}
		failures++
		last = fmt.Sprintf("%d %s", code, strings.TrimSpace(body))
		if time.Since(start) > limit {
			t.Fatalf("no write read back %v after the kill; last answer: %s\n%s", limit, last, s.out)
		}
		<-tick.C
	}
}

// do sends one request to /v1/cache/key with the token and returns the
// status (0 when the request failed), the body and the headers.
func (s *serveProc) do(ctx context.Context, method, key, body string) (int, string, http.Header) {
	req, err := http.NewRequestWithContext(ctx, method, s.base+"/v1/cache/"+key, strings.NewReader(body))
	if err != nil {
		return 0, err.Error(), nil
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// startServe builds the tiercache binary and runs `tiercache serve` with
// the environment of the compose file's tiercache service, pointed at the
// lab: deploy/tiercache.yaml as TIERCACHE_CONFIG, the sentinels, the
// tiercache user's password file, the token file, the namespace and a
// state directory. It returns once /readyz answers 200.
func startServe(t *testing.T, l *lab.Lab, s secretsRun) *serveProc {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not on PATH: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "tiercache")
	if out, err := exec.CommandContext(t.Context(), goBin, "build", "-o", bin, "../cmd/tiercache").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	port, err := freeTCPPort()
	if err != nil {
		t.Fatal(err)
	}
	env := serviceEnv()
	for _, st := range l.Settings() {
		env = append(env, st.Name+"="+st.Value)
	}
	env = append(env,
		"TIERCACHE_ADDR=127.0.0.1:"+strconv.Itoa(port),
		"TIERCACHE_TOKEN_FILE="+filepath.Join(s.dir, "tiercache.token"),
		"STATE_DIRECTORY="+t.TempDir())
	conf, err := filepath.Abs("tiercache.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env = append(env, "TIERCACHE_CONFIG="+conf)
	srv := &serveProc{
		base: "http://127.0.0.1:" + strconv.Itoa(port), token: s.read(t, "tiercache.token"),
		out: &tiercachetest.Buffer{}, client: &http.Client{Timeout: 3 * time.Second},
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env, cmd.Stdout, cmd.Stderr = env, srv.out, srv.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("tiercache serve's output:\n%s", srv.out)
		}
	})
	redistest.Eventually(t, waitFor, "tiercache serve ready", func() error {
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("%w: tiercache serve exited: %v\n%s", redisproc.ErrGiveUp, err, srv.out)
		default:
		}
		resp, err := srv.client.Get(srv.base + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %d", resp.StatusCode)
		}
		return nil
	})
	return srv
}

// serviceEnv returns this process's environment without the variables
// that configure tiercache, so that only the compose file's reach serve.
func serviceEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "REDIS_") || strings.HasPrefix(name, "CACHE_") || strings.HasPrefix(name, "TIERCACHE_") ||
			strings.HasPrefix(name, "CIRCUIT_BREAKER_") || name == "STATE_DIRECTORY" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// freeTCPPort returns a loopback port that was free a moment ago.
func freeTCPPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
