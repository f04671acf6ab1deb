package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/tiercache/tiercache/internal/redisproc"
)

// topologyTimeout bounds the wait for replicas, sentinels or cluster nodes
// to agree on a topology.
const topologyTimeout = 60 * time.Second

// startSentinel starts the master, two replicas and three sentinels, and
// waits until every sentinel knows both replicas and the other sentinels.
func (l *Lab) startSentinel(ctx context.Context) error {
	master, err := l.startData(ctx, "master", false)
	if err != nil {
		return err
	}
	l.Data = append(l.Data, master)
	for i := 1; i <= 2; i++ {
		r, err := l.startData(ctx, fmt.Sprintf("replica-%d", i), false,
			set("replicaof", "127.0.0.1", strconv.Itoa(master.Port)))
		if err != nil {
			return err
		}
		l.Data = append(l.Data, r)
	}
	if err := waitReplicated(ctx, master, l.Data[1:]); err != nil {
		return err
	}
	quorum := monitorQuorum(l.files.SentinelConf)
	for i := 1; i <= 3; i++ {
		sn, err := startNode(ctx, l.Dir, fmt.Sprintf("sentinel-%d", i), "redis-sentinel", false, "", l.passwords[secretSentinels],
			func(dir string, port int) string {
				return renderConfig(l.files.SentinelConf, append(l.common(dir, port),
					set("sentinel monitor "+MasterName, "127.0.0.1", strconv.Itoa(master.Port), quorum),
					set("sentinel auth-pass "+MasterName, l.passwords[userSentinel]),
					set("requirepass", l.passwords[secretSentinels])))
			})
		if err != nil {
			return err
		}
		l.Sentinels = append(l.Sentinels, sn)
	}
	for _, sn := range l.Sentinels {
		if err := l.waitSentinelReady(ctx, sn); err != nil {
			return err
		}
	}
	return nil
}

// monitorQuorum returns the quorum of the "sentinel monitor" line of a
// sentinel.conf, or "2" when it has none.
func monitorQuorum(conf string) string {
	for line := range strings.Lines(conf) {
		f := strings.Fields(line)
		if len(f) == 6 && f[0] == "sentinel" && strings.EqualFold(f[1], "monitor") && f[2] == MasterName {
			return f[5]
		}
	}
	return "2"
}

// waitReplicated waits until every replica's link to master is up and the
// master lists them all.
func waitReplicated(ctx context.Context, master *Node, replicas []*Node) error {
	ctx, cancel := context.WithTimeout(ctx, topologyTimeout)
	defer cancel()
	return poll(ctx, master.Addr+": wait for replicas", func(ctx context.Context) error {
		for _, r := range replicas {
			info, err := r.Info(ctx, "replication")
			if err != nil {
				return err
			}
			if info["master_link_status"] != "up" {
				return fmt.Errorf("%s: master_link_status:%s", r.Name, info["master_link_status"])
			}
		}
		info, err := master.Info(ctx, "replication")
		if err != nil {
			return err
		}
		if want := strconv.Itoa(len(replicas)); info["connected_slaves"] != want {
			return fmt.Errorf("master: connected_slaves:%s, want %s", info["connected_slaves"], want)
		}
		// With min-replicas-to-write, writes wait for a replica the master
		// counts as good.
		if good, ok := info["min_slaves_good_slaves"]; ok && good == "0" {
			return errors.New("master: min_slaves_good_slaves:0")
		}
		return nil
	})
}

// waitSentinelReady waits until sn sees a healthy master, the replicas and
// the other sentinels. Sentinels find each other through hello messages,
// published every 2 s.
func (l *Lab) waitSentinelReady(ctx context.Context, sn *Node) error {
	ctx, cancel := context.WithTimeout(ctx, topologyTimeout)
	defer cancel()
	replicas := strconv.Itoa(len(l.Data) - 1)
	others := strconv.Itoa(len(l.Sentinels) - 1)
	return poll(ctx, sn.Name+": wait for the topology", func(ctx context.Context) error {
		m, err := sn.Do(ctx, "SENTINEL", "MASTER", MasterName).AsStrMap()
		if err != nil {
			return err
		}
		if m["flags"] != "master" || m["num-slaves"] != replicas || m["num-other-sentinels"] != others {
			return fmt.Errorf("flags=%s num-slaves=%s num-other-sentinels=%s", m["flags"], m["num-slaves"], m["num-other-sentinels"])
		}
		rs, err := sn.Do(ctx, "SENTINEL", "REPLICAS", MasterName).ToArray()
		if err != nil {
			return err
		}
		for _, r := range rs {
			rm, err := r.AsStrMap()
			if err != nil {
				return err
			}
			if rm["flags"] != "slave" || rm["master-link-status"] != "ok" {
				return fmt.Errorf("replica %s:%s flags=%s master-link-status=%s", rm["ip"], rm["port"], rm["flags"], rm["master-link-status"])
			}
		}
		return nil
	})
}

// MasterAddr returns the master's address as the first running sentinel
// reports it. It fails on a Cluster lab.
func (l *Lab) MasterAddr(ctx context.Context) (string, error) {
	if l.Topology != Sentinel {
		return "", fmt.Errorf("lab: MasterAddr: a %s lab has no sentinels", l.Topology)
	}
	var lastErr error = fmt.Errorf("lab: no sentinel is running")
	for _, sn := range l.Sentinels {
		if !sn.Running() {
			continue
		}
		addr, err := masterAddrFrom(ctx, sn)
		if err == nil {
			return addr, nil
		}
		lastErr = err
	}
	return "", lastErr
}

func masterAddrFrom(ctx context.Context, sn *Node) (string, error) {
	hp, err := sn.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MasterName).AsStrSlice()
	if err != nil {
		return "", fmt.Errorf("lab: %s: %w", sn.Name, err)
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("lab: %s: master address %v", sn.Name, hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// agreedMaster returns the master address that every running sentinel
// reports, or an error while they disagree.
func (l *Lab) agreedMaster(ctx context.Context) (string, error) {
	return redisproc.AgreedMaster(ctx, l.Sentinels, (*Node).Running, masterAddrFrom)
}

// Node returns the node listening on addr, or nil.
func (l *Lab) Node(addr string) *Node {
	for _, n := range l.Nodes() {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// WaitNewMaster waits until every running sentinel names a master other
// than old and that node reports role:master, and returns it. A drill
// calls it after killing or pausing the master.
func (l *Lab) WaitNewMaster(ctx context.Context, old string) (*Node, error) {
	ctx, cancel := context.WithTimeout(ctx, topologyTimeout)
	defer cancel()
	var promoted *Node
	err := poll(ctx, "wait for a new master", func(ctx context.Context) error {
		addr, err := l.agreedMaster(ctx)
		if err != nil {
			return err
		}
		if addr == old {
			return fmt.Errorf("master is still %s", old)
		}
		if promoted = l.Node(addr); promoted == nil {
			return fmt.Errorf("%w: new master %s is not in the lab", errGiveUp, addr)
		}
		info, err := promoted.Info(ctx, "replication")
		if err != nil {
			return err
		}
		if info["role"] != "master" {
			return fmt.Errorf("%s: role:%s", promoted.Name, info["role"])
		}
		return nil
	})
	return promoted, err
}

// Failover forces a failover and returns the new master once it serves:
// SENTINEL FAILOVER on a Sentinel lab, CLUSTER FAILOVER on the first
// replica on a Cluster lab.
func (l *Lab) Failover(ctx context.Context) (*Node, error) {
	if l.Topology == Cluster {
		return l.clusterFailover(ctx)
	}
	old, err := l.MasterAddr(ctx)
	if err != nil {
		return nil, err
	}
	fctx, cancel := context.WithTimeout(ctx, topologyTimeout)
	defer cancel()
	// NOGOODSLAVE and INPROG clear up, so the request is retried.
	err = poll(fctx, "SENTINEL FAILOVER", func(ctx context.Context) error {
		for _, sn := range l.Sentinels {
			if sn.Running() {
				return sn.Do(ctx, "SENTINEL", "FAILOVER", MasterName).Error()
			}
		}
		return fmt.Errorf("%w: no sentinel is running", errGiveUp)
	})
	if err != nil {
		return nil, err
	}
	return l.WaitNewMaster(ctx, old)
}

// WaitReplica waits until n runs as a replica whose link to its master is
// up: a former master rejoining after a failover.
func (l *Lab) WaitReplica(ctx context.Context, n *Node) error {
	ctx, cancel := context.WithTimeout(ctx, topologyTimeout)
	defer cancel()
	return poll(ctx, n.Name+": wait to rejoin as a replica", func(ctx context.Context) error {
		info, err := n.Info(ctx, "replication")
		if err != nil {
			return err
		}
		if info["role"] != "slave" || info["master_link_status"] != "up" {
			return fmt.Errorf("role:%s master_link_status:%s", info["role"], info["master_link_status"])
		}
		return nil
	})
}

// WaitSynced waits until every other running data node replicates master
// with its link up and has received everything master had written when
// WaitSynced was called. Replication is asynchronous: a drill that crashes
// a master right after a failover, before the others have resynced with
// it, loses the writes it acknowledged meanwhile.
func (l *Lab) WaitSynced(ctx context.Context, master *Node) error {
	ctx, cancel := context.WithTimeout(ctx, topologyTimeout)
	defer cancel()
	var target int64
	err := poll(ctx, master.Name+": read the replication offset", func(ctx context.Context) error {
		info, err := master.Info(ctx, "replication")
		if err != nil {
			return err
		}
		target, err = strconv.ParseInt(info["master_repl_offset"], 10, 64)
		return err
	})
	if err != nil {
		return err
	}
	port := strconv.Itoa(master.Port)
	return poll(ctx, master.Name+": wait for the replicas to catch up", func(ctx context.Context) error {
		for _, n := range l.Data {
			if n == master || !n.Running() {
				continue
			}
			info, err := n.Info(ctx, "replication")
			if err != nil {
				return err
			}
			if info["role"] != "slave" || info["master_port"] != port || info["master_link_status"] != "up" {
				return fmt.Errorf("%s: role:%s master_port:%s master_link_status:%s",
					n.Name, info["role"], info["master_port"], info["master_link_status"])
			}
			off, err := strconv.ParseInt(info["slave_repl_offset"], 10, 64)
			if err != nil {
				return fmt.Errorf("%s: slave_repl_offset: %w", n.Name, err)
			}
			if off < target {
				return fmt.Errorf("%s: offset %d of %d", n.Name, off, target)
			}
		}
		return nil
	})
}
