package server

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
)

// TestServer_FailSafeSentinelKill kills the master of a Sentinel group
// under the API while readers ask for keys this instance holds: every
// answer is 200 with the value (fresh or flagged stale), none a 503, from
// the kill until the promoted replica serves.
func TestServer_FailSafeSentinelKill(t *testing.T) {
	t.Parallel()
	st := redistest.NewSentinel(t)
	c := newCache(t, tiercache.Options{
		Namespace:        "fo",
		Redis:            tiercache.RedisOptions{SentinelMaster: st.MasterName, SentinelAddrs: st.SentinelAddrs()},
		OperationTimeout: 200 * time.Millisecond,
		ReadTimeout:      500 * time.Millisecond,
		FailSafe:         tiercache.FailSafeOptions{MaxDuration: time.Hour},
	})
	ts := newTestServer(t, Config{Cache: c, Timeout: 2 * time.Second})
	const keys = 10
	for i := range keys {
		wantStatus(t, do(t, ts, "PUT", fmt.Sprintf("/v1/cache/k%d?ttl=1h", i), "v"+strconv.Itoa(i)), http.StatusNoContent)
		wantStatus(t, do(t, ts, "GET", fmt.Sprintf("/v1/cache/k%d", i), ""), http.StatusOK) // now in L1
	}
	// The replicas hold every write, so the promoted one has the keys.
	redistest.Eventually(t, 10*time.Second, "replicas caught up", func() error { return caughtUp(st) })

	old := st.Master.Addr
	if err := st.Master.Kill(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var answers, stale int
	for i := 0; ; i++ {
		k := i % keys
		r := do(t, ts, "GET", fmt.Sprintf("/v1/cache/k%d", k), "")
		answers++
		if r.status != http.StatusOK || r.body != "v"+strconv.Itoa(k) {
			t.Fatalf("GET k%d %v after the kill: %d %q, want 200 v%d", k, time.Since(start), r.status, r.body, k)
		}
		if r.header.Get("X-Cache") == "stale" {
			stale++
		}
		if k != keys-1 {
			continue
		}
		// After each round: done once a new master answers through the API.
		if addr, err := st.MasterAddr(); err == nil && addr != old {
			if m := do(t, ts, "GET", "/v1/cache/never", ""); m.status == http.StatusNotFound {
				break
			}
		}
		if time.Since(start) > 60*time.Second {
			t.Fatal("no new master serving 60 s after the kill")
		}
	}
	t.Logf("%d answers over %v until the new master served, %d of them stale, none 503", answers, time.Since(start).Round(time.Millisecond), stale)
	if stale == 0 {
		t.Error("no stale answer: the kill was not seen")
	}
}

// caughtUp reports whether every running replica has the master's
// replication offset.
func caughtUp(st *redistest.Sentinel) error {
	mi, err := st.Master.Info("replication")
	if err != nil {
		return err
	}
	for _, r := range st.Replicas {
		ri, err := r.Info("replication")
		if err != nil {
			return err
		}
		if ri["slave_repl_offset"] != mi["master_repl_offset"] {
			return fmt.Errorf("replica %s at %s, master at %s", r.Addr, ri["slave_repl_offset"], mi["master_repl_offset"])
		}
	}
	return nil
}
