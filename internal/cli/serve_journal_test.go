package cli

import (
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

	"github.com/tiercache/tiercache/internal/redisproc"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/internal/tiercachetest"
)

// jServe is a `tiercache serve` process.
type jServe struct {
	name   string
	cmd    *exec.Cmd
	base   string // http://127.0.0.1:port
	stderr *tiercachetest.Buffer
	exited chan error
}

// buildServe builds the tiercache binary into a test directory.
func buildServe(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not on PATH: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "tiercache")
	if out, err := exec.CommandContext(t.Context(), goBin, "build", "-o", bin, "../../cmd/tiercache").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startServe runs `bin serve` with only env (and PATH) in its environment,
// on a free loopback port, and waits for /healthz.
func startServeProc(t *testing.T, name, bin string, env ...string) *jServe {
	t.Helper()
	port, err := redisproc.FreePort(false)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s := &jServe{name: name, base: "http://" + addr, stderr: &tiercachetest.Buffer{}, exited: make(chan error, 1)}
	s.cmd = exec.Command(bin, "serve")
	s.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "TIERCACHE_ADDR=" + addr}, env...)
	s.cmd.Stdout, s.cmd.Stderr = io.Discard, s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if len(s.exited) == 0 {
			_ = s.cmd.Process.Kill()
		}
		<-s.exited
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get(s.base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if len(s.exited) > 0 || time.Now().After(deadline) {
			t.Fatalf("%s did not start:\n%s", name, s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// do sends one request and returns the status, the X-Cache header and
// the body.
func (s *jServe) do(t *testing.T, method, path, body string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, s.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s %s: %v", s.name, method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Cache"), string(b)
}

// want fails unless a request answers status.
func (s *jServe) want(t *testing.T, status int, method, path, body string) {
	t.Helper()
	if got, _, b := s.do(t, method, path, body); got != status {
		t.Fatalf("%s %s %s: %d %s, want %d\n%s", s.name, method, path, got, b, status, s.stderr)
	}
}

// stop sends sig and waits for the process to exit.
func (s *jServe) stop(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.exited:
		s.exited <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("%s still running 30s after %v:\n%s", s.name, sig, s.stderr)
		return nil
	}
}

// neverServesOld fails if s answers any of keys with "old" as a fresh
// value; answers flagged X-Cache: stale are allowed (Redis unreachable).
// It counts the answers by status in seen.
func neverServesOld(t *testing.T, s *jServe, seen map[string]int, keys ...string) {
	t.Helper()
	for _, k := range keys {
		code, xc, body := s.do(t, "GET", "/v1/cache/"+k, "")
		if code == http.StatusOK && body == "old" && xc != "stale" {
			t.Fatalf("%s served the replaced value of %s as fresh (X-Cache %q)\n%s", s.name, k, xc, s.stderr)
		}
		seen[strconv.Itoa(code)+xc]++
	}
}

// redisCLI runs redis-cli against srv and returns its trimmed output.
func redisCLI(t *testing.T, srv *redistest.Server, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(srv.Addr)
	out, err := exec.Command("redis-cli", append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestServe_JournalKeepsPromises runs `tiercache serve` as a user does.
// While Redis is down, a PUT, a DELETE, an invalidation and a clear
// answer 202; the service is then stopped by SIGTERM or killed by SIGKILL,
// and started again with the same journal directory, with Redis back
// before or after the restart. redis-cli shows every operation applied
// (the PUT as a delete of its key); neither the restarted service nor a
// second instance, which held the replaced values, serves them as fresh.
func TestServe_JournalKeepsPromises(t *testing.T) {
	redistest.Require(t)
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatalf("redis-cli not on PATH (scripts/install-redis.sh installs it): %v", err)
	}
	bin := buildServe(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		for _, redisFirst := range []bool{true, false} {
			name := fmt.Sprintf("%s/redis_back_first=%v", strings.TrimPrefix(sig.String(), "signal "), redisFirst)
			t.Run(name, func(t *testing.T) { journalScenario(t, bin, sig, redisFirst) })
		}
	}
}

func journalScenario(t *testing.T, bin string, sig syscall.Signal, redisFirst bool) {
	srv := redistest.NewStandalone(t, "--appendonly", "yes", "--appendfsync", "always")
	ns := fmt.Sprintf("jrnl%d", time.Now().UnixNano()%1e9)
	dirA := t.TempDir()
	env := func(dir string) []string {
		return []string{"REDIS_URL=redis://" + srv.Addr, "CACHE_NAMESPACE=" + ns, "STATE_DIRECTORY=" + dir,
			"TIERCACHE_RECOVERY_JOURNAL_DIR=" + dir, "TIERCACHE_DRAIN_TIMEOUT=1s"}
	}
	a := startServeProc(t, "serve A", bin, env(dirA)...)
	b := startServeProc(t, "serve B", bin, env(t.TempDir())...)
	keys := []string{"a", "b", "t", "c"}
	for _, k := range keys {
		a.want(t, http.StatusNoContent, "PUT", "/v1/cache/"+k+"?tags=red", "old")
		for _, s := range []*jServe{a, b} { // both hold a copy
			if code, _, body := s.do(t, "GET", "/v1/cache/"+k, ""); code != http.StatusOK || body != "old" {
				t.Fatalf("%s GET %s: %d %q", s.name, k, code, body)
			}
		}
	}
	tagVer, nsVer := redisCLI(t, srv, "GET", ns+"#t:red"), redisCLI(t, srv, "GET", ns+"#ns")

	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	a.want(t, http.StatusAccepted, "PUT", "/v1/cache/a", "new")
	a.want(t, http.StatusAccepted, "DELETE", "/v1/cache/b", "")
	a.want(t, http.StatusAccepted, "POST", "/v1/invalidate", `{"tags":["red"]}`)
	a.want(t, http.StatusAccepted, "POST", "/v1/clear", "")
	seenA, seenA2 := map[string]int{}, map[string]int{}
	neverServesOld(t, a, seenA, keys...)
	err := a.stop(t, sig)
	if sig == syscall.SIGTERM && (err != nil || !strings.Contains(a.stderr.String(), "kept=4")) {
		t.Fatalf("SIGTERM: %v; want exit 0 and the 4 kept operations logged:\n%s", err, a.stderr)
	}

	var a2 *jServe
	if !redisFirst {
		a2 = startServeProc(t, "serve A (restarted)", bin, env(dirA)...)
		neverServesOld(t, a2, seenA2, keys...)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if redisFirst {
		// The AOF kept the old values: nothing was applied yet.
		if v := redisCLI(t, srv, "EXISTS", ns+":a"); v != "1" {
			t.Fatalf("EXISTS %s:a = %s after the Redis restart, want 1 (persistence)", ns, v)
		}
		a2 = startServeProc(t, "serve A (restarted)", bin, env(dirA)...)
	}
	restarted := time.Now()
	applied := func() bool {
		return redisCLI(t, srv, "EXISTS", ns+":a", ns+":b") == "0" &&
			redisCLI(t, srv, "GET", ns+"#t:red") != tagVer && redisCLI(t, srv, "GET", ns+"#ns") != nsVer
	}
	deadline := time.Now().Add(20 * time.Second)
	for !applied() {
		neverServesOld(t, a2, seenA2, keys...)
		if time.Now().After(deadline) {
			t.Fatalf("operations not applied 20s after the restart:\n%s", a2.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(restarted)
	if got, want := redisCLI(t, srv, "GET", ns+"#t:red"), incr(t, tagVer); got != want {
		t.Fatalf("tag version %s, want %s (one increment)", got, want)
	}
	if got, want := redisCLI(t, srv, "GET", ns+"#ns"), incr(t, nsVer); got != want {
		t.Fatalf("namespace version %s, want %s (one increment)", got, want)
	}
	// Applied: no instance serves a replaced value, and both end at 404.
	deadline = time.Now().Add(10 * time.Second)
	for _, s := range []*jServe{a2, b} {
		for _, k := range keys {
			for {
				code, xc, body := s.do(t, "GET", "/v1/cache/"+k, "")
				if code == http.StatusNotFound {
					break
				}
				if code == http.StatusOK && body == "old" && xc != "stale" {
					t.Fatalf("%s served the replaced value of %s after it was applied", s.name, k)
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s GET %s: %d %q (X-Cache %q), want 404", s.name, k, code, body, xc)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	// The replay logs once its last operation is applied, which the
	// reads above may see first: wait for the line.
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(a2.stderr.String(), "recovery journal restored") || !strings.Contains(a2.stderr.String(), "recovery queue replayed") {
		if time.Now().After(deadline) {
			t.Fatalf("restart and replay not logged:\n%s", a2.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := a2.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("restarted serve: %v\n%s", err, a2.stderr)
	}
	t.Logf("outcome: 4 x 202; A's GETs before stop %v; stop %v (err %v); applied %v after the last of Redis and A came back; A's GETs before applied %v; A and B then 404 for every key",
		seenA, sig, err, took.Round(time.Millisecond), seenA2)
}

// incr returns the decimal string n+1.
func incr(t *testing.T, n string) string {
	t.Helper()
	v, err := strconv.ParseUint(n, 10, 64)
	if err != nil {
		t.Fatalf("version %q: %v", n, err)
	}
	return strconv.FormatUint(v+1, 10)
}

// TestServe_JournalDrainOnSIGTERM: SIGTERM while Redis is down, Redis back
// within http.drain_timeout: serve applies the four queued operations
// before it exits (the PUT as the write it was), logs applied=4 kept=0,
// and leaves an empty journal.
func TestServe_JournalDrainOnSIGTERM(t *testing.T) {
	redistest.Require(t)
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatalf("redis-cli not on PATH (scripts/install-redis.sh installs it): %v", err)
	}
	bin := buildServe(t)
	srv := redistest.NewStandalone(t, "--appendonly", "yes", "--appendfsync", "always")
	ns, dir := fmt.Sprintf("jrnd%d", time.Now().UnixNano()%1e9), t.TempDir()
	a := startServeProc(t, "serve", bin, "REDIS_URL=redis://"+srv.Addr, "CACHE_NAMESPACE="+ns,
		"TIERCACHE_RECOVERY_JOURNAL_DIR="+dir, "TIERCACHE_DRAIN_TIMEOUT=20s")
	for _, k := range []string{"a", "b"} {
		a.want(t, http.StatusNoContent, "PUT", "/v1/cache/"+k+"?tags=red", "old")
	}
	tagVer, nsVer := redisCLI(t, srv, "GET", ns+"#t:red"), redisCLI(t, srv, "GET", ns+"#ns")
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	a.want(t, http.StatusAccepted, "PUT", "/v1/cache/a", "new")
	a.want(t, http.StatusAccepted, "DELETE", "/v1/cache/b", "")
	a.want(t, http.StatusAccepted, "POST", "/v1/invalidate", `{"tags":["red"]}`)
	a.want(t, http.StatusAccepted, "POST", "/v1/clear", "")
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := srv.Restart(); err != nil { // within the drain
		t.Fatal(err)
	}
	if err := a.stop(t, syscall.SIGTERM); err != nil || !strings.Contains(a.stderr.String(), "applied=4 kept=0") {
		t.Fatalf("exit %v; want 0 and applied=4 kept=0 logged:\n%s", err, a.stderr)
	}
	// Applied by the same process, the PUT is a Set (not a Delete).
	if v := redisCLI(t, srv, "GET", ns+":a"); !strings.HasSuffix(v, "new") {
		t.Fatalf("a = %q after the drain, want the envelope of \"new\"", v)
	}
	if redisCLI(t, srv, "EXISTS", ns+":b") != "0" || redisCLI(t, srv, "GET", ns+"#t:red") != incr(t, tagVer) ||
		redisCLI(t, srv, "GET", ns+"#ns") != incr(t, nsVer) {
		t.Fatalf("operations not all applied by the drain:\n%s", a.stderr)
	}
	b, err := os.ReadFile(filepath.Join(dir, ns+".journal"))
	if err != nil || len(b) != 4+1+2+len(ns)+4 {
		t.Fatalf("journal after the drain: %v, %d bytes, want only its header", err, len(b))
	}
	for _, line := range strings.Split(a.stderr.String(), "\n") {
		if strings.Contains(line, "kept=") {
			t.Logf("outcome: %s", line)
		}
	}
}
