package warm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
)

// shared are the Redis topologies of this package's tests (see
// redistest.Topologies). Tests that count Redis commands do not run in
// parallel with others.
var shared redistest.Topologies

// TestMain stops the shared topologies, then fails the run when goroutines
// outlive the tests. It polls goleak.Find because rueidis ends some work
// in the background up to seconds after Client.Close.
func TestMain(m *testing.M) {
	code := m.Run()
	shared.Close()
	if code == 0 {
		deadline := time.Now().Add(15 * time.Second)
		err := goleak.Find()
		for err != nil && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			err = goleak.Find()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// topology is a running L2 as the tests see it.
type topology struct {
	name  string
	redis tiercache.RedisOptions
	// masters are the servers holding data; nil for memory.
	masters func() []*redistest.Server
}

// sets returns the number of SET commands the masters have executed, or
// -1 for the memory store.
func (tp topology) sets(t testing.TB) int64 {
	t.Helper()
	if tp.masters == nil {
		return -1
	}
	var n int64
	for _, m := range tp.masters() {
		info, err := m.Info("commandstats")
		if err != nil {
			t.Fatalf("INFO commandstats: %v", err)
		}
		// cmdstat_set:calls=12,usec=...
		v, ok := info["cmdstat_set"]
		if !ok {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
		c, err := strconv.ParseInt(calls, 10, 64)
		if err != nil {
			t.Fatalf("cmdstat_set %q: %v", v, err)
		}
		n += c
	}
	return n
}

var allTopologies = []string{"memory", "standalone", "sentinel", "cluster"}
var redisTopologies = []string{"standalone", "sentinel", "cluster"}

// topologyFor starts (once) and returns a shared topology.
func topologyFor(t testing.TB, name string) topology {
	t.Helper()
	if name == "memory" {
		return topology{name: name}
	}
	tp := shared.Get(t, name)
	return topology{name: name, masters: tp.Masters, redis: tiercache.RedisOptions{Addrs: tp.Addrs, Cluster: tp.Cluster,
		SentinelMaster: tp.SentinelMaster, SentinelAddrs: tp.SentinelAddrs, Username: tp.Username, Password: tp.Password}}
}

// eachTopology runs fn as one subtest per named topology.
func eachTopology(t *testing.T, names []string, fn func(t *testing.T, tp topology)) {
	t.Helper()
	for _, name := range names {
		t.Run(name, func(t *testing.T) { fn(t, topologyFor(t, name)) })
	}
}

// testNamespace is unique per call.
func testNamespace(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	r := strings.NewReplacer("/", ".", " ", "_", "{", "", "}", "", "#", "")
	return r.Replace(t.Name()) + "." + hex.EncodeToString(b[:])
}

// newCache builds a cache on tp in namespace ns ("" for a fresh one); mod
// adjusts the options. The test closes it.
func newCache(t testing.TB, tp topology, ns string, mod ...func(*tiercache.Options)) *tiercache.Cache {
	t.Helper()
	if ns == "" {
		ns = testNamespace(t)
	}
	o := tiercache.Options{Namespace: ns, Redis: tp.redis, Logger: slog.New(slog.DiscardHandler)}
	for _, m := range mod {
		m(&o)
	}
	c, err := tiercache.New(o)
	if err != nil {
		t.Fatalf("tiercache.New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newRunner builds a runner that the test closes.
func newRunner(t testing.TB, opts Options, strategies ...Strategy) *Runner {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r, err := NewRunner(opts, strategies...)
	if err != nil {
		t.Fatalf("NewRunner: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// eventually polls cond until it returns nil or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after %v", what, err, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitFor bounds polls; cluster and sentinel operations on a loaded
// machine can take seconds.
const waitFor = 30 * time.Second

// seq returns a generator of n items key<prefix>-<i> with value i.
func seq(prefix string, n int) Generator {
	return func(_ context.Context, yield func(Item) error) error {
		for i := range n {
			if err := yield(Item{Key: fmt.Sprintf("%s-%d", prefix, i), Value: i}); err != nil {
				return err
			}
		}
		return nil
	}
}
