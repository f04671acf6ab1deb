package redistest

import (
	"sync"
	"testing"
)

// Topologies are the Redis topologies that the tests of one package share,
// since a cluster takes seconds to start; each test isolates itself with
// its own namespace. A topology starts on first use; TestMain calls Close
// after m.Run. The zero value is ready, and its methods are safe for
// concurrent use.
type Topologies struct {
	mu      sync.Mutex
	started Started
}

// Started are the topologies that have started, nil for the others.
type Started struct {
	Standalone *Server
	Sentinel   *Sentinel
	Cluster    *Cluster
	Production *Production
}

// Topology is a started topology as a client sees it: what to connect to
// and how, and the servers behind it.
type Topology struct {
	// Name is "standalone", "sentinel", "cluster" or "production".
	Name string
	// Addrs are the addresses to connect to: the server, the cluster's
	// nodes or production's master; nil for sentinel.
	Addrs []string
	// Cluster is set for the cluster.
	Cluster bool
	// SentinelMaster and SentinelAddrs are set for sentinel.
	SentinelMaster string
	SentinelAddrs  []string
	// Username and Password are production's least-privileged ACL user;
	// blank elsewhere.
	Username, Password string
	// Do runs a command as an operator would, outside the client under
	// test: on the master (sentinel, production), routed by slot (cluster),
	// and as the admin on production, beyond the ACL user's rights.
	Do func(args ...string) (any, error)
	// Masters returns the servers holding data now.
	Masters func() []*Server
}

// Get returns the topology called name, starting it on first use. It
// calls Require, and fails t when name is unknown or the topology does not
// start.
func (ts *Topologies) Get(t testing.TB, name string) Topology {
	t.Helper()
	Require(t)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	switch name {
	case "standalone":
		s := startOnce(t, name, &ts.started.Standalone, func() (*Server, error) { return StartStandalone() })
		return Topology{Name: name, Addrs: []string{s.Addr}, Do: s.Do,
			Masters: func() []*Server { return []*Server{s} }}
	case "sentinel":
		st := startOnce(t, name, &ts.started.Sentinel, StartSentinel)
		return Topology{Name: name, SentinelMaster: st.MasterName, SentinelAddrs: st.SentinelAddrs(),
			Do:      func(args ...string) (any, error) { return st.Master.Do(args...) },
			Masters: func() []*Server { return []*Server{st.Master} }}
	case "cluster":
		c := startOnce(t, name, &ts.started.Cluster, StartCluster)
		return Topology{Name: name, Addrs: c.Addrs(), Cluster: true, Do: c.Do,
			Masters: func() []*Server { return c.Masters }}
	case "production":
		p := startOnce(t, name, &ts.started.Production, StartProduction)
		return Topology{Name: name, Addrs: []string{p.Addr}, Username: p.Username, Password: p.Password,
			Do:      p.Master.Do,
			Masters: func() []*Server { return []*Server{p.Master} }}
	}
	t.Fatalf("unknown topology %q", name)
	return Topology{}
}

// startOnce starts a topology into *p unless it has started.
func startOnce[T any](t testing.TB, name string, p **T, start func() (*T, error)) *T {
	t.Helper()
	if *p == nil {
		v, err := start()
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		*p = v
	}
	return *p
}

// Started returns the topologies that have started, such as production
// for TestMain to check before Close.
func (ts *Topologies) Started() Started {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.started
}

// Close stops every topology that has started.
func (ts *Topologies) Close() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if s := ts.started.Standalone; s != nil {
		s.Close()
	}
	if st := ts.started.Sentinel; st != nil {
		st.Close()
	}
	if c := ts.started.Cluster; c != nil {
		c.Close()
	}
	if p := ts.started.Production; p != nil {
		p.Close()
	}
	ts.started = Started{}
}
