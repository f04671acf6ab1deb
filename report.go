package tiercache

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/tiercache/tiercache/internal/redisstore"
)

// Stats is the full picture of the cache, for dashboards and the
// service's GET /v1/stats: the counters, hit ratios, latency percentiles
// per tier, and what Redis says about each node. Cache.Stats builds it;
// its JSON form uses the field tags below. Cache.Counters returns the
// counters alone, without any I/O.
type Stats struct {
	Timestamp time.Time `json:"timestamp"`
	Namespace string    `json:"namespace"`
	// Topology is "memory", "standalone", "sentinel" or "cluster".
	Topology string `json:"topology"`

	Counters Counters  `json:"counters"`
	HitRatio HitRatios `json:"hit_ratio"`
	Latency  Latencies `json:"latency"`

	// L1MaxBytes is the L1's bound (Options.L1.MaxBytes); 0 when L1 is
	// disabled.
	L1MaxBytes int64 `json:"l1_max_bytes"`

	// Nodes is Redis INFO per node: the server on standalone, the master
	// on Sentinel, every master on Cluster (with the replicas the client
	// holds connections to, if any), sorted by address. Empty on the
	// in-memory store.
	Nodes []RedisNode `json:"nodes"`

	// MasterChanges counts the times this cache saw the Redis master
	// change (its replication ID): a Sentinel failover, or a restart
	// without persistence. It is updated by Stats and Health, so a
	// change is seen at the next call after it. Always 0 on Cluster.
	MasterChanges uint64 `json:"master_changes"`

	// Warming holds the last warming runs reported with
	// Cache.RecordWarm, oldest first.
	Warming []WarmRun `json:"warming"`

	// Coherence is the coherence canary's figures; nil when the canary
	// is off (Options.Canary).
	Coherence *CoherenceStats `json:"coherence,omitempty"`
}

// HitRatios are shares of reads, from Stats.Requests; 0 before any read.
type HitRatios struct {
	// L1 is the share of reads answered by L1.
	L1 float64 `json:"l1"`
	// L2 is the share of the reads L1 did not answer that L2 answered.
	L2 float64 `json:"l2"`
	// Overall is the share of reads answered by either tier. Stale
	// answers and errors count against it.
	Overall float64 `json:"overall"`
}

// Latencies summarise each tier over the last minute or so.
type Latencies struct {
	// L1 is the latency of reads answered by L1, from a sample of one
	// read in 64 (timing every hit would cost more than the hit).
	L1 LatencySummary `json:"l1"`
	// L2 is the latency of each L2 operation attempt, every operation
	// included.
	L2 LatencySummary `json:"l2"`
	// Loader is the latency of loader calls.
	Loader LatencySummary `json:"loader"`
}

// RedisNode is what one Redis node answered to PING and INFO.
type RedisNode struct {
	Addr string `json:"addr"`
	// Role is "master" or "replica"; empty when the node did not answer.
	Role string `json:"role"`
	// Up is true when the node answered.
	Up             bool          `json:"up"`
	Ping           time.Duration `json:"ping_ns"`
	UsedMemory     int64         `json:"used_memory"`
	MaxMemory      int64         `json:"maxmemory"` // 0: no limit
	MaxMemPolicy   string        `json:"maxmemory_policy,omitempty"`
	EvictedKeys    int64         `json:"evicted_keys"`
	KeyspaceHits   int64         `json:"keyspace_hits"`
	KeyspaceMisses int64         `json:"keyspace_misses"`
	Clients        int64         `json:"connected_clients"`
	Replicas       int64         `json:"connected_replicas"`
	OpsPerSec      int64         `json:"instantaneous_ops_per_sec"`
	// Commands is INFO commandstats of the node, by command name
	// (lower case, subcommands as "client|tracking").
	Commands map[string]CommandStat `json:"commandstats,omitempty"`
	// Error is why the node did not answer, without credentials.
	Error string `json:"error,omitempty"`
}

// CommandStat is one command's line of a node's INFO commandstats: calls
// since the node started (or CONFIG RESETSTAT), the time they took, and
// those refused before running (rejected) or that failed while running.
type CommandStat struct {
	Calls    int64         `json:"calls"`
	Time     time.Duration `json:"time_ns"`
	Rejected int64         `json:"rejected_calls"`
	Failed   int64         `json:"failed_calls"`
}

// reportTimeout bounds the Redis round trips of Stats and Health when
// the caller's context has no earlier deadline.
const reportTimeout = 3 * time.Second

// Stats gathers the counters, hit ratios, latency percentiles and Redis
// INFO of every node. It asks Redis directly, not through the breaker, and
// does not fail when a node does not answer: that node's entry says why.
// It fails only once the cache is closed. Counters is the cheap, I/O-free
// subset.
func (c *Cache) Stats(ctx context.Context) (Stats, error) {
	if c.closed.Load() {
		return Stats{}, errorf("tiercache: stats: %w", ErrClosed)
	}
	now := time.Now()
	r := Stats{
		Timestamp: now.UTC(),
		Namespace: c.opts.Namespace,
		Topology:  c.topology(),
		Counters:  c.Counters(),
		Latency: Latencies{
			L1:     c.obs.lat[tierL1].summary(now.UnixNano()),
			L2:     c.obs.lat[tierL2].summary(now.UnixNano()),
			Loader: c.obs.lat[tierLoader].summary(now.UnixNano()),
		},
		Nodes: []RedisNode{},
	}
	r.HitRatio = hitRatios(&r.Counters.Requests)
	if c.l1 != nil {
		r.L1MaxBytes = c.opts.L1.MaxBytes
	}
	if rs := c.redisStore(); rs != nil {
		ctx, cancel := context.WithTimeout(ctx, reportTimeout)
		defer cancel()
		nodes := rs.Nodes(ctx)
		c.noteMaster(rs, nodes)
		for _, n := range nodes {
			r.Nodes = append(r.Nodes, c.redisNode(n))
		}
	}
	r.MasterChanges = c.obs.failovers.Load()
	c.obs.warmMu.Lock()
	r.Warming = append([]WarmRun{}, c.obs.warm...)
	c.obs.warmMu.Unlock()
	if co, ok := c.Coherence(); ok {
		r.Coherence = &co
	}
	return r, nil
}

func hitRatios(q *Requests) HitRatios {
	var h HitRatios
	all, l1, l2 := q.All(), q.Total(ResultHitL1), q.Total(ResultHitL2)
	if all == 0 {
		return h
	}
	h.L1 = float64(l1) / float64(all)
	if all > l1 {
		h.L2 = float64(l2) / float64(all-l1)
	}
	h.Overall = float64(l1+l2) / float64(all)
	return h
}

// redisStore returns the Redis L2, or nil on the in-memory store.
func (c *Cache) redisStore() *redisstore.Store {
	rs, _ := c.guard.s.(*redisstore.Store)
	return rs
}

// topology names the L2 deployment.
func (c *Cache) topology() string {
	if rs := c.redisStore(); rs != nil {
		return rs.Mode()
	}
	return "memory"
}

func (c *Cache) redisNode(n redisstore.NodeInfo) RedisNode {
	rn := RedisNode{
		Addr: n.Addr, Role: n.Role, Up: n.Err == nil, Ping: n.Ping,
		UsedMemory: n.UsedMemory, MaxMemory: n.MaxMemory, MaxMemPolicy: n.MaxMemoryPolicy,
		EvictedKeys: n.EvictedKeys, KeyspaceHits: n.KeyspaceHits, KeyspaceMisses: n.KeyspaceMisses,
		Clients: n.ConnectedClients, Replicas: n.ConnectedReplicas, OpsPerSec: n.OpsPerSec,
	}
	if len(n.Commands) > 0 {
		rn.Commands = make(map[string]CommandStat, len(n.Commands))
		for name, cs := range n.Commands {
			rn.Commands[name] = CommandStat(cs)
		}
	}
	if n.Err != nil {
		rn.Error = redactErr(n.Err, c.opts.Redis)
	}
	return rn
}

// noteMaster counts a change of the master's replication ID: a promoted
// replica takes a new one. Only standalone and Sentinel have one master.
func (c *Cache) noteMaster(rs *redisstore.Store, nodes []redisstore.NodeInfo) {
	if rs.Mode() == "cluster" || len(nodes) != 1 || nodes[0].Role != "master" || nodes[0].ReplID == "" {
		return
	}
	c.obs.masterMu.Lock()
	defer c.obs.masterMu.Unlock()
	if c.obs.masterID != "" && c.obs.masterID != nodes[0].ReplID {
		c.obs.failovers.Add(1)
		level := slog.LevelWarn
		if rs.Mode() == "sentinel" {
			// The store logged the failover when it followed it.
			level = slog.LevelDebug
		}
		c.logger.Log(context.Background(), level, "tiercache: the Redis master changed", "addr", nodes[0].Addr)
	}
	c.obs.masterID = nodes[0].ReplID
}

// redactErr returns err's text without the Redis passwords of r, for
// reports that leave the process.
func redactErr(err error, r RedisOptions) string {
	msg := err.Error()
	secrets := []string{r.Password, r.SentinelPassword}
	if r.URL != "" {
		if i := strings.Index(r.URL, "://"); i >= 0 {
			if j := strings.LastIndex(r.URL, "@"); j > i {
				userinfo := r.URL[i+3 : j]
				if _, pw, ok := strings.Cut(userinfo, ":"); ok {
					// Drivers may repeat it decoded: "p%40ss" as "p@ss".
					secrets = append(secrets, pw)
					if dec, err := url.PathUnescape(pw); err == nil && dec != pw {
						secrets = append(secrets, dec)
					}
				}
			}
		}
		msg = strings.ReplaceAll(msg, r.URL, redactURL(r.URL))
	}
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	return msg
}

// MarshalJSON writes Stats with snake_case names, and Requests as
// {"get": {"hit_l1": 3, ...}, ...}.
func (s Counters) MarshalJSON() ([]byte, error) {
	req := make(map[string]map[string]uint64, NumOps)
	for op := range NumOps {
		m := make(map[string]uint64, NumResults)
		for r := range NumResults {
			m[r.String()] = s.Requests[op][r]
		}
		req[op.String()] = m
	}
	return json.Marshal(struct {
		HitsL1        uint64                       `json:"hits_l1"`
		HitsL2        uint64                       `json:"hits_l2"`
		Misses        uint64                       `json:"misses"`
		Errors        uint64                       `json:"errors"`
		Corrupt       uint64                       `json:"corrupt"`
		Loads         uint64                       `json:"loads"`
		LoadErrors    uint64                       `json:"load_errors"`
		Invalidations uint64                       `json:"invalidations_received"`
		LinkResets    uint64                       `json:"link_resets"`
		LinkSuspects  uint64                       `json:"link_suspects"`
		LinkResumes   uint64                       `json:"link_resumes"`
		TagBumps      uint64                       `json:"tag_bumps"`
		StaleServed   uint64                       `json:"stale_served"`
		EagerRefresh  uint64                       `json:"eager_refreshes"`
		LockWaits     uint64                       `json:"lock_waits"`
		Breaker       BreakerState                 `json:"breaker"`
		BreakerOpen   float64                      `json:"breaker_open_seconds"`
		BreakerRefuse uint64                       `json:"breaker_refused"`
		QueueLength   int                          `json:"queue_length"`
		QueueOverflow uint64                       `json:"queue_overflows"`
		Replayed      uint64                       `json:"replayed"`
		ReplayFailed  uint64                       `json:"replay_failed"`
		L1Entries     int                          `json:"l1_entries"`
		L1Bytes       uint64                       `json:"l1_bytes"`
		L1Evictions   uint64                       `json:"l1_evictions"`
		Requests      map[string]map[string]uint64 `json:"requests"`
	}{
		s.HitsL1, s.HitsL2, s.Misses, s.Errors, s.Corrupt, s.Loads, s.LoadErrors,
		s.Invalidations, s.LinkResets, s.LinkSuspects, s.LinkResumes, s.TagBumps, s.StaleServed, s.EagerRefresh,
		s.LockWaits, s.Breaker, s.BreakerOpenFor.Seconds(), s.BreakerRefused, s.QueueLength, s.QueueOverflow, s.Replayed,
		s.ReplayFailed, s.L1Entries, s.L1Bytes, s.L1Evictions, req,
	})
}
