package tiercache

import (
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tiercache/tiercache/internal/redisstore"
)

// HealthStatus is the overall verdict of Health.
type HealthStatus string

// Health statuses. A readiness probe should pass healthy and degraded:
// a degraded cache still serves every request.
const (
	Healthy   HealthStatus = "healthy"   // every check passes
	Degraded  HealthStatus = "degraded"  // some check warns or could not run: serving, with reduced redundancy or headroom, or unverified
	Unhealthy HealthStatus = "unhealthy" // some check fails: the L2 cannot be used
)

// CheckStatus is the verdict of one check.
type CheckStatus string

// Check statuses, as in the seed's health JSON, plus CheckUnknown.
const (
	CheckPass CheckStatus = "pass"
	CheckWarn CheckStatus = "warn"
	CheckFail CheckStatus = "fail"
	// CheckUnknown: the check could not run, as when Redis did not
	// answer the questions it asks; its figures are zero and mean
	// nothing. It counts as a warning in the verdict.
	CheckUnknown CheckStatus = "unknown"
)

// MemoryWarnRatio is the share of maxmemory from which the memory check
// warns.
const MemoryWarnRatio = 0.8

// Health is the cache's health, in the shape of the seed's health check:
//
//	{"status": "healthy", "timestamp": "...", "checks": {"connectivity": {...}, ...}}
//
// Status is the worst of the checks: unhealthy if one fails, degraded if
// one warns or could not run, healthy otherwise.
type Health struct {
	Status    HealthStatus `json:"status"`
	Timestamp time.Time    `json:"timestamp"`
	Checks    HealthChecks `json:"checks"`
}

// HealthChecks are the individual checks of Health.
type HealthChecks struct {
	Connectivity   ConnectivityCheck `json:"connectivity"`
	Memory         MemoryCheck       `json:"memory"`
	CircuitBreaker BreakerCheck      `json:"circuit_breaker"`
	Replication    ReplicationCheck  `json:"replication"`
	Tracking       TrackingCheck     `json:"tracking"`
}

// ConnectivityCheck PINGs every node the cache talks to. It fails when
// none answers and warns when some do not (a Cluster node, until the
// Cluster forgets it).
type ConnectivityCheck struct {
	Status CheckStatus `json:"status"`
	// ResponseTimeMS is the slowest PING round trip among the nodes that
	// answered, in milliseconds.
	ResponseTimeMS float64 `json:"response_time_ms"`
	Nodes          int     `json:"nodes"`
	Reachable      int     `json:"reachable"`
	Message        string  `json:"message,omitempty"`
}

// MemoryCheck compares Redis's used_memory with its maxmemory, on the
// fullest master. It warns from MemoryWarnRatio. Without a maxmemory,
// UsageRatio is 0 and it passes. When no master answers it is unknown.
// On the in-memory store it reports the L1 against its bound, and passes:
// L1 evicts by design.
type MemoryCheck struct {
	Status     CheckStatus `json:"status"`
	UsedBytes  int64       `json:"used_bytes"`
	MaxMemory  int64       `json:"maxmemory"`
	UsageRatio float64     `json:"usage_ratio"`
	Node       string      `json:"node,omitempty"`
	Policy     string      `json:"maxmemory_policy,omitempty"`
	Message    string      `json:"message,omitempty"`
}

// BreakerCheck reports the circuit breaker: it passes closed (or
// disabled), warns half-open and fails open.
type BreakerCheck struct {
	Status CheckStatus  `json:"status"`
	State  BreakerState `json:"state"`
}

// ReplicationCheck reports the role of the node the cache writes to and
// its connected replicas, plus what the sentinels or the Cluster say.
//
//   - Standalone: it warns when the server is a replica whose link to its
//     master is down, and is unknown when the server does not answer.
//   - Sentinel: every configured sentinel is asked where the master is.
//     It warns when some sentinel does not answer or names another
//     master than the one the cache uses, when a sentinel flags the
//     master or a replica down, or when no sentinel answers.
//   - Cluster: it fails when cluster_state is not ok (slots are not
//     served) and warns when some node is flagged failing. It is unknown
//     when no node answers CLUSTER INFO.
type ReplicationCheck struct {
	Status            CheckStatus    `json:"status"`
	Role              string         `json:"role"`
	ConnectedReplicas int64          `json:"connected_replicas"`
	Sentinel          *SentinelCheck `json:"sentinel,omitempty"`
	Cluster           *ClusterCheck  `json:"cluster,omitempty"`
	Message           string         `json:"message,omitempty"`
}

// SentinelCheck is the Sentinel part of ReplicationCheck.
type SentinelCheck struct {
	MasterName string `json:"master_name"`
	// MasterAddr is the master the cache is connected to.
	MasterAddr string `json:"master_address"`
	// Sentinels is the number of sentinels configured; Agreeing, how
	// many answered and name MasterAddr; Quorum, the sentinels' quorum.
	Sentinels       int      `json:"sentinels"`
	Agreeing        int      `json:"agreeing"`
	Quorum          int      `json:"quorum"`
	Replicas        int      `json:"replicas"`
	FailingReplicas []string `json:"failing_replicas,omitempty"`
	// SentinelNodes has one entry per configured sentinel, in the
	// configured order: what each one answered.
	SentinelNodes []SentinelNode `json:"sentinel_nodes"`
	// ReplicaNodes has one entry per replica any sentinel knows, sorted
	// by address.
	ReplicaNodes []ReplicaNode `json:"replica_nodes"`
}

// SentinelNode is what one sentinel answered.
type SentinelNode struct {
	Addr string `json:"address"`
	// MasterAddr is where it says the master is; empty when it did not
	// answer.
	MasterAddr string `json:"master_address,omitempty"`
	// MasterDown is true when it flags the master down (s_down or o_down).
	MasterDown bool `json:"master_down"`
	// Error is why it did not answer, without credentials.
	Error string `json:"error,omitempty"`
}

// ReplicaNode is one replica of a Sentinel master set.
type ReplicaNode struct {
	Addr string `json:"address"`
	// Failing is true when a sentinel flags it down or disconnected.
	Failing bool `json:"failing"`
}

// ClusterCheck is the Cluster part of ReplicationCheck.
type ClusterCheck struct {
	State        string   `json:"cluster_state"`
	Masters      int      `json:"masters"`
	Replicas     int      `json:"replicas"`
	FailingNodes []string `json:"failing_nodes,omitempty"`
}

// TrackingCheck reports whether the invalidation link is up: whether
// Redis can tell this instance that a key it holds in L1 changed.
//
// rueidis reports every lost connection as an "everything changed"
// invalidation, and turns tracking back on as part of every new
// connection's handshake. So the link is taken as up unless the last such
// loss is more recent than the last time Redis answered (an L2 operation,
// or this check's PING): after a loss, the first answer comes on a new,
// tracked connection. While the link is down, L1 entries are not served as
// fresh (each read goes to L2), so the check warns. On the in-memory store
// invalidations are in-process and it always passes.
type TrackingCheck struct {
	Status CheckStatus `json:"status"`
	Up     bool        `json:"up"`
	// LinkResets counts lost links since New (Counters.LinkResets).
	LinkResets uint64 `json:"link_resets"`
	// LinkSuspects counts, of those, the times a Redis node did not answer
	// the liveness probe in time (Counters.LinkSuspects).
	LinkSuspects uint64 `json:"link_suspects"`
	// LastReset is when the link was last lost; nil if never.
	LastReset *time.Time `json:"last_reset,omitempty"`
	Message   string     `json:"message,omitempty"`
}

// Health checks the cache and its L2 and returns the verdict. It asks
// Redis directly, not through the breaker, with the caller's deadline or
// three seconds, whichever comes first; on Sentinel it also opens a
// short connection to every sentinel. It never returns an error: what
// failed is in the checks. Secrets never appear in it.
func (c *Cache) Health(ctx context.Context) Health {
	h := Health{Timestamp: time.Now().UTC()}
	st := c.guard.state()
	h.Checks.CircuitBreaker = BreakerCheck{Status: CheckPass, State: st}
	switch st {
	case BreakerHalfOpen:
		h.Checks.CircuitBreaker.Status = CheckWarn
	case BreakerOpen:
		h.Checks.CircuitBreaker.Status = CheckFail
	}
	switch rs := c.redisStore(); {
	case c.closed.Load():
		const closed = "not checked: the cache is closed"
		h.Checks.Connectivity = ConnectivityCheck{Status: CheckFail, Message: "the cache is closed"}
		h.Checks.Memory = MemoryCheck{Status: CheckUnknown, Message: closed}
		h.Checks.Replication = ReplicationCheck{Status: CheckUnknown, Message: closed}
		h.Checks.Tracking = TrackingCheck{Status: CheckUnknown, Message: closed}
	case rs == nil:
		c.memoryHealth(&h.Checks)
	default:
		ctx, cancel := context.WithTimeout(ctx, reportTimeout)
		defer cancel()
		c.redisHealth(ctx, rs, &h.Checks)
	}
	h.Status = verdict(h.Checks)
	return h
}

func verdict(ch HealthChecks) HealthStatus {
	worst := Healthy
	for _, s := range []CheckStatus{ch.Connectivity.Status, ch.Memory.Status, ch.CircuitBreaker.Status, ch.Replication.Status, ch.Tracking.Status} {
		switch s {
		case CheckFail:
			return Unhealthy
		case CheckWarn, CheckUnknown:
			worst = Degraded
		}
	}
	return worst
}

// memoryHealth fills the checks for the in-memory L2: in-process, so
// always reachable and coherent.
func (c *Cache) memoryHealth(ch *HealthChecks) {
	ch.Connectivity = ConnectivityCheck{Status: CheckPass, Nodes: 1, Reachable: 1, Message: "in-process store"}
	ch.Memory = MemoryCheck{Status: CheckPass, Message: "in-process store; the figures are L1's"}
	if c.l1 != nil {
		ch.Memory.UsedBytes = int64(c.l1.WeightedSize())
		ch.Memory.MaxMemory = c.opts.L1.MaxBytes
		ch.Memory.UsageRatio = float64(ch.Memory.UsedBytes) / float64(c.opts.L1.MaxBytes)
	}
	ch.Replication = ReplicationCheck{Status: CheckPass, Role: "memory"}
	ch.Tracking = TrackingCheck{Status: CheckPass, Up: true, LinkResets: c.counter.invalidationsAll.Load()}
}

func (c *Cache) redisHealth(ctx context.Context, rs *redisstore.Store, ch *HealthChecks) {
	// The sentinels are asked while the nodes are.
	var views chan []redisstore.SentinelView
	if rs.Mode() == "sentinel" && len(c.opts.Redis.SentinelAddrs) > 0 {
		views = make(chan []redisstore.SentinelView, 1)
		go func() { views <- redisstore.ProbeSentinels(ctx, c.sentinelProbe()) }()
	}
	nodes := rs.Nodes(ctx)
	c.noteMaster(rs, nodes)
	ch.Connectivity = c.connectivity(nodes)
	ch.Memory = memoryCheck(nodes)
	ch.Tracking = c.trackingCheck()
	ch.Replication = ReplicationCheck{Status: CheckPass}
	switch rs.Mode() {
	case "cluster":
		c.clusterCheck(ctx, rs, &ch.Replication)
	default:
		if len(nodes) == 1 && nodes[0].Err != nil {
			ch.Replication.Status = CheckUnknown
			ch.Replication.Message = "not checked: the server did not answer"
		}
		if len(nodes) == 1 && nodes[0].Err == nil {
			ch.Replication.Role = nodes[0].Role
			ch.Replication.ConnectedReplicas = nodes[0].ConnectedReplicas
			if !nodes[0].MasterLinkUp {
				ch.Replication.Status = CheckWarn
				ch.Replication.Message = "the server is a replica whose link to its master is down"
			}
		}
		if views != nil {
			addr := ""
			if len(nodes) == 1 {
				addr = nodes[0].Addr
			}
			c.sentinelCheck(<-views, addr, &ch.Replication)
		}
	}
}

func (c *Cache) connectivity(nodes []redisstore.NodeInfo) ConnectivityCheck {
	cc := ConnectivityCheck{Status: CheckPass, Nodes: len(nodes)}
	var slowest time.Duration
	var failed []string
	for _, n := range nodes {
		if n.Err != nil {
			failed = append(failed, redactErr(n.Err, c.opts.Redis))
			continue
		}
		cc.Reachable++
		slowest = max(slowest, n.Ping)
	}
	cc.ResponseTimeMS = float64(slowest) / float64(time.Millisecond)
	switch {
	case cc.Reachable == 0:
		cc.Status = CheckFail
		cc.Message = "no Redis node answered"
		if len(failed) > 0 {
			cc.Message += ": " + failed[0]
		}
		return cc
	case len(failed) > 0:
		cc.Status = CheckWarn
		cc.Message = fmt.Sprintf("%d of %d nodes did not answer: %s", len(failed), len(nodes), strings.Join(failed, "; "))
	}
	// Redis answered, on a tracked connection: a lost invalidation link
	// has been re-established.
	c.obs.l2OKAt.Store(time.Now().UnixNano())
	return cc
}

func memoryCheck(nodes []redisstore.NodeInfo) MemoryCheck {
	mc := MemoryCheck{Status: CheckPass}
	found := false
	if len(nodes) == 0 {
		return MemoryCheck{Status: CheckUnknown, Message: "not checked: no Redis node known"}
	}
	for _, n := range nodes {
		if n.Err != nil || n.Role != "master" {
			continue
		}
		ratio := 0.0
		if n.MaxMemory > 0 {
			ratio = float64(n.UsedMemory) / float64(n.MaxMemory)
		}
		if !found || ratio > mc.UsageRatio {
			found = true
			mc.UsedBytes, mc.MaxMemory, mc.UsageRatio = n.UsedMemory, n.MaxMemory, ratio
			mc.Node, mc.Policy = n.Addr, n.MaxMemoryPolicy
		}
	}
	switch {
	case !found:
		mc.Status = CheckUnknown
		mc.Message = "not checked: no master answered"
	case mc.MaxMemory == 0:
		mc.Message = "no maxmemory set"
	case mc.UsageRatio >= MemoryWarnRatio:
		mc.Status = CheckWarn
		mc.Message = fmt.Sprintf("used_memory is %.0f%% of maxmemory on %s", 100*mc.UsageRatio, mc.Node)
	}
	return mc
}

func (c *Cache) trackingCheck() TrackingCheck {
	tc := TrackingCheck{Status: CheckPass, Up: true, LinkResets: c.counter.invalidationsAll.Load(), LinkSuspects: c.counter.linkSuspects.Load()}
	lost := c.obs.linkLostAt.Load()
	if lost == 0 {
		return tc
	}
	t := time.Unix(0, lost).UTC()
	tc.LastReset = &t
	if c.obs.l2OKAt.Load() < lost {
		tc.Status, tc.Up = CheckWarn, false
		tc.Message = "the invalidation link was lost and Redis has not answered since: L1 entries are not served as fresh"
	}
	return tc
}

func (c *Cache) clusterCheck(ctx context.Context, rs *redisstore.Store, rc *ReplicationCheck) {
	cs, err := rs.Cluster(ctx)
	if err != nil {
		rc.Status = CheckUnknown
		rc.Message = "not checked: no cluster node answered CLUSTER INFO: " + redactErr(err, c.opts.Redis)
		return
	}
	rc.Role = "cluster"
	rc.Cluster = &ClusterCheck{State: cs.State, Masters: cs.Masters, Replicas: cs.Replicas, FailingNodes: cs.Failing}
	switch {
	case cs.State != "ok":
		rc.Status = CheckFail
		rc.Message = fmt.Sprintf("cluster_state is %s (as %s sees it): some slots are not served", cs.State, cs.From)
	case len(cs.Failing) > 0:
		rc.Status = CheckWarn
		rc.Message = "failing nodes: " + strings.Join(cs.Failing, ", ")
	}
}

func (c *Cache) sentinelProbe() redisstore.SentinelProbe {
	r := c.opts.Redis
	p := redisstore.SentinelProbe{
		Addrs: r.SentinelAddrs, Master: r.SentinelMaster,
		Username: r.SentinelUsername, Password: r.SentinelPassword,
		TLS: r.TLS, DialTimeout: r.DialTimeout,
	}
	if p.TLS == nil && strings.HasPrefix(r.URL, "rediss://") {
		p.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return p
}

func (c *Cache) sentinelCheck(views []redisstore.SentinelView, master string, rc *ReplicationCheck) {
	sc := &SentinelCheck{MasterName: c.opts.Redis.SentinelMaster, MasterAddr: master, Sentinels: len(views)}
	rc.Sentinel = sc
	var problems []string
	failing := map[string]bool{}
	replicas := map[string]bool{}
	for _, v := range views {
		node := SentinelNode{Addr: v.Addr, MasterAddr: v.MasterAddr, MasterDown: v.MasterDown}
		if v.Err != nil {
			node = SentinelNode{Addr: v.Addr, Error: redactErr(v.Err, c.opts.Redis)}
		}
		sc.SentinelNodes = append(sc.SentinelNodes, node)
		for _, r := range v.ReplicaAddrs {
			replicas[r] = true
		}
		switch {
		case v.Err != nil:
			problems = append(problems, node.Error)
			continue
		case v.MasterAddr != master:
			problems = append(problems, fmt.Sprintf("sentinel %s names master %s", v.Addr, v.MasterAddr))
		default:
			sc.Agreeing++
		}
		sc.Quorum = max(sc.Quorum, v.Quorum)
		sc.Replicas = max(sc.Replicas, v.Replicas)
		if v.MasterDown {
			problems = append(problems, fmt.Sprintf("sentinel %s flags the master down", v.Addr))
		}
		for _, r := range v.FailingReplicas {
			failing[r] = true
		}
	}
	for r := range failing {
		sc.FailingReplicas = append(sc.FailingReplicas, r)
	}
	slices.Sort(sc.FailingReplicas)
	for _, r := range slices.Sorted(maps.Keys(replicas)) {
		sc.ReplicaNodes = append(sc.ReplicaNodes, ReplicaNode{Addr: r, Failing: failing[r]})
	}
	if len(sc.FailingReplicas) > 0 {
		problems = append(problems, "replicas down: "+strings.Join(sc.FailingReplicas, ", "))
	}
	if len(problems) > 0 {
		rc.Status = CheckWarn
		rc.Message = fmt.Sprintf("%d of %d sentinels agree on the master; %s", sc.Agreeing, sc.Sentinels, strings.Join(problems, "; "))
	}
}
