package redisstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/internal/l2"
	"github.com/tiercache/tiercache/internal/redistest"
)

// TestMain fails the run when goroutines outlive the tests. It polls
// goleak.Find instead of calling goleak.VerifyTestMain because rueidis ends
// some work in the background after Client.Close, for longer than goleak's
// own retries (about half a second) wait: a cluster client closes its
// connections in goroutines, a closed connection schedules a topology
// refresh after a random delay of up to a second (a standalone client too,
// since it starts as a cluster client), and a cluster client closes the
// connections a topology change dropped five seconds later. All of them end
// by themselves, so nothing is ignored: the check only waits longer.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := waitNoLeaks(15 * time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// waitNoLeaks polls goleak.Find until it reports nothing or timeout passed.
func waitNoLeaks(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := goleak.Find()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitFor bounds every poll in these tests. Failovers and cluster restarts
// take a few seconds; a loaded machine may need more.
const waitFor = 30 * time.Second

// deployment is a running Redis topology, as the tests see it.
type deployment struct {
	// opts holds the connection fields for a Store.
	opts Options
	// masters returns the servers that currently hold the data.
	masters func() []*redistest.Server
	// do runs one command on the master that serves its key.
	do func(args ...string) (any, error)
}

// topologies are the deployments every behaviour test runs against.
var topologies = []struct {
	name  string
	start func(t *testing.T) deployment
}{
	{"standalone", func(t *testing.T) deployment {
		s := redistest.NewStandalone(t)
		return deployment{
			opts:    Options{Addrs: []string{s.Addr}},
			masters: func() []*redistest.Server { return []*redistest.Server{s} },
			do:      s.Do,
		}
	}},
	{"sentinel", func(t *testing.T) deployment {
		st := redistest.NewSentinel(t)
		return deployment{
			opts:    Options{Addrs: st.SentinelAddrs(), SentinelMaster: st.MasterName},
			masters: func() []*redistest.Server { return []*redistest.Server{st.Master} },
			do:      func(args ...string) (any, error) { return st.Master.Do(args...) },
		}
	}},
	{"cluster", func(t *testing.T) deployment {
		c := redistest.NewCluster(t)
		return deployment{
			opts:    Options{Addrs: c.Addrs(), Cluster: true},
			masters: func() []*redistest.Server { return slices.Clone(c.Masters) },
			do:      c.Do,
		}
	}},
}

// newStore returns a Store on d that reports to rec (nil: no listener) and
// closes it when the test ends.
func newStore(t *testing.T, d deployment, rec *recorder) *Store {
	t.Helper()
	opts := d.opts
	if rec != nil {
		opts.OnInvalidation = rec.record
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// recorder collects what a Store reports to OnInvalidation.
type recorder struct {
	mu   sync.Mutex
	keys map[string]int
	all  int
}

func newRecorder() *recorder { return &recorder{keys: map[string]int{}} }

func (r *recorder) record(inv l2.Invalidation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if inv.All {
		r.all++
		return
	}
	for _, k := range inv.Keys {
		r.keys[k]++
	}
}

// key returns how many times key was reported.
func (r *recorder) key(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keys[key]
}

// allCount returns how many times All was reported.
func (r *recorder) allCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.all
}

// eventually polls cond until it holds, failing the test after waitFor.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	redistest.Eventually(t, waitFor, what, cond)
}

// waitKey waits until rec has seen key reported more than n times.
func waitKey(t *testing.T, rec *recorder, key string, n int) {
	t.Helper()
	eventually(t, "invalidation of "+key, func() error {
		if got := rec.key(key); got <= n {
			return errors.New("not reported yet")
		}
		return nil
	})
}

// waitAll waits until rec has seen All reported more than n times.
func waitAll(t *testing.T, rec *recorder, n int) {
	t.Helper()
	eventually(t, "Invalidation{All: true}", func() error {
		if got := rec.allCount(); got <= n {
			return errors.New("not reported yet")
		}
		return nil
	})
}

// mustGet reads key from s and fails unless it holds want.
func mustGet(t *testing.T, s *Store, key, want string) {
	t.Helper()
	got, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if string(got) != want {
		t.Fatalf("Get(%q) = %q, want %q", key, got, want)
	}
}

// mustSet writes key through s.
func mustSet(t *testing.T, s *Store, key, value string, ttl time.Duration) {
	t.Helper()
	if err := s.Set(context.Background(), key, []byte(value), ttl); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

// mustDo runs a raw command on d.
func mustDo(t *testing.T, d deployment, args ...string) any {
	t.Helper()
	reply, err := d.do(args...)
	if err != nil {
		t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
	return reply
}
