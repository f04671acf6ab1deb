package cli

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/config"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/internal/tiercachetest"
)

const (
	password  = "hunter2-Pw"
	testToken = "t0ken-S3cret"
	// runTimeout bounds how long a test waits for serve to start or stop.
	runTimeout = 15 * time.Second
)

// clearEnv empties every variable serve reads, so that the machine's
// environment cannot leak into a test, and points the recovery journal at
// a directory of the test's own.
func clearEnv(t *testing.T) {
	for _, f := range config.Fields() {
		if f.Env != "" {
			t.Setenv(f.Env, "")
		}
	}
	t.Setenv(envConfig, "")
	t.Setenv("STATE_DIRECTORY", t.TempDir())
}

func TestRun_Usage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		args      []string
		code      int
		out, err  string // substrings of stdout and stderr
		silentOut bool   // stdout must stay empty
		silentErr bool   // stderr must stay empty
	}{
		{name: "no arguments", args: nil, code: 2, err: "Usage:", silentOut: true},
		{name: "help", args: []string{"help"}, code: 0, out: "Commands:\n  serve", silentErr: true},
		{name: "-h", args: []string{"-h"}, code: 0, out: "Commands:", silentErr: true},
		{name: "--help", args: []string{"--help"}, code: 0, out: "version", silentErr: true},
		{name: "--version", args: []string{"--version"}, code: 0, out: "tiercache devel\n", silentErr: true},
		{name: "help help", args: []string{"help", "help"}, code: 0, out: "Commands:", silentErr: true},
		{name: "help serve", args: []string{"help", "serve"}, code: 0, out: "--addr=ADDRESS", silentErr: true},
		{name: "serve -h", args: []string{"serve", "-h"}, code: 0, out: "--log-level=LEVEL", silentErr: true},
		{name: "serve --help", args: []string{"serve", "--help"}, code: 0, out: "$TIERCACHE_TOKEN", silentErr: true},
		{name: "serve --help names the keys", args: []string{"serve", "--help"}, code: 0, out: "(log.format, $TIERCACHE_LOG_FORMAT; default text)", silentErr: true},
		{name: "help unknown", args: []string{"help", "nope"}, code: 2, err: `unknown command "nope"`, silentOut: true},
		{name: "help two commands", args: []string{"help", "serve", "version"}, code: 2, err: "at most one", silentOut: true},
		{name: "unknown command", args: []string{"nope"}, code: 2, err: "unknown command \"nope\"", silentOut: true},
		{name: "unknown flag", args: []string{"serve", "--bogus"}, code: 2, err: "unknown flag --bogus", silentOut: true},
		{name: "positional argument", args: []string{"serve", "extra"}, code: 2, err: `unexpected argument extra`, silentOut: true},
		{name: "bad log level flag", args: []string{"serve", "--log-level", "loud"}, code: 2, err: `--log-level: log.level: "loud" is not one of debug, info, warn, error`, silentOut: true},
		{name: "bad log format flag", args: []string{"serve", "--log-format", "xml"}, code: 2, err: `"xml" is not one of text, json`, silentOut: true},
		{name: "version", args: []string{"version"}, code: 0, out: "tiercache devel\n", silentErr: true},
		{name: "version argument", args: []string{"version", "x"}, code: 2, err: "unexpected argument", silentOut: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr := runWant(t, tc.args, tc.code, tc.out, tc.err)
			if tc.silentOut && stdout.Len() > 0 {
				t.Errorf("stdout not empty:\n%s", stdout)
			}
			if tc.silentErr && stderr.Len() > 0 {
				t.Errorf("stderr not empty:\n%s", stderr)
			}
		})
	}
}

// runWant runs Run with args and reports an exit code other than code, or
// a stdout or stderr that lacks out or errOut. It returns both outputs for
// further checks.
func runWant(t *testing.T, args []string, code int, out, errOut string) (stdout, stderr *bytes.Buffer) {
	t.Helper()
	stdout, stderr = &bytes.Buffer{}, &bytes.Buffer{}
	if got := Run(t.Context(), args, stdout, stderr); got != code {
		t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", got, code, stdout, stderr)
	}
	if !strings.Contains(stdout.String(), out) {
		t.Errorf("stdout lacks %q:\n%s", out, stdout)
	}
	if !strings.Contains(stderr.String(), errOut) {
		t.Errorf("stderr lacks %q:\n%s", errOut, stderr)
	}
	return stdout, stderr
}

// serving is a `tiercache serve` running in the test.
type serving struct {
	addr   string // the bound address, from the startup line
	stderr *tiercachetest.Buffer
	cancel context.CancelFunc
	done   chan int // receives Run's exit code
}

// listeningLine finds the bound address in serve's startup line, in the
// text or the JSON format.
var listeningLine = regexp.MustCompile(`msg="tiercache listening" addr=(\S+)|"msg":"tiercache listening","addr":"([^"]+)"`)

// startServe runs Run with args and waits for the startup line.
func startServe(t *testing.T, args ...string) *serving {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	s := &serving{stderr: &tiercachetest.Buffer{}, cancel: cancel, done: make(chan int, 1)}
	go func() { s.done <- Run(ctx, args, io.Discard, s.stderr) }()
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	deadline := time.Now().Add(runTimeout)
	for {
		if m := listeningLine.FindStringSubmatch(s.stderr.String()); m != nil {
			s.addr = m[1] + m[2]
			return s
		}
		select {
		case code := <-s.done:
			t.Fatalf("serve exited with %d before listening:\n%s", code, s.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no startup line after %v:\n%s", runTimeout, s.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop cancels the context and returns Run's exit code.
func (s *serving) stop(t *testing.T) int {
	t.Helper()
	s.cancel()
	select {
	case code := <-s.done:
		s.done <- code // for the cleanup
		return code
	case <-time.After(runTimeout):
		t.Fatalf("serve did not return %v after cancellation:\n%s", runTimeout, s.stderr)
		return -1
	}
}

func request(t *testing.T, method, url, body, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestRun_Serve serves over real HTTP, configured by flags or by the
// environment, on the memory L2 and on a password-protected Redis, then
// shuts down on cancellation.
func TestRun_Serve(t *testing.T) {
	for _, tc := range []struct {
		name   string
		env    func(t *testing.T) // sets the environment
		args   []string
		wantL2 string // regexp for the startup line's l2 value
	}{
		{
			name:   "memory with flags",
			env:    func(*testing.T) {},
			args:   []string{"serve", "--addr", "127.0.0.1:0", "--token", testToken, "--log-level", "debug"},
			wantL2: `l2=memory`,
		},
		{
			name: "memory with environment",
			env: func(t *testing.T) {
				t.Setenv("TIERCACHE_ADDR", "127.0.0.1:0")
				t.Setenv("TIERCACHE_TOKEN", testToken)
				t.Setenv("TIERCACHE_LOG_LEVEL", "debug")
			},
			args:   []string{"serve"},
			wantL2: `l2=memory`,
		},
		{
			name: "redis with password",
			env: func(t *testing.T) {
				srv := redistest.NewStandalone(t, "--requirepass", password)
				t.Setenv("REDIS_URL", "redis://:"+password+"@"+srv.Addr+"/0")
			},
			args:   []string{"serve", "--addr", "127.0.0.1:0", "--token", testToken},
			wantL2: `l2=redis://:xxxxx@127\.0\.0\.1:\d+/0 `,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			tc.env(t)
			s := startServe(t, tc.args...)
			if !regexp.MustCompile(tc.wantL2).MatchString(s.stderr.String()) {
				t.Errorf("startup line does not match %s:\n%s", tc.wantL2, s.stderr)
			}
			base := "http://" + s.addr + "/v1/cache/"

			if code, body := request(t, "PUT", base+"user:1/profile?ttl=30s&tags=users", "hello", ""); code != http.StatusUnauthorized {
				t.Errorf("PUT without token: %d %s, want 401", code, body)
			}
			if code, body := request(t, "PUT", base+"user:1/profile?ttl=30s&tags=users", "hello", testToken); code != http.StatusNoContent {
				t.Errorf("PUT: %d %s, want 204", code, body)
			}
			if code, body := request(t, "GET", base+"user:1/profile", "", ""); code != http.StatusUnauthorized {
				t.Errorf("GET without token: %d %s, want 401", code, body)
			}
			if code, body := request(t, "GET", base+"user:1/profile", "", testToken); code != http.StatusOK || body != "hello" {
				t.Errorf("GET: %d %q, want 200 \"hello\"", code, body)
			}
			if code := s.stop(t); code != 0 {
				t.Errorf("exit code %d after cancellation, want 0:\n%s", code, s.stderr)
			}
			if out := s.stderr.String(); strings.Contains(out, testToken) || strings.Contains(out, password) {
				t.Errorf("stderr contains a secret:\n%s", out)
			}
		})
	}
}

// TestRun_ServeErrors checks that configuration and start-up failures
// exit with 1 and a message that names the problem but no password.
func TestRun_ServeErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name string
		env  map[string]string
		addr string
		want string // substring of stderr
	}{
		{"redis URL with a bad scheme", map[string]string{"REDIS_URL": "http://user:" + password + "@127.0.0.1:6379"}, "127.0.0.1:0", `scheme "http"`},
		{"redis URL without host", map[string]string{"REDIS_URL": "redis://:" + password + "@/0"}, "127.0.0.1:0", "has no host"},
		{"malformed redis URL", map[string]string{"REDIS_URL": "redis://:" + password + "@127.0.0.1:6379/%zz"}, "127.0.0.1:0", "malformed Redis URL"},
		{"redis unreachable with fail_fast_start", map[string]string{"REDIS_URL": "redis://:" + password + "@127.0.0.1:1/0", "REDIS_FAIL_FAST_START": "true"}, "127.0.0.1:0", "127.0.0.1:1"},
		{"bad default TTL", map[string]string{"CACHE_DEFAULT_TTL": "soon"}, "127.0.0.1:0", "CACHE_DEFAULT_TTL"},
		{"bad log level", map[string]string{"TIERCACHE_LOG_LEVEL": "loud"}, "127.0.0.1:0", "TIERCACHE_LOG_LEVEL"},
		{"bad jitter", map[string]string{"CACHE_TTL_JITTER": "1"}, "127.0.0.1:0", "CACHE_TTL_JITTER: cache.ttl_jitter: 1 is outside [0, 1)"},
		{"negative size", map[string]string{"CACHE_L1_MAX_BYTES": "-5"}, "127.0.0.1:0", "CACHE_L1_MAX_BYTES: cache.l1.max_bytes: -5 is not positive"},
		{"unknown codec", map[string]string{"CACHE_CODEC": "xml"}, "127.0.0.1:0", `"xml" is not one of msgpack, json, raw`},
		{"address in use", nil, busy.Addr().String(), "address already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stdout, stderr tiercachetest.Buffer
			done := make(chan int, 1)
			go func() { done <- Run(t.Context(), []string{"serve", "--addr", tc.addr}, &stdout, &stderr) }()
			select {
			case code := <-done:
				if code != 1 {
					t.Errorf("exit code %d, want 1", code)
				}
			case <-time.After(runTimeout):
				t.Fatalf("serve still running after %v:\n%s", runTimeout, &stderr)
			}
			out := stderr.String()
			if !strings.Contains(out, "tiercache serve: ") || !strings.Contains(out, tc.want) {
				t.Errorf("stderr lacks \"tiercache serve: \" and %q:\n%s", tc.want, out)
			}
			if strings.Contains(out, password) {
				t.Errorf("stderr contains the password:\n%s", out)
			}
		})
	}
}

// TestRun_ErrorPrefixOnce: an error from the library, which starts with
// "tiercache: ", reads once as "tiercache serve: ...", not
// "tiercache serve: tiercache: ...".
func TestRun_ErrorPrefixOnce(t *testing.T) {
	clearEnv(t)
	startServe(t, "serve", "--addr", "127.0.0.1:0")
	// A second serve in the same state directory and namespace finds the
	// recovery journal locked by the first.
	_, stderr := runWant(t, []string{"serve", "--addr", "127.0.0.1:0"}, exitError, "", "tiercache serve: recovery journal is in use")
	if strings.Contains(stderr.String(), "tiercache: ") {
		t.Errorf("the prefix appears twice:\n%s", stderr)
	}
}
