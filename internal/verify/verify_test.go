package verify

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
)

var topologies redistest.Topologies

func TestMain(m *testing.M) {
	code := m.Run()
	topologies.Close()
	os.Exit(code)
}

// options connects to a started topology.
func options(tp redistest.Topology) tiercache.Options {
	return tiercache.Options{Redis: tiercache.RedisOptions{
		Addrs: tp.Addrs, Cluster: tp.Cluster, SentinelMaster: tp.SentinelMaster, SentinelAddrs: tp.SentinelAddrs,
		Username: tp.Username, Password: tp.Password,
	}}
}

// open opens n caches on the topology, closed at the end of the test.
func open(t *testing.T, tp redistest.Topology, n int) ([]Instance, func(ctx context.Context, keys, tags []string) error) {
	t.Helper()
	insts, cleanup, closeAll, err := OpenCaches(options(tp), n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeAll)
	return insts, cleanup
}

// TestRun_Coherent: a correct deployment passes on every topology, with
// every kind of operation acknowledged and read, and leaves nothing
// behind. On production (redis-production.conf and acl.conf, logged in
// as the least-privileged tiercache user) the run's namespace is one the
// ACL allows.
func TestRun_Coherent(t *testing.T) {
	for _, name := range []string{"standalone", "sentinel", "cluster", "production"} {
		t.Run(name, func(t *testing.T) {
			tp := topologies.Get(t, name)
			insts, cleanup := open(t, tp, 3)
			rep, err := Run(t.Context(), Config{Instances: insts, Duration: 1500 * time.Millisecond, Keys: 16, Groups: 4, Cleanup: cleanup})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Pass || rep.Violations != 0 || rep.Lost != 0 {
				var b strings.Builder
				_ = rep.WriteText(&b)
				t.Fatalf("a correct deployment failed:\n%s", b.String())
			}
			if rep.Writes == 0 || rep.Deletes == 0 || rep.Invalidate == 0 || rep.Reads < 100 {
				t.Errorf("too little happened: %+v", rep)
			}
			if rep.Cleanup != "done" {
				t.Errorf("cleanup: %s", rep.Cleanup)
			}
			// The run's keys are gone: at once in Redis, and in every
			// instance's L1 once the cleanup's invalidations have reached
			// it (they travel asynchronously, as every invalidation does).
			for _, k := range []string{"k0", "k1", "k15"} {
				deadline := time.Now().Add(2 * time.Second)
				for {
					v, err := insts[1].Get(t.Context(), rep.Prefix+k)
					if err == ErrNotFound {
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("%s%s 2 s after the cleanup: %q, %v", rep.Prefix, k, v, err)
						break
					}
					time.Sleep(time.Millisecond)
				}
			}
			if name == "standalone" {
				left, err := tp.Do("KEYS", "tiercache:verify-*")
				if err != nil {
					t.Fatal(err)
				}
				if l, _ := left.([]any); len(l) > 0 {
					t.Errorf("keys left after the run: %v", l)
				}
			}
			t.Logf("%s: %d writes, %d deletes, %d invalidations, %d reads; lag p50 %v p99 %v max %v",
				name, rep.Writes, rep.Deletes, rep.Invalidate, rep.Reads, rep.Lag.P50, rep.Lag.P99, rep.Lag.Max)
		})
	}
}

// sticky is a deliberately broken instance: an L1 that never hears of an
// invalidation. Whatever it has read once, it serves forever, as an
// instance whose invalidation link is cut while it keeps serving L1.
type sticky struct {
	Instance
	mu   sync.Mutex
	seen map[string]string
}

func (s *sticky) Get(ctx context.Context, key string) (string, error) {
	s.mu.Lock()
	v, ok := s.seen[key]
	s.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := s.Instance.Get(ctx, key)
	if err == nil {
		s.mu.Lock()
		s.seen[key] = v
		s.mu.Unlock()
	}
	return v, err
}

// TestRun_Broken: the checker fails a deployment with one instance that
// misses invalidations, both during the run and in the final reads.
func TestRun_Broken(t *testing.T) {
	tp := topologies.Get(t, "standalone")
	insts, cleanup := open(t, tp, 3)
	insts[2] = &sticky{Instance: insts[2], seen: map[string]string{}}
	rep, err := Run(t.Context(), Config{Instances: insts, Duration: time.Second, Keys: 16, Groups: 4, Cleanup: cleanup})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	_ = rep.WriteText(&b)
	if rep.Pass || rep.Violations == 0 || rep.Lost == 0 {
		t.Fatalf("a broken deployment passed, or was caught only in part:\n%s", b.String())
	}
	if rep.LostInRedis != 0 {
		t.Errorf("%d keys blamed on Redis; only cache-3 is broken", rep.LostInRedis)
	}
	for _, e := range rep.Examples {
		if e.Instance != "cache-3" {
			t.Errorf("violation blamed on %s, not the broken cache-3: %s", e.Instance, e)
		}
	}
	t.Logf("broken deployment:\n%s", b.String())
}

// TestRun_Bounded: the run stops at MaxOps and within its time limit.
func TestRun_Bounded(t *testing.T) {
	tp := topologies.Get(t, "standalone")
	insts, cleanup := open(t, tp, 2)
	start := time.Now()
	rep, err := Run(t.Context(), Config{Instances: insts, Duration: time.Minute, MaxOps: 500, Keys: 8, Groups: 2, Cleanup: cleanup})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stopped != "max-ops" {
		t.Errorf("stopped by %q, want max-ops", rep.Stopped)
	}
	if n := rep.Writes + rep.Deletes + rep.Invalidate + rep.Errors + rep.Reads; n > 500 {
		t.Errorf("%d operations, at most 500 allowed", n)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %v", d)
	}
	if !rep.Pass {
		t.Errorf("failed: %+v", rep)
	}
}

// TestRun_SentinelFailover: a forced Sentinel failover runs during the
// workload and the report gives the write outage it caused. The test
// Sentinel has no min-replicas-to-write, so a forced failover may discard
// writes the old master acknowledged but had not yet replicated: verify
// then reports them as violations (several instances reading the same
// older value after a newer one was acknowledged), which is the point of
// running it; the test accepts either verdict.
func TestRun_SentinelFailover(t *testing.T) {
	tp := topologies.Get(t, "sentinel")
	insts, cleanup := open(t, tp, 3)
	fault := SentinelFailover(tp.SentinelAddrs, "", "", tp.SentinelMaster)
	fault.At = 500 * time.Millisecond
	rep, err := Run(t.Context(), Config{Instances: insts, Duration: 3 * time.Second, Keys: 16, Groups: 4, Faults: []Fault{fault}, Cleanup: cleanup})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	_ = rep.WriteText(&b)
	if len(rep.Faults) != 1 || rep.Faults[0].Error != "" || rep.Faults[0].WriteOutage <= 0 {
		t.Fatalf("the failover did not run, or its outage is missing:\n%s", b.String())
	}
	if rep.Lost != 0 || rep.Writes == 0 || rep.Reads == 0 {
		t.Errorf("report:\n%s", b.String())
	}
	t.Logf("failover:\n%s", b.String())
}

// TestRun_Unreachable: a run whose every operation fails proves nothing,
// so it does not pass.
func TestRun_Unreachable(t *testing.T) {
	srv := redistest.NewStandalone(t)
	insts, cleanup := open(t, redistest.Topology{Addrs: []string{srv.Addr}}, 2)
	srv.Close()
	rep, err := Run(t.Context(), Config{Instances: insts, Duration: 500 * time.Millisecond, Keys: 4, Groups: 2, Cleanup: cleanup})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Pass || rep.Problem == "" {
		t.Errorf("a run against a dead Redis passed: %+v", rep)
	}
}

func TestConfig_Invalid(t *testing.T) {
	one := []Instance{CacheInstance{}}
	two := []Instance{CacheInstance{}, CacheInstance{}}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"one instance", Config{Instances: one}},
		{"duration too long", Config{Instances: two, Duration: time.Hour}},
		{"more groups than keys", Config{Instances: two, Keys: 2, Groups: 3}},
		{"too many readers", Config{Instances: two, Readers: 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Run(t.Context(), tc.cfg); err == nil {
				t.Error("no error")
			}
		})
	}
}

// TestRun_LinkPause: one instance's link to Redis is held still for two
// seconds during the run, twice its OperationTimeout. On a correct
// deployment the run still passes: the paused instance trusts its L1 for
// at most its LivenessBound (the fault's tolerance), its operations get
// no answer meanwhile (its outage in the report), and what Redis held back
// reaches it when the link resumes. With that instance broken (its L1
// never hears of an invalidation), the same run fails, blaming it alone:
// the tolerance does not hide a broken cache.
func TestRun_LinkPause(t *testing.T) {
	for _, tc := range []struct {
		topo   string
		broken bool
	}{{"standalone", false}, {"cluster", false}, {"standalone", true}} {
		t.Run(fmt.Sprintf("%s/broken=%v", tc.topo, tc.broken), func(t *testing.T) {
			link := &Link{}
			insts, cleanup, closeAll, err := OpenCaches(options(topologies.Get(t, tc.topo)), 3, link)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(closeAll)
			tolerance := insts[0].(CacheInstance).Cache.LivenessBound()
			if tolerance <= 0 || tolerance > time.Second {
				t.Fatalf("LivenessBound = %v, want the default 750ms", tolerance)
			}
			fault := LinkPause(insts[0], link, 2*time.Second, tolerance)
			fault.At = 500 * time.Millisecond
			if tc.broken {
				insts[0] = &sticky{Instance: insts[0], seen: map[string]string{}}
			}
			rep, err := Run(t.Context(), Config{Instances: insts, Duration: 3500 * time.Millisecond, Keys: 16, Groups: 4, Faults: []Fault{fault}, Cleanup: cleanup})
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			_ = rep.WriteText(&b)
			if len(rep.Faults) != 1 || rep.Faults[0].Error != "" || rep.Faults[0].Instance != "cache-1" {
				t.Fatalf("the pause did not run:\n%s", b.String())
			}
			if tc.broken {
				if rep.Pass || rep.Violations == 0 {
					t.Fatalf("a broken instance passed under a link pause:\n%s", b.String())
				}
				for _, e := range rep.Examples {
					if e.Instance != "cache-1" {
						t.Errorf("violation blamed on %s, not the broken cache-1: %s", e.Instance, e)
					}
				}
				return
			}
			if !rep.Pass || rep.Lost != 0 {
				t.Fatalf("a correct deployment failed with a paused link:\n%s", b.String())
			}
			if f := rep.Faults[0]; f.InstanceOutage < time.Second {
				t.Errorf("the paused instance answered within %v of a 2s pause:\n%s", f.InstanceOutage, b.String())
			}
			t.Logf("%s:\n%s", tc.topo, b.String())
		})
	}
}
