package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// Cluster is a six-node Redis Cluster: three masters that share the hash
// slots, each with one replica.
type Cluster struct {
	// Masters are the nodes that were masters when the cluster started.
	Masters []*Server
	// Replicas are the nodes that were replicas when the cluster started.
	Replicas []*Server

	nodes []*Server // all nodes, in start order
}

// StartCluster starts six cluster nodes, joins them with redis-cli
// --cluster create and returns once every node reports cluster_state:ok
// with all slots covered, sees the same three masters and three replicas,
// and every replica has synced. The caller must Close the cluster.
func StartCluster() (*Cluster, error) {
	c := &Cluster{}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	for range 6 {
		n, err := start(launch{bin: "redis-server", bus: true, args: clusterArgs})
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	if err := c.create(); err != nil {
		return nil, err
	}
	if err := poll(topologyTimeout, "wait for the cluster to form", c.formed); err != nil {
		return nil, err
	}
	for _, n := range c.nodes {
		info, err := n.Info("replication")
		if err != nil {
			return nil, err
		}
		if info["role"] == "master" {
			c.Masters = append(c.Masters, n)
		} else {
			c.Replicas = append(c.Replicas, n)
		}
	}
	ok = true
	return c, nil
}

// NewCluster is StartCluster for a test: it calls Require, fails the test
// when the cluster does not start, and closes it in t.Cleanup.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	Require(t)
	c, err := StartCluster()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func clusterArgs(dir string, port int) ([]string, error) {
	return serverArgs(dir, port,
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		// Short enough for failover tests, long enough that a busy
		// machine does not mark a healthy node as failing.
		"--cluster-node-timeout", "2000",
	), nil
}

// create runs redis-cli --cluster create, which assigns the slots, pairs
// each master with a replica and waits for the nodes to meet.
func (c *Cluster) create() error {
	ctx, cancel := context.WithTimeout(context.Background(), topologyTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	cmd := exec.CommandContext(ctx, "redis-cli", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("redistest: redis-cli --cluster create: %w; output:\n%s", err, out)
	}
	return nil
}

// formed checks that every node sees a complete, healthy cluster and that
// every replica has synced.
func (c *Cluster) formed() error {
	ctx, cancel := context.WithTimeout(context.Background(), pollTimeout)
	defer cancel()
	for _, n := range c.nodes {
		if err := checkClusterInfo(ctx, n, len(c.nodes)); err != nil {
			return err
		}
		if err := checkClusterNodes(ctx, n, len(c.nodes)); err != nil {
			return err
		}
		info, err := n.InfoContext(ctx, "replication")
		if err != nil {
			return err
		}
		if info["role"] == "slave" && (info["master_link_status"] != "up" || info["master_sync_in_progress"] != "0") {
			return fmt.Errorf("%s: master_link_status:%s master_sync_in_progress:%s",
				n.Addr, info["master_link_status"], info["master_sync_in_progress"])
		}
	}
	return nil
}

// checkClusterInfo checks CLUSTER INFO: state ok, all slots served and
// every node known.
func checkClusterInfo(ctx context.Context, n *Server, nodes int) error {
	reply, err := n.DoContext(ctx, "CLUSTER", "INFO")
	if err != nil {
		return err
	}
	text, _ := reply.(string)
	info := parseInfo(text)
	if info["cluster_state"] != "ok" ||
		info["cluster_slots_ok"] != strconv.Itoa(clusterSlots) ||
		info["cluster_known_nodes"] != strconv.Itoa(nodes) {
		return fmt.Errorf("%s: cluster_state:%s cluster_slots_ok:%s cluster_known_nodes:%s",
			n.Addr, info["cluster_state"], info["cluster_slots_ok"], info["cluster_known_nodes"])
	}
	return nil
}

// checkClusterState checks that n reports cluster_state:ok.
func checkClusterState(ctx context.Context, n *Server) error {
	reply, err := n.DoContext(ctx, "CLUSTER", "INFO")
	if err != nil {
		return err
	}
	text, _ := reply.(string)
	if st := parseInfo(text)["cluster_state"]; st != "ok" {
		return fmt.Errorf("%s: cluster_state:%s", n.Addr, st)
	}
	return nil
}

// checkClusterAgrees checks that n names the same masters as a peer it
// sees as healthy.
func checkClusterAgrees(ctx context.Context, n *Server) error {
	mine, peers, err := clusterView(ctx, n.Addr, n.password)
	if err != nil {
		return err
	}
	if len(peers) == 0 {
		return fmt.Errorf("%s sees no healthy peer", n.Addr)
	}
	theirs, _, err := clusterView(ctx, peers[0], n.password)
	if err != nil {
		return err
	}
	if !slices.Equal(mine, theirs) {
		return fmt.Errorf("%s names masters %v, its peer %s names %v", n.Addr, mine, peers[0], theirs)
	}
	return nil
}

// clusterView returns, from the CLUSTER NODES of the node at addr, the
// sorted IDs of the masters that serve slots and the addresses of the
// other nodes that it does not see as failing.
func clusterView(ctx context.Context, addr, password string) (masters, peers []string, err error) {
	reply, err := roundTrip(ctx, addr, password, []string{"CLUSTER", "NODES"})
	if err != nil {
		return nil, nil, err
	}
	text, _ := reply.(string)
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		flags := strings.Split(f[2], ",")
		if slices.Contains(flags, "master") && len(f) > 8 {
			masters = append(masters, f[0])
		}
		if slices.Contains(flags, "myself") || slices.ContainsFunc(flags, failing) {
			continue
		}
		peer, _, _ := strings.Cut(f[1], "@")
		peers = append(peers, peer)
	}
	slices.Sort(masters)
	return masters, peers, nil
}

// failing reports whether a CLUSTER NODES flag marks a node as failing or
// not yet joined.
func failing(flag string) bool {
	switch flag {
	case "fail", "fail?", "handshake", "noaddr":
		return true
	}
	return false
}

// checkClusterNodes checks that n sees half the nodes as masters serving
// slots and half as replicas, none of them failing or still in handshake.
func checkClusterNodes(ctx context.Context, n *Server, nodes int) error {
	reply, err := n.DoContext(ctx, "CLUSTER", "NODES")
	if err != nil {
		return err
	}
	text, _ := reply.(string)
	masters, replicas := 0, 0
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		for flag := range strings.SplitSeq(f[2], ",") {
			if failing(flag) {
				return fmt.Errorf("%s sees %s as %s", n.Addr, f[1], f[2])
			}
			switch flag {
			case "master":
				if len(f) > 8 {
					masters++
				}
			case "slave":
				replicas++
			}
		}
		if f[7] != "connected" {
			return fmt.Errorf("%s: link to %s is %s", n.Addr, f[1], f[7])
		}
	}
	if masters != nodes/2 || replicas != nodes/2 {
		return fmt.Errorf("%s sees %d masters with slots and %d replicas", n.Addr, masters, replicas)
	}
	return nil
}

// Addrs returns the addresses of all six nodes, for use as seeds.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

// Nodes returns all six nodes, masters and replicas, in start order.
func (c *Cluster) Nodes() []*Server {
	return append([]*Server(nil), c.nodes...)
}

// WaitOK waits until every running, unpaused node reports
// cluster_state:ok.
func (c *Cluster) WaitOK(timeout time.Duration) error {
	return poll(timeout, "wait for cluster_state:ok", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), pollTimeout)
		defer cancel()
		for _, n := range c.nodes {
			if !n.live() {
				continue
			}
			if err := checkClusterState(ctx, n); err != nil {
				return err
			}
		}
		return nil
	})
}

// Do sends one command to a running node and follows MOVED redirects to
// the node that serves the key, so that a test can read or write a key
// without knowing its slot. ASK redirects, which need ASKING on the same
// connection, are returned as errors.
func (c *Cluster) Do(args ...string) (any, error) {
	addr := ""
	for _, n := range c.nodes {
		if n.live() {
			addr = n.Addr
			break
		}
	}
	if addr == "" {
		return nil, fmt.Errorf("redistest: no cluster node is running")
	}
	ctx, cancel := context.WithTimeout(context.Background(), doTimeout)
	defer cancel()
	for range 5 {
		reply, err := roundTrip(ctx, addr, "", args)
		re, ok := err.(ReplyError)
		if !ok || re.Prefix() != "MOVED" {
			return reply, err
		}
		// MOVED <slot> <host:port>
		f := strings.Fields(string(re))
		if len(f) != 3 {
			return nil, err
		}
		addr = f[2]
	}
	return nil, fmt.Errorf("redistest: %s: too many redirects", strings.Join(args, " "))
}

// Close stops every node and removes their directories. It may be called
// on a cluster that failed to start half way.
func (c *Cluster) Close() {
	for _, n := range c.nodes {
		n.Close()
	}
}
