package cli

import (
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/config"
	"github.com/tiercache/tiercache/internal/redistest"
)

// TestServeFlags_MatchConfig fails when serve's flags and the flags of
// package config's table differ: every flag of the table must be one of
// serve's, and every flag of serve but --config one of the table's.
func TestServeFlags_MatchConfig(t *testing.T) {
	var table []string
	for _, f := range config.Fields() {
		if f.Flag != "" {
			table = append(table, f.Flag)
		}
	}
	var serve []string
	typ := reflect.TypeFor[serveCmd]()
	for i := range typ.NumField() {
		if name := typ.Field(i).Tag.Get("name"); name != "config" {
			serve = append(serve, name)
		}
	}
	slices.Sort(table)
	slices.Sort(serve)
	if !slices.Equal(table, serve) {
		t.Errorf("serve's flags %v, the table's %v", serve, table)
	}
	all := map[string]string{}
	for _, name := range serve {
		all[name] = "x"
	}
	var c serveCmd
	v := reflect.ValueOf(&c).Elem()
	for i := range v.NumField() {
		if v.Field(i).Kind() == reflect.Pointer {
			s := "x"
			v.Field(i).Set(reflect.ValueOf(&s))
		}
	}
	if got := c.flags(); !reflect.DeepEqual(got, all) {
		t.Errorf("flags() = %v, want every flag: %v", got, all)
	}
}

// TestRun_ConfigPrecedence runs serve with the same setting in the
// file, the environment and a flag, and checks which one serve uses.
func TestRun_ConfigPrecedence(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "tiercache.yaml")
	if err := os.WriteFile(path, []byte("cache:\n  namespace: fromfile\nhttp:\n  addr: 127.0.0.1:0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServe(t, "serve", "--config", path)
	if !strings.Contains(s.stderr.String(), "namespace=fromfile") {
		t.Errorf("file: %s", s.stderr)
	}
	s.stop(t)
	t.Setenv("CACHE_NAMESPACE", "fromenv")
	t.Setenv(envConfig, path)
	s = startServe(t, "serve")
	if !strings.Contains(s.stderr.String(), "namespace=fromenv") {
		t.Errorf("environment over file: %s", s.stderr)
	}
	s.stop(t)
	s = startServe(t, "serve", "--namespace", "fromflag")
	if !strings.Contains(s.stderr.String(), "namespace=fromflag") {
		t.Errorf("flag over environment: %s", s.stderr)
	}
	s.stop(t)

	stdout, _ := runWant(t, []string{"config", "print", "--namespace", "fromflag"}, 0, "", "")
	for _, want := range []string{"namespace: fromflag", "# flag --namespace", `addr: "127.0.0.1:0"`, "# " + path + ":4"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("config print lacks %q:\n%s", want, stdout)
		}
	}
}

// TestRun_ConfigCommands checks config check and config print on files
// with errors, and that print hides secrets.
func TestRun_ConfigCommands(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := write("bad.yaml", "cache:\n  namespace: x\n  l1:\n    max_bytez: 5\nhttp:\n  open_reads: maybe\n")
	badWarming := write("warming.yaml", "warming:\n  strategies:\n    - name: x\n      priority: 11\n      file: {path: x.jsonl}\n")
	secret := write("secret.yaml", "redis:\n  url: redis://u:hunter2@127.0.0.1:1/0\n  password: hunter3\nhttp:\n  token: t0ken-S3cret\n")
	const deploy = "../../deploy/tiercache.yaml"
	runWant(t, []string{"config", "check", deploy}, 0, "deploy/tiercache.yaml: ok", "")
	runWant(t, []string{"config", "check", bad}, 1, "", `bad.yaml:4: cache.l1: unknown key "max_bytez" (known: enabled, max_bytes, max_ttl)`)
	runWant(t, []string{"config", "check", bad}, 1, "", `bad.yaml:6: http.open_reads: "maybe" is not a boolean: true or false`)
	runWant(t, []string{"config", "check", bad}, 1, "", `bad.yaml: 2 problem(s)`)
	runWant(t, []string{"config", "check", badWarming}, 1, "", `warming.yaml:4: strategy "x": priority: 11 is out of range 1..10`)
	runWant(t, []string{"config", "check"}, 2, "", `expected "<file>"`)
	out, _ := runWant(t, []string{"config", "print", "--config", secret}, 0, "url: \"redis://u:xxxxx@127.0.0.1:1/0\"", "")
	if s := out.String(); strings.Contains(s, "hunter") || strings.Contains(s, testToken) || !strings.Contains(s, "token: "+config.Redacted) {
		t.Errorf("config print shows a secret, or hides the token's presence:\n%s", s)
	}
	out, _ = runWant(t, []string{"config", "print", "--config", deploy}, 0, "name: user-sessions", "")
	if !strings.Contains(out.String(), "read_timeout: 500ms") {
		t.Errorf("config print of the sample:\n%s", out)
	}
}

// TestRun_ServeMonitoringOff checks that CACHE_MONITORING_ENABLED=false
// removes /metrics.
func TestRun_ServeMonitoringOff(t *testing.T) {
	clearEnv(t)
	t.Setenv("CACHE_MONITORING_ENABLED", "false")
	t.Setenv("TIERCACHE_LOG_FORMAT", "json")
	s := startServe(t, "serve", "--addr", "127.0.0.1:0")
	if code, _ := request(t, "GET", "http://"+s.addr+"/metrics", "", ""); code != http.StatusNotFound {
		t.Errorf("GET /metrics with monitoring off: %d, want 404", code)
	}
	if code, body := request(t, "GET", "http://"+s.addr+"/v1/stats", "", ""); code != http.StatusOK || strings.Contains(body, `"http"`) {
		t.Errorf("GET /v1/stats with monitoring off: %d, want 200 without the http section: %s", code, body)
	}
	if !strings.Contains(s.stderr.String(), `"metrics":false`) {
		t.Errorf("startup line (JSON) without metrics false:\n%s", s.stderr)
	}
}

// TestRun_ServeDeploySample serves deploy/tiercache.yaml on the memory
// store: the five strategies of the sample warm their keys at start-up.
func TestRun_ServeDeploySample(t *testing.T) {
	clearEnv(t)
	s := startServe(t, "serve", "--config", "../../deploy/tiercache.yaml", "--addr", "127.0.0.1:0")
	base := "http://" + s.addr
	deadline := time.Now().Add(runTimeout)
	for {
		l := getWarmListAs(t, base, "")
		done := 0
		for _, st := range l.Strategies {
			if st.LastRun != nil {
				if st.LastRun.Written == 0 {
					t.Fatalf("%s wrote nothing: %+v", st.Name, st.LastRun)
				}
				done++
			}
		}
		if len(l.Strategies) != 5 {
			t.Fatalf("strategies: %+v", l.Strategies)
		}
		if done == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("start-up warming did not finish: %+v", l)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, key := range []string{"config:app:limits", "model:lof:v2", "dataset:web-logins", "api:response:/v1/detectors", "user:session:demo"} {
		if code, body := request(t, "GET", base+"/v1/cache/"+key, "", ""); code != http.StatusOK {
			t.Errorf("GET %s: %d %s", key, code, body)
		}
	}
}

// TestRun_ServeLazyStartAndDrain starts serve with its Redis down: it
// listens, /healthz answers 200 and /readyz 503, a PUT is queued (202),
// and once Redis is back /readyz answers 200 without a restart. A second
// PUT queued while Redis is down again is kept at SIGTERM, after
// http.drain_timeout, and the log says so.
func TestRun_ServeLazyStartAndDrain(t *testing.T) {
	redistest.Require(t)
	clearEnv(t)
	srv := redistest.NewStandalone(t)
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REDIS_URL", "redis://"+srv.Addr+"/0")
	t.Setenv("TIERCACHE_DRAIN_TIMEOUT", "300ms")
	s := startServe(t, "serve", "--addr", "127.0.0.1:0")
	base := "http://" + s.addr
	if code, _ := request(t, "GET", base+"/healthz", "", ""); code != http.StatusOK {
		t.Errorf("/healthz with Redis down: %d, want 200", code)
	}
	if code, _ := request(t, "GET", base+"/readyz", "", ""); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with Redis down: %d, want 503", code)
	}
	if code, body := request(t, "PUT", base+"/v1/cache/k1", "v1", ""); code != http.StatusAccepted {
		t.Errorf("PUT with Redis down: %d %s, want 202", code, body)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(runTimeout)
	for {
		code, _ := request(t, "GET", base+"/readyz", "", "")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %v after Redis came back:\n%s", code, runTimeout, s.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	for {
		code, body := request(t, "PUT", base+"/v1/cache/k2", "v2", "")
		if code == http.StatusAccepted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PUT after Redis died again: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	if code := s.stop(t); code != 0 {
		t.Fatalf("exit code %d:\n%s", code, s.stderr)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("stop took %v with a 300ms drain timeout", took)
	}
	if log := s.stderr.String(); !regexp.MustCompile(`msg="recovery queue not fully applied before stopping" applied=0 kept=[12] `).MatchString(log) {
		t.Errorf("no drain line with kept=1 or 2 (k1 may not be replayed yet):\n%s", log)
	}
}
