package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestTop_Fleet runs two serve processes' worth of services on one Redis,
// each with a configuration file naming it, and watches the fleet with
// top --fleet: both live with the canary's figures, then the one stopped;
// a one-off command (set through the library) never joins the fleet.
func TestTop_Fleet(t *testing.T) {
	redistest.Require(t)
	clearEnv(t)
	srv := redistest.NewStandalone(t)
	start := func(id string) *serving {
		conf := filepath.Join(t.TempDir(), id+".yaml")
		yaml := "cache:\n  namespace: topfleet\n  fleet:\n    instance_id: " + id + "\n    heartbeat: 100ms\n  canary:\n    interval: 100ms\n" +
			"  recovery:\n    journal_dir: \"\"\nredis:\n  url: redis://" + srv.Addr + "/0\n"
		if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return startServe(t, "serve", "--config", conf, "--addr", "127.0.0.1:0")
	}
	one, two := start("one"), start("two")
	url := "http://" + one.addr
	var out string
	deadline := time.Now().Add(15 * time.Second)
	for {
		stdout, _ := runWant(t, []string{"top", "--fleet", "--url", url, "-n", "1"}, 0, "instance", "")
		out = stdout.String()
		// Both live, and each has seen the other's markers (a lag p99).
		if regexp.MustCompile(`(?m)^\S+\s+one\*\s+live\s+healthy\s+\S+\s+\d+\s+\d+\s+0\s+\d+\s+[0-9.]*[1-9][0-9.]*\s+\d+\s+\S+\s+127\.0\.0\.1:\d+\s*$`).MatchString(out) &&
			regexp.MustCompile(`(?m)^\S+\s+two\s+live\s+healthy\s.*\s127\.0\.0\.1:\d+\s*$`).MatchString(out) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("top --fleet never listed one and two live with a lag:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(out, "127.0.0.1:"+strings.Split(one.addr, ":")[1]) {
		t.Errorf("one's address %s not listed:\n%s", one.addr, out)
	}
	// A command that talks straight to Redis is not a member of the fleet.
	runWant(t, []string{"set", "--redis-url", "redis://" + srv.Addr + "/0", "--namespace", "topfleet", "k", "v"}, 0, "", "")
	if code := two.stop(t); code != 0 {
		t.Fatalf("serve two exited with %d", code)
	}
	stdout, _ := runWant(t, []string{"top", "--fleet", "--url", url, "-n", "1", "-o", "json"}, 0, "", "")
	states := map[string]string{}
	dec := json.NewDecoder(stdout)
	for dec.More() {
		var r fleetRow
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		states[r.ID] = r.State
	}
	if states["one"] != "live" || states["two"] != "stopped" || len(states) != 2 {
		t.Errorf("states after two stopped: %v", states)
	}
	runWant(t, []string{"top", "--fleet", "--url", "http://127.0.0.1:1", "-n", "1"}, exitError, "", "no service answered GET /v1/fleet")
}
