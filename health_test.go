package tiercache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// healthWait bounds each wait for a health transition: sentinels flag a
// replica down after 1 s, cluster nodes a peer after 2 s, and a loaded
// machine under -race is slow.
const healthWait = 45 * time.Second

// waitHealth polls Health until cond accepts it.
func waitHealth(t *testing.T, c *Cache, what string, cond func(h Health) error) Health {
	t.Helper()
	deadline := time.Now().Add(healthWait)
	for {
		h := c.Health(context.Background())
		err := cond(h)
		if err == nil {
			return h
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(h, "", "  ")
			t.Fatalf("%s: still %v after %v; last health:\n%s", what, err, healthWait, b)
		}
		time.Sleep(50 * time.Millisecond) // pacing: each Health opens connections
	}
}

// status returns a condition on the overall status; check, when not nil,
// adds one on the checks.
func status(want HealthStatus, check func(HealthChecks) error) func(Health) error {
	return func(h Health) error {
		if h.Status != want {
			return fmt.Errorf("status %s, want %s", h.Status, want)
		}
		if check != nil {
			return check(h.Checks)
		}
		return nil
	}
}

func TestCache_Health_Memory(t *testing.T) {
	t.Parallel()
	c := newCache(t, "memory")
	if err := c.Set(context.Background(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	h := c.Health(context.Background())
	if h.Status != Healthy || h.Timestamp.IsZero() {
		t.Fatalf("health %+v", h)
	}
	ch := h.Checks
	for name, s := range map[string]CheckStatus{
		"connectivity": ch.Connectivity.Status, "memory": ch.Memory.Status, "circuit_breaker": ch.CircuitBreaker.Status,
		"replication": ch.Replication.Status, "tracking": ch.Tracking.Status,
	} {
		if s != CheckPass {
			t.Errorf("%s: %s", name, s)
		}
	}
	if ch.Memory.MaxMemory != DefaultL1MaxBytes || !ch.Tracking.Up {
		t.Errorf("checks %+v", ch)
	}
	_ = c.Close()
	h = c.Health(context.Background())
	if h.Status != Unhealthy {
		t.Fatalf("closed cache: %s", h.Status)
	}
	// What a closed cache cannot check is unknown, not passed.
	for name, s := range map[string]CheckStatus{"memory": h.Checks.Memory.Status, "replication": h.Checks.Replication.Status, "tracking": h.Checks.Tracking.Status} {
		if s != CheckUnknown {
			t.Errorf("closed cache: %s check %s, want unknown", name, s)
		}
	}
}

// TestCache_Health_Standalone: memory filling up (degraded), Redis stopped
// (unhealthy), the breaker opening, and recovery.
func TestCache_Health_Standalone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.NewStandalone(t, "--maxmemory", "3mb", "--maxmemory-policy", "allkeys-lru")
	c := newCache(t, "memory", func(o *Options) {
		o.Redis = RedisOptions{Addrs: []string{srv.Addr}}
		o.Retries = -1
		o.Breaker.Threshold = 3
		o.Breaker.OpenTimeout = time.Hour
		o.Logger = discardLogger()
	})

	h := waitHealth(t, c, "start", status(Healthy, nil))
	if h.Checks.Connectivity.ResponseTimeMS <= 0 || h.Checks.Memory.MaxMemory != 3<<20 ||
		h.Checks.Replication.Role != "master" || h.Checks.Memory.Node != srv.Addr {
		t.Fatalf("checks %+v", h.Checks)
	}

	// Fill the tiny maxmemory: LRU eviction keeps it full, at ≥ 80%.
	// Random bytes, so that compression does not shrink them.
	value := make([]byte, 64<<10)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range value {
		value[i] = byte(rng.Uint32())
	}
	for i := 0; ; i++ {
		if err := c.Set(ctx, fmt.Sprint("fill:", i), value); err != nil {
			t.Fatal(err)
		}
		if i%8 != 7 {
			continue
		}
		if h = c.Health(ctx); h.Status == Degraded {
			break
		}
		if i > 200 {
			t.Fatalf("wrote %d × 64 KiB into 3 MiB and health is %s: %+v", i, h.Status, h.Checks.Memory)
		}
	}
	if m := h.Checks.Memory; m.Status != CheckWarn || m.UsageRatio < MemoryWarnRatio || m.Policy != "allkeys-lru" {
		t.Fatalf("memory check %+v", m)
	}

	// Redis stopped: unhealthy, whatever the breaker says.
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	h = waitHealth(t, c, "Redis stopped", status(Unhealthy, func(ch HealthChecks) error {
		if ch.Connectivity.Status != CheckFail || ch.Connectivity.Reachable != 0 {
			return fmt.Errorf("connectivity %+v", ch.Connectivity)
		}
		// The checks that ask Redis could not run: unknown, never pass.
		if ch.Memory.Status != CheckUnknown || ch.Memory.UsedBytes != 0 || !strings.Contains(ch.Memory.Message, "not checked") {
			return fmt.Errorf("memory check with Redis down %+v", ch.Memory)
		}
		if ch.Replication.Status != CheckUnknown || ch.Replication.Role != "" {
			return fmt.Errorf("replication check with Redis down %+v", ch.Replication)
		}
		return nil
	}))
	// The breaker opens after three failed operations.
	for range 3 {
		var s string
		if err := c.Get(ctx, "k", &s); err == nil {
			t.Fatal("Get with Redis down succeeded")
		}
	}
	h = c.Health(ctx)
	if b := h.Checks.CircuitBreaker; b.Status != CheckFail || b.State != BreakerOpen {
		t.Fatalf("breaker check %+v", b)
	}
	if tr := h.Checks.Tracking; tr.Up || tr.Status != CheckWarn || tr.LastReset == nil {
		t.Fatalf("tracking check with Redis down %+v", tr)
	}

	// Back: connectivity, memory (a restart empties it) and tracking
	// recover; the breaker stays open until its timeout.
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, c, "Redis restarted", status(Unhealthy, func(ch HealthChecks) error {
		if ch.Connectivity.Status != CheckPass || ch.Tracking.Status != CheckPass || ch.Memory.Status != CheckPass ||
			ch.CircuitBreaker.Status != CheckFail {
			return fmt.Errorf("checks %+v", ch)
		}
		return nil
	}))
}

// TestCache_Health_Sentinel: a failover (seen as a master change), a
// replica killed (degraded) and brought back, a sentinel killed
// (degraded).
func TestCache_Health_Sentinel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := redistest.NewSentinel(t)
	c := newCache(t, "memory", func(o *Options) {
		o.Redis = RedisOptions{SentinelMaster: st.MasterName, SentinelAddrs: st.SentinelAddrs()}
		o.Logger = discardLogger()
	})
	h := waitHealth(t, c, "start", status(Healthy, nil))
	sc := h.Checks.Replication.Sentinel
	if sc == nil || sc.Agreeing != 3 || sc.Sentinels != 3 || sc.Quorum != 2 || sc.Replicas != 2 ||
		sc.MasterAddr != st.Master.Addr || h.Checks.Replication.ConnectedReplicas != 2 {
		t.Fatalf("replication check %+v, sentinel %+v", h.Checks.Replication, sc)
	}
	// One row per sentinel, in the configured order, and per replica.
	for i, n := range sc.SentinelNodes {
		if n.Addr != st.SentinelAddrs()[i] || n.MasterAddr != st.Master.Addr || n.MasterDown || n.Error != "" {
			t.Errorf("sentinel %d: %+v", i, n)
		}
	}
	var replicaAddrs []string
	for _, r := range st.Replicas {
		replicaAddrs = append(replicaAddrs, r.Addr)
	}
	slices.Sort(replicaAddrs)
	if len(sc.SentinelNodes) != 3 || len(sc.ReplicaNodes) != 2 ||
		sc.ReplicaNodes[0] != (ReplicaNode{Addr: replicaAddrs[0]}) || sc.ReplicaNodes[1] != (ReplicaNode{Addr: replicaAddrs[1]}) {
		t.Fatalf("sentinel nodes %+v, replica nodes %+v, want 3 sentinels and replicas %v", sc.SentinelNodes, sc.ReplicaNodes, replicaAddrs)
	}

	// A failover: the cache follows the new master and counts the change.
	if err := st.Failover(); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, c, "after the failover", status(Healthy, func(ch HealthChecks) error {
		if got := ch.Replication.Sentinel.MasterAddr; got != st.Master.Addr {
			return fmt.Errorf("master %s, want %s", got, st.Master.Addr)
		}
		return nil
	}))
	rep, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.MasterChanges != 1 {
		t.Fatalf("MasterChanges = %d after one failover", rep.MasterChanges)
	}

	// A replica killed: the sentinels flag it down.
	replica := st.Replicas[0]
	if err := replica.Kill(); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, c, "replica killed", status(Degraded, func(ch HealthChecks) error {
		r := ch.Replication
		if r.Status != CheckWarn || !slices.Contains(r.Sentinel.FailingReplicas, replica.Addr) ||
			!slices.Contains(r.Sentinel.ReplicaNodes, ReplicaNode{Addr: replica.Addr, Failing: true}) {
			return fmt.Errorf("replication %+v (failing %v, replica nodes %+v)", r, r.Sentinel.FailingReplicas, r.Sentinel.ReplicaNodes)
		}
		return nil
	}))
	if err := replica.Restart(); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, c, "replica back", status(Healthy, nil))

	// A sentinel killed: two of three agree.
	if err := st.Sentinels[2].Kill(); err != nil {
		t.Fatal(err)
	}
	h = waitHealth(t, c, "sentinel killed", status(Degraded, func(ch HealthChecks) error {
		s := ch.Replication.Sentinel
		if s.Agreeing != 2 || s.Sentinels != 3 {
			return fmt.Errorf("sentinel check %+v", s)
		}
		if dead := s.SentinelNodes[2]; dead.Error == "" || dead.MasterAddr != "" || s.SentinelNodes[0].Error != "" {
			return fmt.Errorf("sentinel nodes %+v, want the third one failing", s.SentinelNodes)
		}
		return nil
	}))
	if !strings.Contains(h.Checks.Replication.Message, st.Sentinels[2].Addr) {
		t.Errorf("the message does not name the dead sentinel: %q", h.Checks.Replication.Message)
	}
}

// TestCache_Health_Cluster: a node killed (degraded).
func TestCache_Health_Cluster(t *testing.T) {
	t.Parallel()
	cl := redistest.NewCluster(t)
	c := newCache(t, "memory", func(o *Options) {
		o.Redis = RedisOptions{Addrs: cl.Addrs(), Cluster: true}
		o.Logger = discardLogger()
	})
	h := waitHealth(t, c, "start", status(Healthy, nil))
	if cc := h.Checks.Replication.Cluster; cc == nil || cc.State != "ok" || cc.Masters != 3 || cc.Replicas != 3 {
		t.Fatalf("cluster check %+v", h.Checks.Replication)
	}
	if c := h.Checks.Connectivity; c.Nodes < 3 || c.Reachable != c.Nodes { // the masters, and maybe replicas
		t.Fatalf("connectivity %+v", h.Checks.Connectivity)
	}

	node := cl.Replicas[0] // a master would stop its slots until its replica takes over
	if err := node.Kill(); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, c, "node killed", status(Degraded, func(ch HealthChecks) error {
		if !slices.Contains(ch.Replication.Cluster.FailingNodes, node.Addr) {
			return fmt.Errorf("replication %+v", ch.Replication)
		}
		return nil
	}))
}

func TestHealth_JSON(t *testing.T) {
	t.Parallel()
	c := newCache(t, "memory")
	b, err := json.Marshal(c.Health(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	checks, _ := m["checks"].(map[string]any)
	for _, k := range []string{"connectivity", "memory", "circuit_breaker", "replication", "tracking"} {
		if _, ok := checks[k].(map[string]any); !ok {
			t.Errorf("checks.%s missing in %s", k, b)
		}
	}
	conn, _ := checks["connectivity"].(map[string]any)
	if _, ok := conn["response_time_ms"]; !ok || m["status"] != "healthy" || m["timestamp"] == nil {
		t.Errorf("seed shape missing in %s", b)
	}
	if mem, _ := checks["memory"].(map[string]any); mem["usage_ratio"] == nil {
		t.Errorf("memory.usage_ratio missing in %s", b)
	}
}

func TestRedactErr(t *testing.T) {
	t.Parallel()
	r := RedisOptions{URL: "redis://app:url-pa55@127.0.0.1:6379/0", Password: "field-pa55", SentinelPassword: "sent-pa55"}
	err := errors.New("dial redis://app:url-pa55@127.0.0.1:6379/0 with field-pa55 and sent-pa55")
	got := redactErr(err, r)
	for _, secret := range []string{"url-pa55", "field-pa55", "sent-pa55"} {
		if strings.Contains(got, secret) {
			t.Fatalf("redactErr left %q in %q", secret, got)
		}
	}

	// A percent-encoded password in the URL, repeated decoded or encoded.
	r = RedisOptions{URL: "redis://app:p%40ss%2Fw0rd@127.0.0.1:6379/0"}
	for _, msg := range []string{
		"WRONGPASS for p@ss/w0rd",
		"dial redis://app:p%40ss%2Fw0rd@127.0.0.1:6379/0: refused",
		"auth p%40ss%2Fw0rd",
	} {
		got := redactErr(errors.New(msg), r)
		if strings.Contains(got, "p@ss/w0rd") || strings.Contains(got, "p%40ss%2Fw0rd") || strings.Contains(got, "w0rd") {
			t.Errorf("redactErr(%q) = %q", msg, got)
		}
	}
}
