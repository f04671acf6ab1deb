package tiercache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redisstore"
	"github.com/tiercache/tiercache/internal/redistest"
)

// trackingFlags returns the CLIENT TRACKINGINFO flags of c's command
// connection to every node it is connected to: with one connection per
// node, the command runs on the connection that carries c's reads.
func trackingFlags(t *testing.T, c *Cache) map[string][]string {
	t.Helper()
	cli := c.guard.s.(*redisstore.Store).Client()
	out := map[string][]string{}
	for addr, node := range cli.Nodes() {
		m, err := node.Do(context.Background(), node.B().ClientTrackinginfo().Build()).AsMap()
		if err != nil {
			t.Fatalf("CLIENT TRACKINGINFO on %s: %v", addr, err)
		}
		fm := m["flags"]
		flags, err := fm.AsStrSlice()
		if err != nil {
			t.Fatalf("CLIENT TRACKINGINFO on %s: flags: %v", addr, err)
		}
		out[addr] = flags
	}
	return out
}

// TestTracking_WithoutL1 shows that a cache without L1 has Redis track
// none of the data keys it reads, only its version keys: its connections
// track in OPTIN mode, and a data key it read, changed by another client,
// brings it no invalidation, while the tag's version key it read does.
// Redis pushes a connection's invalidations in the order of the changes,
// so the data key's (if any) would arrive before the tag's. With L1 on,
// the same steps bring both, which shows the check can fail. The keys and
// the tag share a hash tag, so that on Cluster they live on one node and
// its one connection.
func TestTracking_WithoutL1(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		if topo == "memory" {
			return // no client tracking in process
		}
		for _, l1 := range []bool{false, true} {
			t.Run(fmt.Sprintf("l1=%v", l1), func(t *testing.T) {
				ctx := context.Background()
				reader := newCache(t, topo, func(o *Options) { o.L1.Disabled = !l1 })
				writer := peer(t, reader)
				if err := writer.Set(ctx, "{s}k", 1); err != nil {
					t.Fatal(err)
				}
				if err := writer.Set(ctx, "{s}t", 2, WithTags("{s}")); err != nil {
					t.Fatal(err)
				}
				for _, k := range []string{"{s}k", "{s}t"} {
					if _, err := getInt(reader, k); err != nil {
						t.Fatalf("read %s: %v", k, err)
					}
				}
				if topo != "production" { // its ACL user may not run CLIENT TRACKINGINFO
					for addr, flags := range trackingFlags(t, reader) {
						if !slices.Contains(flags, "on") || slices.Contains(flags, "optin") == l1 {
							t.Errorf("node %s: tracking flags %v; want on, with optin only without L1", addr, flags)
						}
					}
				}
				before := reader.Counters()
				rawDo(t, topo, "DEL", reader.prefix+"{s}k") // another client changes the data key
				if err := writer.InvalidateTags(ctx, "{s}"); err != nil {
					t.Fatal(err)
				}
				eventually(t, 2*time.Second, "the reader sees the tag invalidated", func() error {
					if v, err := getInt(reader, "{s}t"); !errors.Is(err, ErrNotFound) {
						return fmt.Errorf("read %d, %v", v, err)
					}
					return nil
				})
				after := reader.Counters()
				if after.LinkResets != before.LinkResets || after.LinkSuspects != before.LinkSuspects {
					t.Fatalf("the link was reset or suspected during the test (%+v, then %+v): the invalidation may not have come as a push", before, after)
				}
				want := uint64(1) // the tag's version key only
				if l1 {
					want = 2 // the data key, then the tag's version key
				}
				if got := after.Invalidations - before.Invalidations; got != want {
					t.Fatalf("%d invalidations received, want %d", got, want)
				}
			})
		}
	})
}

// TestTracking_TrackingTableWithoutL1 counts the keys in the tracking
// table of a Redis of its own (INFO stats, tracking_total_keys) after a
// cache read 200 keys: without L1, only the namespace's version key is
// tracked; with L1, every key read is.
func TestTracking_TrackingTableWithoutL1(t *testing.T) {
	redistest.Require(t)
	ctx := context.Background()
	const keys = 200
	for _, l1 := range []bool{false, true} {
		t.Run(fmt.Sprintf("l1=%v", l1), func(t *testing.T) {
			srv := redistest.NewStandalone(t)
			c := newCache(t, "memory", func(o *Options) {
				o.Redis = RedisOptions{Addrs: []string{srv.Addr}}
				o.L1.Disabled = !l1
			})
			items := make(map[string]any, keys)
			for i := range keys {
				items["k"+strconv.Itoa(i)] = i
			}
			if err := c.SetMany(ctx, items); err != nil {
				t.Fatal(err)
			}
			for i := range keys {
				if _, err := getInt(c, "k"+strconv.Itoa(i)); err != nil {
					t.Fatal(err)
				}
			}
			info, err := srv.Info("stats")
			if err != nil {
				t.Fatal(err)
			}
			n, err := strconv.Atoi(info["tracking_total_keys"])
			if err != nil {
				t.Fatalf("tracking_total_keys %q: %v", info["tracking_total_keys"], err)
			}
			t.Logf("l1=%v: %d keys read, tracking_total_keys %d", l1, keys, n)
			if l1 && n < keys {
				t.Fatalf("tracking_total_keys = %d with L1, want every key read (%d) or more", n, keys)
			}
			if !l1 && n != 1 {
				t.Fatalf("tracking_total_keys = %d without L1, want 1 (the namespace version)", n)
			}
		})
	}
}

// TestTracking_TagsAndClearWithoutL1: on an instance without L1, another
// instance's InvalidateTags and Clear take effect as soon as Redis pushes
// the version key's invalidation: its cached versions are dropped, though
// the data keys it reads are not tracked.
func TestTracking_TagsAndClearWithoutL1(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		reader := newCache(t, topo, func(o *Options) { o.L1.Disabled = true })
		writer := peer(t, reader)
		if err := writer.Set(ctx, "tagged", 1, WithTags("g")); err != nil {
			t.Fatal(err)
		}
		if err := writer.Set(ctx, "plain", 2); err != nil {
			t.Fatal(err)
		}
		gone := func(key string, step string) {
			t.Helper()
			start := time.Now()
			eventually(t, 2*time.Second, key+" gone after "+step, func() error {
				if v, err := getInt(reader, key); !errors.Is(err, ErrNotFound) {
					return fmt.Errorf("read %d, %v", v, err)
				}
				return nil
			})
			t.Logf("%s: %s read as missing %v after it returned", step, key, time.Since(start).Round(time.Microsecond))
		}
		for range 3 { // the versions are now cached
			if v, err := getInt(reader, "tagged"); err != nil || v != 1 {
				t.Fatalf("tagged: %d, %v", v, err)
			}
		}
		if err := writer.InvalidateTags(ctx, "g"); err != nil {
			t.Fatal(err)
		}
		gone("tagged", "InvalidateTags elsewhere")
		if v, err := getInt(reader, "plain"); err != nil || v != 2 {
			t.Fatalf("plain after InvalidateTags: %d, %v", v, err)
		}
		if err := writer.Clear(ctx); err != nil {
			t.Fatal(err)
		}
		gone("plain", "Clear elsewhere")
		if n := reader.Counters().LinkSuspects; n != 0 {
			t.Fatalf("LinkSuspects = %d: freshness ended by the probe, not by the push", n)
		}
	})
}

// TestTracking_LockWaiterWokenWithoutL1: without L1 a fleet-lock waiter is
// still woken by the holder's write (its reads of the key are tracked
// while it waits), not by its polling, which is a minute apart here.
func TestTracking_LockWaiterWokenWithoutL1(t *testing.T) {
	redistest.Require(t)
	for _, topo := range []string{"standalone", "cluster", "production"} {
		t.Run(topo, func(t *testing.T) { checkWaiterWoken(t, topo, false) })
	}
}
