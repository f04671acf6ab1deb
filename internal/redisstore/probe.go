package redisstore

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/l2"
)

// mastersMaxAge is how long Probe trusts the list of Cluster masters it
// read last before it reads CLUSTER SLOTS again.
const mastersMaxAge = time.Second

// masterList is the Cluster's masters as Probe last read them.
type masterList struct {
	mu    sync.Mutex
	addrs []string
	read  time.Time
}

// Probe checks that every node this store reads from answers within ctx:
// a read of key, and on Cluster also a PING to every master. A tracking
// connection that stops answering also stops delivering invalidations,
// without closing, so the layer above probes to learn when its L1 can no
// longer be trusted. A missing key is an answer; any other error means a
// node did not answer in time.
func (s *Store) Probe(ctx context.Context, key string) error {
	if _, err := s.Get(ctx, key); err != nil && !errors.Is(err, l2.ErrNotFound) {
		return err
	}
	return s.pingMasters(ctx)
}

// pingMasters sends PING to every Cluster master at once; it does nothing
// on other deployments. New calls it once, so that the connections exist
// before the first probe: opening one (dial, HELLO, CLIENT TRACKING) may
// take longer than a probe waits, and would read as a node that stopped
// answering.
func (s *Store) pingMasters(ctx context.Context) error {
	cli, err := s.conn()
	if err != nil {
		return err
	}
	if cli.Mode() != rueidis.ClientModeCluster {
		return nil
	}
	masters := s.clusterMasters(ctx, cli)
	nodes := cli.Nodes()
	errs := make([]error, len(masters))
	var wg sync.WaitGroup
	for i, addr := range masters {
		node, ok := nodes[addr]
		if !ok {
			continue // not connected to it yet: nothing to deliver
		}
		wg.Go(func() {
			if err := node.Do(ctx, node.B().Ping().Build()).Error(); err != nil {
				errs[i] = s.wrap(err, "ping %s", addr)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// clusterMasters returns the masters' addresses, read from CLUSTER SLOTS
// at most every mastersMaxAge. When the read fails (a node that does not
// answer may be the one asked), the last list stands.
func (s *Store) clusterMasters(ctx context.Context, cli rueidis.Client) []string {
	m := &s.masters
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.addrs != nil && time.Since(m.read) < mastersMaxAge {
		return m.addrs
	}
	m.read = time.Now()
	slots, err := cli.Do(ctx, cli.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		return m.addrs
	}
	if addrs := slotMasters(slots); len(addrs) > 0 {
		m.addrs = addrs
	}
	return m.addrs
}

// slotMasters returns the distinct master addresses of a CLUSTER SLOTS
// reply, sorted: each entry is [start, end, [host, port, id, ...],
// replicas...].
func slotMasters(slots []rueidis.RedisMessage) []string {
	var addrs []string
	for _, e := range slots {
		parts, err := e.ToArray()
		if err != nil || len(parts) < 3 {
			continue
		}
		node, err := parts[2].ToArray()
		if err != nil || len(node) < 2 {
			continue
		}
		host, err := node[0].ToString()
		if err != nil || host == "" {
			continue
		}
		port, err := node[1].AsInt64()
		if err != nil {
			continue
		}
		addr := net.JoinHostPort(host, strconv.FormatInt(port, 10))
		if !slices.Contains(addrs, addr) {
			addrs = append(addrs, addr)
		}
	}
	slices.Sort(addrs)
	return addrs
}
