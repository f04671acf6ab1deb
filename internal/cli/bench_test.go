package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tiercache/tiercache/internal/loadgen"
	"github.com/tiercache/tiercache/internal/redistest"
)

// runBench runs tiercache bench with args and returns the exit code,
// stdout and stderr.
func runBench(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(t.Context(), append([]string{"bench"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// benchReport runs bench with --json and decodes its report.
func benchReport(t *testing.T, args ...string) *loadgen.Report {
	t.Helper()
	code, out, stderr := runBench(t, append(args, "--json")...)
	if code != 0 {
		t.Fatalf("bench %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, out, stderr)
	}
	var rep loadgen.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("bench --json printed no report: %v\n%s", err, out)
	}
	for _, field := range []string{`"ops_per_sec"`, `"latency_ms"`, `"p99_9"`, `"hit_ratio"`, `"errors"`, `"errors_total"`, `"reads"`} {
		if !strings.Contains(out, field) {
			t.Errorf("the JSON report has no %s field:\n%s", field, out)
		}
	}
	return &rep
}

// checkAllHits checks a read-only run after a preload: every read a hit,
// no error, plausible latencies.
func checkAllHits(t *testing.T, rep *loadgen.Report, requests int64) {
	t.Helper()
	if rep.Requests != requests || rep.OpsPerSec <= 0 || rep.ErrorsTotal != 0 {
		t.Errorf("requests %d (want %d), ops/s %g, errors %v", rep.Requests, requests, rep.OpsPerSec, rep.Errors)
	}
	if got := rep.Reads["hit-l1"] + rep.Reads["hit-l2"]; got != requests || rep.HitRatio["hit"] != 1 {
		t.Errorf("reads %v, hit ratio %v; want every read of a preloaded key a hit", rep.Reads, rep.HitRatio)
	}
	l := rep.Latency
	if l.P50 <= 0 || l.P50 > l.P99 || l.P99 > l.Max {
		t.Errorf("latency %+v: want 0 < p50 <= p99 <= max", l)
	}
	if rep.Preload == nil || rep.Preload.Keys != 200 || rep.Preload.ErrorsTotal != 0 {
		t.Errorf("preload %+v; want 200 keys written without error", rep.Preload)
	}
}

// TestBench_HTTP runs a short bench against a real serve backed by a real
// Redis: with the right token, then with a wrong one from --token-file.
func TestBench_HTTP(t *testing.T) {
	redistest.Require(t)
	clearEnv(t)
	srv := redistest.NewStandalone(t)
	t.Setenv("REDIS_URL", "redis://"+srv.Addr+"/0")
	s := startServe(t, "serve", "--addr", "127.0.0.1:0", "--token", testToken)
	url := "http://" + s.addr

	t.Setenv(envToken, testToken)
	rep := benchReport(t, "--url", url, "--preload", "--keys", "200", "--mix", "100:0:0", "-n", "2000", "-c", "8", "--connections", "4")
	checkAllHits(t, rep, 2000)
	if rep.Target != "http" {
		t.Errorf("target %q, want http", rep.Target)
	}
	if n, err := srv.Do("DBSIZE"); err != nil || n.(int64) < 200 {
		t.Errorf("DBSIZE %v, %v; want the 200 preloaded keys in Redis", n, err)
	}

	mixed := benchReport(t, "--url", url, "--keys", "200", "--dist", "zipf", "--zipf-s", "1.2", "--mix", "80:15:5", "-n", "1000")
	if mixed.Ops["get"] == 0 || mixed.Ops["set"] == 0 || mixed.Ops["delete"] == 0 || mixed.ErrorsTotal != 0 {
		t.Errorf("ops %v, errors %v; want gets, sets and deletes without error", mixed.Ops, mixed.Errors)
	}

	bad := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(bad, []byte("wrong-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	denied := benchReport(t, "--url", url, "--token-file", bad, "-n", "300")
	if denied.Errors["status_401"] != 300 || denied.ErrorsTotal != 300 || len(denied.Reads) != 0 {
		t.Errorf("errors %v (total %d), reads %v; want 300 status_401", denied.Errors, denied.ErrorsTotal, denied.Reads)
	}
	if code := s.stop(t); code != 0 {
		t.Errorf("serve exit code %d:\n%s", code, s.stderr)
	}
	// Nothing listens any more: connection errors, still a report.
	gone := benchReport(t, "--url", url, "-n", "50", "--timeout", "1s")
	if gone.Errors["connection"] != 50 {
		t.Errorf("errors %v; want 50 connection errors once serve stopped", gone.Errors)
	}
}

// TestBench_Library runs bench against the library in process, configured
// as serve is: the Redis from $REDIS_URL, the namespace from a flag.
func TestBench_Library(t *testing.T) {
	redistest.Require(t)
	clearEnv(t)
	srv := redistest.NewStandalone(t)
	t.Setenv("REDIS_URL", "redis://"+srv.Addr+"/0")
	rep := benchReport(t, "--namespace", "benchns", "--preload", "--keys", "200", "--mix", "100:0:0", "-n", "2000")
	checkAllHits(t, rep, 2000)
	if rep.Target != "library" || rep.Reads["hit-l1"] == 0 {
		t.Errorf("target %q, reads %v; want the library with L1 hits", rep.Target, rep.Reads)
	}
	if n, err := srv.Do("EXISTS", "benchns:bench:0", "benchns:bench:199"); err != nil || n.(int64) != 2 {
		t.Errorf("EXISTS of two preloaded keys: %v, %v; want both in Redis under the namespace", n, err)
	}

	// Text output and the progress line without a terminal.
	code, out, stderr := runBench(t, "--namespace", "benchns", "-d", "1500ms", "-c", "2", "--progress")
	if code != 0 {
		t.Fatalf("exit %d:\n%s\n%s", code, out, stderr)
	}
	for _, want := range []string{"target      library", "ops/s", "latency ms  p50", "p99.9", "reads       hit", "errors      0"} {
		if !strings.Contains(out, want) {
			t.Errorf("the report has no %q:\n%s", want, out)
		}
	}
	if !strings.Contains(stderr, "ops/s  p99") {
		t.Errorf("no progress line on stderr with --progress:\n%s", stderr)
	}
}

func TestBench_Usage(t *testing.T) {
	clearEnv(t)
	for _, args := range [][]string{
		{"--mix", "0:0:0"},
		{"--mix", "ninety"},
		{"--dist", "pareto"},
		{"--dist", "zipf", "--zipf-s", "1"},
		{"--url", "http://127.0.0.1:1", "-c", "2", "--connections", "5"},
		{"--connections", "2"},
		{"--url", "ftp://example.com"},
		{"--url", "http://127.0.0.1:1", "--redis-url", "redis://127.0.0.1:1"},
		{"--key-prefix", "a b"},
		{"--keys", "0"},
		{"--duration", "soon"},
		{"--token-file", "/nonexistent/token"},
		{"--bogus"},
	} {
		code, out, stderr := runBench(t, args...)
		if code != exitUsage || out != "" || !strings.Contains(stderr, "tiercache") {
			t.Errorf("bench %v: exit %d, stdout %q, stderr:\n%s\nwant exit 2 and a message", args, code, out, stderr)
		}
	}
}

// TestBench_Help checks that --help and docs/bench.md document every
// flag.
func TestBench_Help(t *testing.T) {
	code, out, _ := runBench(t, "--help")
	if code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	doc, err := os.ReadFile("../../docs/bench.md")
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeFor[benchCmd]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		name := "--" + f.Tag.Get("name")
		if !strings.Contains(out, name) || f.Tag.Get("help") == "" {
			t.Errorf("bench --help does not document %s", name)
		}
		if !strings.Contains(string(doc), "`"+name) {
			t.Errorf("docs/bench.md does not document %s", name)
		}
	}
}
