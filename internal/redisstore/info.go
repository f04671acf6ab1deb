package redisstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// Introspection for health checks and statistics: PING and INFO on every
// node, the Cluster's own view, and what the sentinels say. Nothing here
// goes through the layer above's breaker: it must report what Redis is
// like now, not what the breaker remembers.

// Mode returns the deployment: "standalone", "sentinel" or "cluster".
// Before a lazy store has connected, it is the one the options ask for
// ("standalone" for a Cluster that is detected rather than required).
func (s *Store) Mode() string {
	if c := s.cli(); c != nil {
		return string(c.Mode())
	}
	return s.mode
}

// NodeInfo is what one node answered to PING and INFO.
type NodeInfo struct {
	Addr string // host:port
	// Role is "master" or "replica"; empty when the node did not answer.
	Role string
	// Ping is the round trip of a PING.
	Ping time.Duration

	UsedMemory        int64 // used_memory, bytes
	MaxMemory         int64 // maxmemory, bytes; 0 means no limit
	MaxMemoryPolicy   string
	EvictedKeys       int64 // evicted_keys
	KeyspaceHits      int64 // keyspace_hits
	KeyspaceMisses    int64 // keyspace_misses
	ConnectedClients  int64 // connected_clients
	ConnectedReplicas int64 // connected_slaves
	OpsPerSec         int64 // instantaneous_ops_per_sec
	// Commands is INFO commandstats, by command name.
	Commands map[string]CommandStat
	ReplID   string
	// MasterLinkUp is a replica's master_link_status; true on masters.
	MasterLinkUp bool

	// Err is why the node did not answer; nil when it did.
	Err error
}

// Nodes sends PING and INFO to every node the client talks to, at once:
// the server on standalone, the master on Sentinel, and every master on
// Cluster, with the replicas the client holds connections to (it may hold
// none: it reads from masters only). The result is sorted by address. A
// node that does not answer has Err set.
func (s *Store) Nodes(ctx context.Context) []NodeInfo {
	c, err := s.conn()
	if err != nil {
		// Not connected yet: one entry that says so.
		return []NodeInfo{{Addr: s.lazy.target, Err: err}}
	}
	nodes := c.Nodes()
	out := make([]NodeInfo, 0, len(nodes))
	for addr := range nodes {
		out = append(out, NodeInfo{Addr: addr})
	}
	slices.SortFunc(out, func(a, b NodeInfo) int { return strings.Compare(a.Addr, b.Addr) })
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() { out[i] = s.nodeInfo(ctx, out[i].Addr, nodes[out[i].Addr]) })
	}
	wg.Wait()
	return out
}

func (s *Store) nodeInfo(ctx context.Context, addr string, c rueidis.Client) NodeInfo {
	n := NodeInfo{Addr: addr}
	start := time.Now()
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		n.Err = s.wrap(err, "ping %s", addr)
		return n
	}
	n.Ping = time.Since(start)
	text, err := c.Do(ctx, c.B().Info().Section("default", "commandstats").Build()).ToString()
	if err != nil {
		n.Err = s.wrap(err, "info %s", addr)
		return n
	}
	info := ParseInfo(text)
	n.Role = info["role"]
	if n.Role == "slave" {
		n.Role = "replica"
	}
	n.UsedMemory = infoInt(info, "used_memory")
	n.MaxMemory = infoInt(info, "maxmemory")
	n.MaxMemoryPolicy = info["maxmemory_policy"]
	n.EvictedKeys = infoInt(info, "evicted_keys")
	n.KeyspaceHits = infoInt(info, "keyspace_hits")
	n.KeyspaceMisses = infoInt(info, "keyspace_misses")
	n.ConnectedClients = infoInt(info, "connected_clients")
	n.ConnectedReplicas = infoInt(info, "connected_slaves")
	n.OpsPerSec = infoInt(info, "instantaneous_ops_per_sec")
	n.Commands = ParseCommandStats(info)
	n.ReplID = info["master_replid"]
	n.MasterLinkUp = n.Role == "master" || info["master_link_status"] == "up"
	return n
}

// ParseInfo turns the text of INFO (or CLUSTER INFO) into a map of its
// fields.
func ParseInfo(text string) map[string]string {
	m := make(map[string]string)
	for line := range strings.Lines(verbatim(text)) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// CommandStat is one line of INFO commandstats.
type CommandStat struct {
	Calls    int64
	Time     time.Duration
	Rejected int64
	Failed   int64
}

// ParseCommandStats reads the cmdstat_<name> lines of parsed INFO
// output ("calls=3,usec=12,usec_per_call=4.00,rejected_calls=0,
// failed_calls=0"). Lines that do not parse are skipped.
func ParseCommandStats(info map[string]string) map[string]CommandStat {
	var out map[string]CommandStat
	for k, v := range info {
		name, ok := strings.CutPrefix(k, "cmdstat_")
		if !ok || name == "" {
			continue
		}
		var cs CommandStat
		for field := range strings.SplitSeq(v, ",") {
			fk, fv, _ := strings.Cut(field, "=")
			n, err := strconv.ParseInt(fv, 10, 64)
			if err != nil {
				continue
			}
			switch fk {
			case "calls":
				cs.Calls = n
			case "usec":
				cs.Time = time.Duration(n) * time.Microsecond
			case "rejected_calls":
				cs.Rejected = n
			case "failed_calls":
				cs.Failed = n
			}
		}
		if out == nil {
			out = make(map[string]CommandStat)
		}
		out[name] = cs
	}
	return out
}

// verbatim drops the "txt:" format prefix of a RESP3 verbatim string,
// which is how Redis answers INFO, CLUSTER INFO and CLUSTER NODES.
func verbatim(s string) string {
	if len(s) >= 4 && s[3] == ':' && (s[:3] == "txt" || s[:3] == "mkd") {
		return s[4:]
	}
	return s
}

func infoInt(m map[string]string, k string) int64 {
	n, _ := strconv.ParseInt(m[k], 10, 64)
	return n
}

// ClusterState is a Cluster's view of itself, as one node reports it.
type ClusterState struct {
	// From is the node that answered.
	From string
	// State is cluster_state: "ok", or "fail" when some slots are not
	// served.
	State string
	// Failing lists the nodes flagged fail or fail? (suspected), as
	// host:port.
	Failing []string
	// Masters and Replicas count the nodes CLUSTER NODES lists.
	Masters, Replicas int
}

// Cluster asks the nodes, in address order, for CLUSTER INFO and CLUSTER
// NODES, and returns the first complete answer. It fails when the store is
// not on a Cluster or no node answers.
func (s *Store) Cluster(ctx context.Context) (ClusterState, error) {
	cli, err := s.conn()
	if err != nil {
		return ClusterState{}, err
	}
	if cli.Mode() != rueidis.ClientModeCluster {
		return ClusterState{}, errors.New("redisstore: not a Redis Cluster")
	}
	nodes := cli.Nodes()
	addrs := make([]string, 0, len(nodes))
	for a := range nodes {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	var errs []error
	for _, addr := range addrs {
		c := nodes[addr]
		info, err := c.Do(ctx, c.B().ClusterInfo().Build()).ToString()
		if err != nil {
			errs = append(errs, s.wrap(err, "cluster info %s", addr))
			continue
		}
		text, err := c.Do(ctx, c.B().ClusterNodes().Build()).ToString()
		if err != nil {
			errs = append(errs, s.wrap(err, "cluster nodes %s", addr))
			continue
		}
		st := parseClusterNodes(verbatim(text))
		st.From = addr
		st.State = ParseInfo(info)["cluster_state"]
		return st, nil
	}
	if len(errs) == 0 {
		return ClusterState{}, errors.New("redisstore: no cluster node known")
	}
	return ClusterState{}, errors.Join(errs...)
}

// parseClusterNodes reads CLUSTER NODES: "<id> <ip:port@bus[,host]>
// <flags> <master> ...", one node per line.
func parseClusterNodes(text string) ClusterState {
	var st ClusterState
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		addr, _, _ = strings.Cut(addr, ",")
		flags := strings.Split(f[2], ",")
		switch {
		case slices.Contains(flags, "master"):
			st.Masters++
		case slices.Contains(flags, "slave"):
			st.Replicas++
		}
		if slices.Contains(flags, "fail") || slices.Contains(flags, "fail?") {
			st.Failing = append(st.Failing, addr)
		}
	}
	slices.Sort(st.Failing)
	return st
}

// SentinelProbe says how to reach the sentinels of a master set.
type SentinelProbe struct {
	Addrs              []string // the sentinels, host:port
	Master             string   // the master set name
	Username, Password string   // the sentinels' credentials; empty means none
	TLS                *tls.Config
	DialTimeout        time.Duration // zero means one second
}

// SentinelView is what one sentinel says about the master set.
type SentinelView struct {
	Addr string // the sentinel
	// MasterAddr is where the sentinel says the master is.
	MasterAddr string
	// Quorum is the number of sentinels that must agree that the master
	// is down before a failover.
	Quorum int
	// MasterDown is true when the sentinel flags the master s_down or
	// o_down.
	MasterDown bool
	// Replicas counts the replicas the sentinel knows; ReplicaAddrs lists
	// them, and FailingReplicas those it flags down or disconnected, as
	// host:port, sorted.
	Replicas        int
	ReplicaAddrs    []string
	FailingReplicas []string
	// Err is why the sentinel did not answer; nil when it did.
	Err error
}

// ProbeSentinels asks every sentinel, at once and each on a connection
// of its own, where the master is and how the master and its replicas
// are. The result has one view per address, in the order of p.Addrs.
// Errors never contain the password.
func ProbeSentinels(ctx context.Context, p SentinelProbe) []SentinelView {
	out := make([]SentinelView, len(p.Addrs))
	var wg sync.WaitGroup
	for i, addr := range p.Addrs {
		wg.Go(func() {
			out[i] = probeSentinel(ctx, p, addr)
			if out[i].Err != nil {
				out[i].Err = scrub(out[i].Err, p.Password)
			}
		})
	}
	wg.Wait()
	return out
}

func probeSentinel(ctx context.Context, p SentinelProbe, addr string) SentinelView {
	v := SentinelView{Addr: addr}
	dial := p.DialTimeout
	if dial <= 0 {
		dial = time.Second
	}
	opt := sentinelOption(addr, p.Username, p.Password, p.TLS)
	opt.Dialer.Timeout = dial
	if dl, ok := ctx.Deadline(); ok {
		opt.Dialer.Timeout = min(dial, max(time.Until(dl), time.Millisecond))
	}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		v.Err = fmt.Errorf("redisstore: sentinel %s: %w", addr, err)
		return v
	}
	defer c.Close()
	cmd := func(args ...string) rueidis.RedisResult {
		return c.Do(ctx, c.B().Arbitrary("SENTINEL").Args(args...).Build())
	}
	hp, err := cmd("GET-MASTER-ADDR-BY-NAME", p.Master).AsStrSlice()
	if err != nil {
		v.Err = fmt.Errorf("redisstore: sentinel %s: get-master-addr-by-name: %w", addr, err)
		return v
	}
	if len(hp) == 2 {
		v.MasterAddr = hp[0] + ":" + hp[1]
	}
	m, err := cmd("MASTER", p.Master).AsStrMap()
	if err != nil {
		v.Err = fmt.Errorf("redisstore: sentinel %s: master: %w", addr, err)
		return v
	}
	v.Quorum, _ = strconv.Atoi(m["quorum"])
	v.MasterDown = hasDownFlag(m["flags"])
	replicas, err := cmd("REPLICAS", p.Master).ToArray()
	if err != nil {
		v.Err = fmt.Errorf("redisstore: sentinel %s: replicas: %w", addr, err)
		return v
	}
	for _, r := range replicas {
		rm, err := r.AsStrMap()
		if err != nil {
			continue
		}
		v.Replicas++
		ra := net.JoinHostPort(rm["ip"], rm["port"])
		v.ReplicaAddrs = append(v.ReplicaAddrs, ra)
		if hasDownFlag(rm["flags"]) || strings.Contains(rm["flags"], "disconnected") || rm["master-link-status"] == "err" {
			v.FailingReplicas = append(v.FailingReplicas, ra)
		}
	}
	slices.Sort(v.ReplicaAddrs)
	slices.Sort(v.FailingReplicas)
	return v
}

func hasDownFlag(flags string) bool {
	for f := range strings.SplitSeq(flags, ",") {
		if f == "s_down" || f == "o_down" {
			return true
		}
	}
	return false
}
