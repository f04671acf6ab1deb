package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
)

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// startCluster starts six cluster-enabled nodes, joins them with redis-cli
// --cluster create (three masters with one replica each) and waits until
// every node sees all slots served and every replica has synced.
func (l *Lab) startCluster(ctx context.Context) error {
	for i := 1; i <= 6; i++ {
		n, err := l.startData(ctx, fmt.Sprintf("node-%d", i), true,
			set("cluster-enabled", "yes"),
			set("cluster-config-file", "nodes.conf"),
			set("cluster-node-timeout", "5000"))
		if err != nil {
			return err
		}
		l.Data = append(l.Data, n)
	}
	ctx, cancel := context.WithTimeout(ctx, topologyTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs(l.Data)...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes", "--user", UserAdmin)
	cmd := exec.CommandContext(ctx, "redis-cli", args...)
	// The password goes in the environment, out of the process list.
	cmd.Env = append(os.Environ(), "REDISCLI_AUTH="+l.passwords[UserAdmin])
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lab: redis-cli --cluster create: %w; output:\n%s", err, out)
	}
	return poll(ctx, "wait for the cluster to form", l.clusterFormed)
}

// clusterFormed checks that every running node sees a complete, healthy
// cluster and that every replica has synced.
func (l *Lab) clusterFormed(ctx context.Context) error {
	for _, n := range l.Data {
		if !n.Running() {
			continue
		}
		text, err := n.Do(ctx, "CLUSTER", "INFO").ToString()
		if err != nil {
			return err
		}
		ci := parseInfo(text)
		if ci["cluster_state"] != "ok" || ci["cluster_slots_ok"] != strconv.Itoa(clusterSlots) ||
			ci["cluster_known_nodes"] != strconv.Itoa(len(l.Data)) {
			return fmt.Errorf("%s: cluster_state:%s cluster_slots_ok:%s cluster_known_nodes:%s",
				n.Name, ci["cluster_state"], ci["cluster_slots_ok"], ci["cluster_known_nodes"])
		}
		info, err := n.Info(ctx, "replication")
		if err != nil {
			return err
		}
		if info["role"] == "slave" && (info["master_link_status"] != "up" || info["master_sync_in_progress"] != "0") {
			return fmt.Errorf("%s: master_link_status:%s master_sync_in_progress:%s",
				n.Name, info["master_link_status"], info["master_sync_in_progress"])
		}
		// With min-replicas-to-write (the production config), a master
		// refuses writes until it counts a replica as good.
		if good, ok := info["min_slaves_good_slaves"]; ok && info["role"] == "master" && good == "0" {
			return fmt.Errorf("%s: min_slaves_good_slaves:0", n.Name)
		}
	}
	return nil
}

// WaitClusterOK waits until every running node reports cluster_state:ok
// with all slots served, and every running replica has synced.
func (l *Lab) WaitClusterOK(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, topologyTimeout)
	defer cancel()
	return poll(ctx, "wait for cluster_state:ok", l.clusterFormed)
}

// Roles returns the running data nodes that report role:master and those
// that report role:slave.
func (l *Lab) Roles(ctx context.Context) (masters, replicas []*Node, err error) {
	for _, n := range l.Data {
		if !n.Running() {
			continue
		}
		info, err := n.Info(ctx, "replication")
		if err != nil {
			return nil, nil, err
		}
		if info["role"] == "master" {
			masters = append(masters, n)
		} else {
			replicas = append(replicas, n)
		}
	}
	return masters, replicas, nil
}

// clusterFailover makes the first replica take over its master's slots
// with CLUSTER FAILOVER (a coordinated switch, no data lost) and waits
// until it serves as master and the cluster is healthy.
func (l *Lab) clusterFailover(ctx context.Context) (*Node, error) {
	_, replicas, err := l.Roles(ctx)
	if err != nil {
		return nil, err
	}
	if len(replicas) == 0 {
		return nil, fmt.Errorf("lab: no replica is running")
	}
	r := replicas[0]
	if err := r.Do(ctx, "CLUSTER", "FAILOVER").Error(); err != nil {
		return nil, fmt.Errorf("lab: %s: CLUSTER FAILOVER: %w", r.Name, err)
	}
	wctx, cancel := context.WithTimeout(ctx, topologyTimeout)
	defer cancel()
	err = poll(wctx, r.Name+": wait to become master", func(ctx context.Context) error {
		masters, _, err := l.Roles(ctx)
		if err != nil {
			return err
		}
		if !slices.Contains(masters, r) {
			return fmt.Errorf("%s is not master yet", r.Name)
		}
		return l.clusterFormed(ctx)
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}
