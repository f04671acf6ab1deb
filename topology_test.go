package tiercache

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/tiercache/tiercache/internal/redistest"
)

// shared are the Redis topologies of this package's tests.
var shared redistest.Topologies

func TestMain(m *testing.M) {
	code := m.Run()
	if p := shared.Started().Production; p != nil {
		if err := checkNoDenials(p); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	shared.Close()
	os.Exit(code)
}

// checkNoDenials fails the run when the tests on the production topology
// made the server refuse the tiercache user anything: a command its ACL
// does not grant, a key outside its namespace or its password. Test
// set-up that needs more goes through the admin (rawDo).
func checkNoDenials(p *redistest.Production) error {
	denied, err := p.ACLDenials(p.Username)
	if err != nil {
		return fmt.Errorf("production topology: %w", err)
	}
	if len(denied) > 0 {
		return fmt.Errorf("production topology: the ACL refused user %s:\n\t%s", p.Username, strings.Join(denied, "\n\t"))
	}
	return nil
}

// topologies are the subtest names every behaviour test runs under.
// "production" is a master and a replica started from
// deploy/redis-production.conf, which the cache reaches as the
// least-privileged ACL user of deploy/acl.conf.
var topologies = []string{"memory", "standalone", "sentinel", "cluster", "production"}

// redisFor returns RedisOptions for a shared topology ("memory": zero).
func redisFor(t testing.TB, name string) RedisOptions {
	t.Helper()
	if name == "memory" {
		return RedisOptions{}
	}
	tp := shared.Get(t, name)
	return RedisOptions{Addrs: tp.Addrs, Cluster: tp.Cluster, SentinelMaster: tp.SentinelMaster,
		SentinelAddrs: tp.SentinelAddrs, Username: tp.Username, Password: tp.Password}
}

// eachTopology runs fn as the subtests memory, standalone, sentinel,
// cluster and production.
func eachTopology(t *testing.T, fn func(t *testing.T, topo string)) {
	t.Helper()
	for _, name := range topologies {
		t.Run(name, func(t *testing.T) { fn(t, name) })
	}
}

// testNamespace is unique per call, so tests sharing a Redis never see
// each other's keys.
func testNamespace(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	r := strings.NewReplacer("/", ".", " ", "_", "{", "", "}", "")
	return r.Replace(t.Name()) + "." + hex.EncodeToString(b[:])
}

// namespaceFor is testNamespace for a cache on topology topo. On
// production it is under "tiercache:", so that the cache's keys
// (namespace:key) and tag versions (namespace#t:tag) match the tiercache
// user's key pattern ~tiercache:*.
func namespaceFor(t testing.TB, topo string) string {
	if topo == "production" {
		return "tiercache:" + testNamespace(t)
	}
	return testNamespace(t)
}

// newCache builds a cache on topology topo, with the topology's
// credentials (on production, those of the ACL user tiercache); mod
// adjusts the options. The cache is closed when the test ends.
func newCache(t testing.TB, topo string, mod ...func(*Options)) *Cache {
	t.Helper()
	o := Options{Namespace: namespaceFor(t, topo), Redis: redisFor(t, topo)}
	for _, m := range mod {
		m(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// shareMemory makes c use other's in-memory L2, as a second instance of
// the same process would: writes through either notify the other.
func (c *Cache) shareMemory(other *Cache) {
	_ = c.store.Close()
	c.mem = other.mem
	c.store = other.mem.View(c.onInvalidation)
}
