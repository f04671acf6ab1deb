package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/tiercache/tiercache/internal/redisproc"
)

// Sentinel is a sentinel group: one master, two replicas and three
// sentinels (quorum 2) that monitor the master as MasterName.
//
// Failover updates Master and Replicas; they are not safe to read while
// Failover runs in another goroutine.
type Sentinel struct {
	// MasterName is the name the sentinels monitor the master under:
	// "mymaster".
	MasterName string
	// Master is the server that is master, as of start or the last
	// Failover.
	Master *Server
	// Replicas are the other two data servers.
	Replicas []*Server
	// Sentinels are the three redis-sentinel processes.
	Sentinels []*Server
}

// StartSentinel starts a sentinel group and returns once the replicas
// have synced and every sentinel knows both replicas and the two other
// sentinels, so that a failover can start at once. The caller must Close
// the group.
func StartSentinel() (*Sentinel, error) {
	st := &Sentinel{MasterName: "mymaster"}
	ok := false
	defer func() {
		if !ok {
			st.Close()
		}
	}()
	var err error
	if st.Master, err = StartStandalone(); err != nil {
		return nil, err
	}
	for range 2 {
		r, err := StartStandalone("--replicaof", "127.0.0.1", strconv.Itoa(st.Master.Port))
		if err != nil {
			return nil, err
		}
		st.Replicas = append(st.Replicas, r)
	}
	if err := waitReplicated(st.Master, st.Replicas); err != nil {
		return nil, err
	}
	for range 3 {
		sn, err := start(launch{bin: "redis-sentinel", args: st.sentinelConfig})
		if err != nil {
			return nil, err
		}
		st.Sentinels = append(st.Sentinels, sn)
	}
	for _, sn := range st.Sentinels {
		if err := st.waitSentinelReady(sn); err != nil {
			return nil, err
		}
	}
	ok = true
	return st, nil
}

// NewSentinel is StartSentinel for a test: it calls Require, fails the
// test when the group does not start, and closes it in t.Cleanup.
func NewSentinel(t testing.TB) *Sentinel {
	t.Helper()
	Require(t)
	st, err := StartSentinel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// sentinelConfig writes the sentinel's config file, which the sentinel
// rewrites as it learns the topology, and returns its command line.
func (st *Sentinel) sentinelConfig(dir string, port int) ([]string, error) {
	conf := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %q
daemonize no
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %[3]s 1000
sentinel failover-timeout %[3]s 5000
sentinel parallel-syncs %[3]s 1
`, port, dir, st.MasterName, st.Master.Port)
	path := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return []string{path}, nil
}

// waitReplicated waits until every replica's link to master is up and the
// master lists them all.
func waitReplicated(master *Server, replicas []*Server) error {
	return poll(topologyTimeout, master.Addr+": wait for replicas", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), pollTimeout)
		defer cancel()
		for _, r := range replicas {
			info, err := r.InfoContext(ctx, "replication")
			if err != nil {
				return err
			}
			if info["master_link_status"] != "up" {
				return fmt.Errorf("replica %s: master_link_status:%s", r.Addr, info["master_link_status"])
			}
		}
		info, err := master.InfoContext(ctx, "replication")
		if err != nil {
			return err
		}
		if want := strconv.Itoa(len(replicas)); info["connected_slaves"] != want {
			return fmt.Errorf("master %s: connected_slaves:%s, want %s", master.Addr, info["connected_slaves"], want)
		}
		return nil
	})
}

// waitSentinelReady waits until sn sees a healthy master, both replicas
// and the two other sentinels. Sentinels find each other through hello
// messages, published every 2 s.
func (st *Sentinel) waitSentinelReady(sn *Server) error {
	others := strconv.Itoa(len(st.Sentinels) - 1)
	replicas := strconv.Itoa(len(st.Replicas))
	return poll(topologyTimeout, "sentinel "+sn.Addr+": wait for topology", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), pollTimeout)
		defer cancel()
		m, err := sentinelMap(ctx, sn, "MASTER", st.MasterName)
		if err != nil {
			return err
		}
		if m["flags"] != "master" || m["num-slaves"] != replicas || m["num-other-sentinels"] != others {
			return fmt.Errorf("master flags=%s num-slaves=%s num-other-sentinels=%s",
				m["flags"], m["num-slaves"], m["num-other-sentinels"])
		}
		if err := sentinelList(ctx, sn, "REPLICAS", st.MasterName, func(r map[string]string) error {
			if r["flags"] != "slave" || r["master-link-status"] != "ok" {
				return fmt.Errorf("replica %s:%s flags=%s master-link-status=%s",
					r["ip"], r["port"], r["flags"], r["master-link-status"])
			}
			return nil
		}); err != nil {
			return err
		}
		return sentinelList(ctx, sn, "SENTINELS", st.MasterName, func(s map[string]string) error {
			if s["flags"] != "sentinel" {
				return fmt.Errorf("sentinel %s:%s flags=%s", s["ip"], s["port"], s["flags"])
			}
			return nil
		})
	})
}

// sentinelMap runs "SENTINEL <sub> <master>" and returns its field map.
func sentinelMap(ctx context.Context, sn *Server, sub, master string) (map[string]string, error) {
	reply, err := sn.DoContext(ctx, "SENTINEL", sub, master)
	if err != nil {
		return nil, err
	}
	return fieldMap(reply)
}

// sentinelList runs "SENTINEL <sub> <master>" and checks each entry.
func sentinelList(ctx context.Context, sn *Server, sub, master string, check func(map[string]string) error) error {
	reply, err := sn.DoContext(ctx, "SENTINEL", sub, master)
	if err != nil {
		return err
	}
	list, ok := reply.([]any)
	if !ok {
		return fmt.Errorf("SENTINEL %s answered %T", sub, reply)
	}
	for _, e := range list {
		m, err := fieldMap(e)
		if err != nil {
			return err
		}
		if err := check(m); err != nil {
			return err
		}
	}
	return nil
}

// fieldMap turns a flat [field, value, ...] array reply into a map.
func fieldMap(reply any) (map[string]string, error) {
	arr, ok := reply.([]any)
	if !ok || len(arr)%2 != 0 {
		return nil, fmt.Errorf("redistest: want a field/value array, got %v", reply)
	}
	m := make(map[string]string, len(arr)/2)
	for i := 0; i < len(arr); i += 2 {
		k, _ := arr[i].(string)
		v, _ := arr[i+1].(string)
		m[k] = v
	}
	return m, nil
}

// SentinelAddrs returns the addresses of the three sentinels.
func (st *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(st.Sentinels))
	for i, sn := range st.Sentinels {
		addrs[i] = sn.Addr
	}
	return addrs
}

// MasterAddr asks the first sentinel that answers for the master's
// address (SENTINEL get-master-addr-by-name).
func (st *Sentinel) MasterAddr() (string, error) {
	var lastErr error
	for _, sn := range st.Sentinels {
		if !sn.live() {
			continue
		}
		addr, err := st.masterAddrFrom(sn)
		if err == nil {
			return addr, nil
		}
		lastErr = err
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("no sentinel is running")
	}
	return "", fmt.Errorf("redistest: master address of %s: %w", st.MasterName, lastErr)
}

func (st *Sentinel) masterAddrFrom(sn *Server) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), pollTimeout)
	defer cancel()
	reply, err := sn.DoContext(ctx, "SENTINEL", "get-master-addr-by-name", st.MasterName)
	if err != nil {
		return "", err
	}
	arr, ok := reply.([]any)
	if !ok || len(arr) != 2 {
		return "", fmt.Errorf("sentinel %s answered %v", sn.Addr, reply)
	}
	host, _ := arr[0].(string)
	port, _ := arr[1].(string)
	return net.JoinHostPort(host, port), nil
}

// Failover makes a sentinel promote a replica (SENTINEL FAILOVER) and
// waits until every running sentinel names the new master and that server
// reports role:master. It then updates Master and Replicas; the old master
// is listed with the replicas, although the sentinels may take several
// seconds more to turn it into one.
func (st *Sentinel) Failover() error {
	old, err := st.MasterAddr()
	if err != nil {
		return err
	}
	// NOGOODSLAVE or INPROG may clear up, so the request is retried.
	err = poll(topologyTimeout, "SENTINEL FAILOVER", func() error {
		for _, sn := range st.Sentinels {
			if sn.live() {
				_, err := sn.Do("SENTINEL", "FAILOVER", st.MasterName)
				return err
			}
		}
		return fmt.Errorf("%w: no sentinel is running", errGiveUp)
	})
	if err != nil {
		return err
	}
	var promoted *Server
	err = poll(topologyTimeout, "wait for the new master", func() error {
		addr, err := st.agreedMaster()
		if err != nil {
			return err
		}
		if addr == old {
			return fmt.Errorf("master is still %s", old)
		}
		promoted = st.serverAt(addr)
		if promoted == nil {
			return fmt.Errorf("%w: new master %s is not in the group", errGiveUp, addr)
		}
		ctx, cancel := context.WithTimeout(context.Background(), pollTimeout)
		defer cancel()
		info, err := promoted.InfoContext(ctx, "replication")
		if err != nil {
			return err
		}
		if info["role"] != "master" {
			return fmt.Errorf("%s: role:%s", addr, info["role"])
		}
		return nil
	})
	if err != nil {
		return err
	}
	oldMaster := st.Master
	st.Master = promoted
	if i := slices.Index(st.Replicas, promoted); i >= 0 {
		st.Replicas[i] = oldMaster
	}
	return nil
}

// agreedMaster returns the master address that every running sentinel
// reports, or an error while they disagree.
func (st *Sentinel) agreedMaster() (string, error) {
	return redisproc.AgreedMaster(context.Background(), st.Sentinels, (*Server).live,
		func(_ context.Context, sn *Server) (string, error) { return st.masterAddrFrom(sn) })
}

// serverAt returns the data server listening on addr, or nil.
func (st *Sentinel) serverAt(addr string) *Server {
	for _, s := range append([]*Server{st.Master}, st.Replicas...) {
		if s.Addr == addr {
			return s
		}
	}
	return nil
}

// Close stops every process of the group and removes their directories.
// It may be called on a group that failed to start half way.
func (st *Sentinel) Close() {
	for _, s := range st.Sentinels {
		s.Close()
	}
	for _, s := range st.Replicas {
		s.Close()
	}
	if st.Master != nil {
		st.Master.Close()
	}
}
