package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/internal/verify"
)

// verifyArgs keep the runs short: a second of workload on a few keys.
var verifyArgs = []string{"--duration", "1s", "--keys", "16", "--tags", "4"}

// TestVerify_Library: verify passes on a correct deployment of each
// topology, run as library caches on the operator's Redis, and says so in
// text and JSON.
func TestVerify_Library(t *testing.T) {
	for _, tp := range topologiesForOps(t) {
		t.Run(tp.name, func(t *testing.T) {
			clearEnv(t)
			tp.set(t)
			stdout, stderr := runWant(t, append([]string{"verify", "--instances", "3"}, verifyArgs...), 0, "PASS: 3 instances", "")
			if t.Failed() {
				t.Fatalf("stderr:\n%s", stderr)
			}
			for _, want := range []string{"operations", "lag             p50", "0 beyond it (violations);", "0 (instance, key) reads wrong", "cleanup         done"} {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("report lacks %q:\n%s", want, stdout)
				}
			}
			stdout, _ = runWant(t, append([]string{"verify", "--json", "--instances", "2"}, verifyArgs...), 0, `"pass": true`, "")
			var rep verify.Report
			if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Writes == 0 || rep.Invalidate == 0 || rep.Deletes == 0 || rep.Reads == 0 || len(rep.Instances) != 2 {
				t.Errorf("report %+v", rep)
			}
			t.Logf("%s: %d writes, %d deletes, %d invalidations, %d reads; lag p50 %v p99 %v max %v",
				tp.name, rep.Writes, rep.Deletes, rep.Invalidate, rep.Reads, rep.Lag.P50, rep.Lag.P99, rep.Lag.Max)
		})
	}
}

// stickyProxy is a broken deployment's front: an HTTP cache in front of a
// service that keeps every 200 it has seen and never hears of an
// invalidation, as an instance with its invalidation link cut that keeps
// serving its L1.
func stickyProxy(t *testing.T, upstream string) string {
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = log.New(io.Discard, "", 0) // requests cut off at the end of the run
	var mu sync.Mutex
	kept := map[string][]byte{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			rp.ServeHTTP(w, r)
			return
		}
		mu.Lock()
		body, ok := kept[r.URL.String()]
		mu.Unlock()
		if ok {
			_, _ = w.Write(body)
			return
		}
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r)
		if rec.Code == http.StatusOK {
			mu.Lock()
			kept[r.URL.String()] = rec.Body.Bytes()
			mu.Unlock()
		}
		w.WriteHeader(rec.Code)
		_, _ = io.Copy(w, rec.Body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestVerify_Services: verify passes on two correct services sharing a
// Redis, and fails, naming the broken instance, when one of them is
// reached through a cache that misses invalidations.
func TestVerify_Services(t *testing.T) {
	redistest.Require(t)
	clearEnv(t)
	srv := redistest.NewStandalone(t)
	t.Setenv("REDIS_URL", "redis://"+srv.Addr+"/0")
	var urls []string
	for range 2 {
		t.Setenv("TIERCACHE_RECOVERY_JOURNAL_DIR", t.TempDir())
		s := startServe(t, "serve", "--addr", "127.0.0.1:0", "--token", testToken, "--namespace", "shared")
		urls = append(urls, "http://"+s.addr)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(testToken), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("correct", func(t *testing.T) {
		args := append([]string{"verify", "--url", urls[0], "--url", urls[1], "--token-file", tokenFile}, verifyArgs...)
		stdout, stderr := runWant(t, args, 0, "PASS: 2 instances", "")
		if t.Failed() {
			t.Fatalf("stderr:\n%s", stderr)
		}
		t.Logf("correct deployment:\n%s", stdout)
	})
	t.Run("broken", func(t *testing.T) {
		broken := stickyProxy(t, urls[1])
		args := append([]string{"verify", "--url", urls[0] + "," + broken, "--token-file", tokenFile}, verifyArgs...)
		stdout, _ := runWant(t, args, exitError, "FAIL: 2 instances", "")
		if !strings.Contains(stdout.String(), "VIOLATION       "+broken) {
			t.Errorf("no violation blamed on the broken instance %s:\n%s", broken, stdout)
		}
		if strings.Contains(stdout.String(), "VIOLATION       "+urls[0]) {
			t.Errorf("a violation blamed on the correct instance:\n%s", stdout)
		}
		t.Logf("broken deployment:\n%s", stdout)
		stdout, _ = runWant(t, append(args, "--output", "json"), exitError, `"pass": false`, "")
		var rep verify.Report
		if err := json.NewDecoder(bytes.NewReader(stdout.Bytes())).Decode(&rep); err != nil {
			t.Fatal(err)
		}
		if rep.Violations == 0 || rep.Lost == 0 {
			t.Errorf("violations %d, lost %d: want both", rep.Violations, rep.Lost)
		}
	})
}

// TestVerify_PauseLink: --pause-link-at holds the first instance's link
// still during the run; a correct deployment still passes, and the report
// gives the paused instance's outage. The flag is refused with --url and
// outside --duration.
func TestVerify_PauseLink(t *testing.T) {
	redistest.Require(t)
	clearEnv(t)
	srv := redistest.NewStandalone(t)
	t.Setenv("REDIS_URL", "redis://"+srv.Addr+"/0")
	stdout, stderr := runWant(t, []string{"verify", "--duration", "3s", "--keys", "16", "--tags", "4", "--pause-link-at", "1s", "--pause-link-for", "1s"}, 0, "PASS: 3 instances", "")
	if t.Failed() {
		t.Fatalf("stderr:\n%s", stderr)
	}
	for _, want := range []string{"fault           link-pause at 1s", "cache-1: no answer for", "0 beyond it (violations);"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, stdout)
		}
	}
	runWant(t, []string{"verify", "--duration", "1s", "--pause-link-at", "2s"}, exitUsage, "", "--pause-link-at must be within --duration")
	runWant(t, []string{"verify", "--url", "http://127.0.0.1:1,http://127.0.0.1:2", "--pause-link-at", "1s"}, exitUsage, "", "not to --url")
}
