package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tiercache/tiercache/internal/redistest"
)

// redisEnv points the library (and serve) at a topology through the
// environment, as an operator's shell would.
type redisEnv struct {
	name string
	env  map[string]string
	do   func(args ...string) (any, error)
}

func (r redisEnv) set(t *testing.T) {
	for k, v := range r.env {
		t.Setenv(k, v)
	}
}

// topologiesForOps starts standalone and Cluster for the test.
func topologiesForOps(t *testing.T) []redisEnv {
	redistest.Require(t)
	srv := redistest.NewStandalone(t)
	cl := redistest.NewCluster(t)
	return []redisEnv{
		{"standalone", map[string]string{"REDIS_URL": "redis://" + srv.Addr + "/0"}, srv.Do},
		{"cluster", map[string]string{"REDIS_CLUSTER_NODES": strings.Join(cl.Addrs(), ","), "REDIS_CLUSTER_ENABLED": "true"}, cl.Do},
	}
}

// step is one command and what it must answer.
type step struct {
	args     []string
	code     int
	out, err string // substrings
	only     string // "library" or "service": the step runs in that mode only
}

// everydaySteps run in order against one namespace, through the library
// or a service.
func everydaySteps(t *testing.T) []step {
	dir := t.TempDir()
	doc := filepath.Join(dir, "doc.json")
	if err := os.WriteFile(doc, []byte(`{"id":7}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return []step{
		{args: []string{"set", "greet", "hello", "--ttl", "1m", "--tags", "t1,t2"}},
		{args: []string{"get", "greet"}, out: "hello"},
		{args: []string{"get", "--meta", "greet"}, out: "tier "},
		{args: []string{"get", "--meta", "greet"}, out: "t1, t2"},
		{args: []string{"get", "greet", "--meta"}, out: "tag t1", only: "library"},
		{args: []string{"get", "greet", "-o", "json"}, out: `"value": "hello"`},
		{args: []string{"ttl", "greet"}, out: "\n"},
		{args: []string{"set", "--codec", "json", "--file", doc, "doc", "--content-type", "application/json"}},
		{args: []string{"get", "doc"}, out: `{"id":7}`},
		{args: []string{"get", "doc", "--meta", "-o", "json"}, out: `"content_type": "application/json"`},
		{args: []string{"set", "bad", "not json", "--codec", "json"}, code: exitUsage, err: "JSON"},
		{args: []string{"set", "forever", "v"}},
		{args: []string{"inspect", "greet"}, out: "valid              yes", only: "library"},
		{args: []string{"invalidate", "t1"}},
		{args: []string{"get", "greet"}, code: exitNotFound, err: "no such key"},
		{args: []string{"inspect", "greet"}, out: `valid              no: tag "t1" was invalidated`, only: "library"},
		{args: []string{"set", "soft1", "v", "--tags", "st"}},
		{args: []string{"set", "soft2", "v"}},
		{args: []string{"invalidate", "--soft", "st"}},
		{args: []string{"get", "soft1"}, code: exitNotFound},
		{args: []string{"inspect", "soft1"}, out: `stale: tag "st" was invalidated softly`, only: "library"},
		{args: []string{"del", "soft2", "--soft"}},
		{args: []string{"get", "soft2"}, code: exitNotFound},
		{args: []string{"inspect", "soft2"}, out: `expired`, only: "library"},
		{args: []string{"set", "a", "1"}},
		{args: []string{"set", "b", "2"}},
		{args: []string{"del", "a", "b", "never-was"}},
		{args: []string{"get", "a"}, code: exitNotFound},
		{args: []string{"ttl", "b"}, code: exitNotFound},
		{args: []string{"inspect", "a"}, code: exitNotFound, only: "library"},
		{args: []string{"get", "plain"}, code: exitError, err: "holds a value tiercache did not write"},
		{args: []string{"inspect", "plain"}, out: "not a tiercache value", only: "library"},
		{args: []string{"get", ""}, code: exitUsage, err: "must not be empty"},
		{args: []string{"stats"}, out: "topology"},
		{args: []string{"stats", "-o", "json"}, out: `"namespace": "` + "ops"},
		{args: []string{"health"}, out: "status"},
		{args: []string{"health", "--output", "json"}, out: `"status": "healthy"`},
		{args: []string{"clear"}, code: exitUsage, err: "confirm with --yes"},
		{args: []string{"get", "forever"}, out: "v"},
		{args: []string{"clear", "--yes", "--soft"}, out: "cleared"},
		{args: []string{"get", "forever"}, code: exitNotFound},
		{args: []string{"inspect", "forever"}, out: `stale: the namespace was cleared softly`, only: "library"},
		{args: []string{"set", "forever", "v"}},
		{args: []string{"clear", "--yes"}, out: "cleared"},
		{args: []string{"get", "forever"}, code: exitNotFound},
		{args: []string{"get", "doc"}, code: exitNotFound},
	}
}

// TestEveryday runs every everyday command end to end on standalone and
// Cluster, through the library straight to Redis and through a running
// serve, including a value tiercache did not write.
func TestEveryday(t *testing.T) {
	for _, tp := range topologiesForOps(t) {
		t.Run(tp.name, func(t *testing.T) {
			t.Run("library", func(t *testing.T) {
				clearEnv(t)
				tp.set(t)
				ns := "ops" + strings.ReplaceAll(t.Name(), "/", "-")
				if _, err := tp.do("SET", ns+":plain", "hello"); err != nil {
					t.Fatal(err)
				}
				runSteps(t, "library", everydaySteps(t), "--namespace", ns)
			})
			t.Run("service", func(t *testing.T) {
				clearEnv(t)
				tp.set(t)
				ns := "ops" + strings.ReplaceAll(t.Name(), "/", "-")
				if _, err := tp.do("SET", ns+":plain", "hello"); err != nil {
					t.Fatal(err)
				}
				s := startServe(t, "serve", "--addr", "127.0.0.1:0", "--token", testToken, "--namespace", ns)
				tokenFile := filepath.Join(t.TempDir(), "token")
				if err := os.WriteFile(tokenFile, []byte(testToken+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				// The URL from the environment, the token from a file.
				t.Setenv(envURL, "http://"+s.addr)
				runSteps(t, "service", everydaySteps(t), "--token-file", tokenFile)
				if out := s.stderr.String(); strings.Contains(out, testToken) {
					t.Errorf("serve's log holds the token:\n%s", out)
				}
			})
		})
	}
}

func runSteps(t *testing.T, mode string, steps []step, extra ...string) {
	t.Helper()
	for i, st := range steps {
		if st.only != "" && st.only != mode {
			continue
		}
		args := append(append([]string{}, st.args...), extra...)
		stdout, stderr := runWant(t, args, st.code, st.out, st.err)
		if t.Failed() {
			t.Fatalf("step %d (%s) failed:\nstdout:\n%s\nstderr:\n%s", i, strings.Join(st.args, " "), stdout, stderr)
		}
		if strings.Contains(stdout.String()+stderr.String(), testToken) {
			t.Fatalf("step %d printed the token", i)
		}
	}
}

// TestEveryday_Errors: bad input gets a clear message and the documented
// exit code: usage errors 2, failures 1, and no secret in any message.
func TestEveryday_Errors(t *testing.T) {
	clearEnv(t)
	s := startServe(t, "serve", "--addr", "127.0.0.1:0", "--token", testToken)
	url := "http://" + s.addr
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("not-the-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		code int
		err  string
	}{
		{"no target", []string{"get", "k"}, nil, exitUsage, "no service and no Redis"},
		{"wrong token", []string{"get", "k", "--url", url, "--token-file", wrong}, nil, exitError, "refused the token (401 unauthorized)"},
		{"no token", []string{"stats", "--url", url}, nil, exitError, "refused the token"},
		{"token from the environment", []string{"get", "k", "--url", url}, map[string]string{envToken: testToken}, exitNotFound, "no such key"},
		{"unreachable service", []string{"get", "k", "--url", "http://127.0.0.1:1"}, nil, exitError, "cannot reach http://127.0.0.1:1"},
		{"unreachable service health", []string{"health", "--url", "127.0.0.1:1"}, nil, exitError, "cannot reach"},
		{"unreachable redis", []string{"get", "k", "--redis-url", "redis://:" + password + "@127.0.0.1:1/0", "--timeout", "3s"}, nil, exitError, "127.0.0.1:1"},
		{"url and redis", []string{"get", "k", "--url", url, "--redis-url", "redis://127.0.0.1:1"}, nil, exitUsage, "apply only without it"},
		{"bad url", []string{"get", "k", "--url", "ftp://x"}, nil, exitUsage, "not an http:// or https:// URL"},
		{"url with credentials", []string{"get", "k", "--url", "http://u:" + password + "@127.0.0.1:1"}, nil, exitUsage, "must not carry credentials"},
		{"missing token file", []string{"get", "k", "--url", url, "--token-file", "/nonexistent/token"}, nil, exitUsage, "read the token file"},
		{"bad output", []string{"stats", "--url", url, "--output", "yaml"}, nil, exitUsage, `--output must be one of "table","json"`},
		{"negative ttl", []string{"set", "k", "v", "--ttl=-1s", "--url", url}, nil, exitUsage, "--ttl must not be negative"},
		{"bad ttl", []string{"set", "k", "v", "--ttl", "soon", "--url", url}, nil, exitUsage, "--ttl"},
		{"value twice", []string{"set", "k", "v", "--file", "f", "--url", url}, nil, exitUsage, "not both"},
		{"unknown flag", []string{"get", "k", "--bogus"}, nil, exitUsage, "unknown flag --bogus"},
		{"two keys to get", []string{"get", "a", "b"}, nil, exitUsage, "unexpected argument b"},
		{"no key", []string{"del"}, nil, exitUsage, `expected "<key> ..."`},
		{"no tag", []string{"invalidate"}, nil, exitUsage, `expected "<tag> ..."`},
		{"inspect over http", []string{"inspect", "k", "--url", url}, nil, exitUsage, "reads Redis directly"},
		{"top without url", []string{"top"}, nil, exitUsage, "give --url"},
		{"verify one service", []string{"verify", "--url", url}, nil, exitUsage, "at least two services"},
		{"verify too long", []string{"verify", "--duration", "1h"}, nil, exitUsage, "--duration must be in"},
		{"verify nothing", []string{"verify"}, nil, exitUsage, "nothing to verify"},
		{"verify failover without sentinel", []string{"verify", "--redis-url", "redis://127.0.0.1:1/0", "--failover-at", "1s"}, nil, exitUsage, "--failover-at needs Sentinel"},
		{"verify failover over http", []string{"verify", "--url", url + "," + url, "--failover-at", "1s"}, nil, exitUsage, "not to --url"},
		{"completion of an unknown shell", []string{"completion", "tcsh"}, nil, exitUsage, "must be one of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			stdout, stderr := runWant(t, tc.args, tc.code, "", tc.err)
			if all := stdout.String() + stderr.String(); strings.Contains(all, testToken) || strings.Contains(all, password) {
				t.Errorf("a secret in the output:\n%s", all)
			}
		})
	}
}

// TestTop: plain lines when stdout is not a terminal, a header first, one
// line per service per refresh; JSON objects with --output json.
func TestTop(t *testing.T) {
	clearEnv(t)
	s := startServe(t, "serve", "--addr", "127.0.0.1:0")
	url := "http://" + s.addr
	request(t, "PUT", url+"/v1/cache/k", "v", "")
	request(t, "GET", url+"/v1/cache/k", "", "")
	stdout, _ := runWant(t, []string{"top", "--url", url, "-n", "3", "--interval", "100ms"}, 0, "reads/s", "")
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 4 || strings.Contains(stdout.String(), "\x1b[") {
		t.Errorf("want a header and three plain lines:\n%s", stdout)
	}
	if !regexp.MustCompile(`100\.0%.*closed .*` + regexp.QuoteMeta(url)).MatchString(lines[1]) {
		t.Errorf("line without the L1 hit ratio, breaker or URL: %q", lines[1])
	}
	stdout, _ = runWant(t, []string{"top", "--url", url + ",http://127.0.0.1:1", "-n", "2", "--interval", "100ms", "-o", "json"}, 0, "", "")
	dec := json.NewDecoder(stdout)
	n := 0
	for dec.More() {
		var r topRow
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		if r.URL == url && r.Error != "" || r.URL != url && !strings.Contains(r.Error, "cannot reach") {
			t.Errorf("row %+v", r)
		}
		n++
	}
	if n != 4 {
		t.Errorf("%d JSON rows, want 2 services × 2 refreshes", n)
	}
	runWant(t, []string{"top", "--url", "http://127.0.0.1:1", "-n", "1"}, exitError, "", "no service answered")
}

// TestHealth_ExitStatus: the exit status follows the verdict: a service
// whose Redis is gone is unhealthy.
func TestHealth_ExitStatus(t *testing.T) {
	redistest.Require(t)
	clearEnv(t)
	srv := redistest.NewStandalone(t)
	t.Setenv("REDIS_URL", "redis://"+srv.Addr+"/0")
	s := startServe(t, "serve", "--addr", "127.0.0.1:0")
	url := "http://" + s.addr
	runWant(t, []string{"health", "--url", url}, 0, "healthy", "")
	srv.Close()
	redistest.Eventually(t, runTimeout, "health to fail", func() error {
		code, _ := request(t, http.MethodGet, url+"/readyz", "", "")
		if code != http.StatusServiceUnavailable {
			return fmt.Errorf("readyz %d", code)
		}
		return nil
	})
	runWant(t, []string{"health", "--url", url}, exitError, "unhealthy", "")
}
