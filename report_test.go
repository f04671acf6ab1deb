package tiercache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestCache_Report(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		c := newCache(t, topo)
		for i := range 10 {
			if err := c.Set(ctx, fmt.Sprint("k", i), i); err != nil {
				t.Fatal(err)
			}
		}
		// 10 reads fill L1 (from L2 on Redis, where Set leaves L1 empty),
		// 1000 more hit L1, 10 miss.
		var v int
		for i := range 1010 {
			if err := c.Get(ctx, fmt.Sprint("k", i%10), &v); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 10 {
			if err := c.Get(ctx, fmt.Sprint("none", i), &v); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get of a missing key: %v", err)
			}
		}
		rep, err := c.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantTopo := topo
		if topo == "production" {
			wantTopo = "standalone" // a master whose replica the client does not use
		}
		if rep.Topology != wantTopo || rep.Namespace != c.Namespace() || rep.Timestamp.IsZero() {
			t.Fatalf("report header %q %q %v", rep.Topology, rep.Namespace, rep.Timestamp)
		}
		q := rep.Counters.Requests
		if q.All() != 1020 || q.Total(ResultMiss) != 10 || q.Total(ResultHitL1)+q.Total(ResultHitL2) != 1010 {
			t.Fatalf("requests %v", q[OpGet])
		}
		if h := rep.HitRatio; h.Overall < 0.98 || h.L1 < 0.97 {
			t.Fatalf("hit ratios %+v", h)
		}
		// One L1 hit in 64 is timed: about 15 of 1000.
		if rep.Latency.L1.Count == 0 || rep.Latency.L1.P50 <= 0 || rep.Latency.L1.P99 < rep.Latency.L1.P50 {
			t.Errorf("L1 latency %+v", rep.Latency.L1)
		}
		if rep.Latency.L2.Count == 0 || rep.Latency.L2.P99 <= 0 {
			t.Errorf("L2 latency %+v", rep.Latency.L2)
		}
		if rep.L1MaxBytes != DefaultL1MaxBytes {
			t.Errorf("L1MaxBytes %d", rep.L1MaxBytes)
		}
		// On Cluster, the replicas the client holds connections to are
		// listed too.
		wantMasters := map[string]int{"memory": 0, "standalone": 1, "sentinel": 1, "cluster": 3, "production": 1}[topo]
		masters := 0
		for _, n := range rep.Nodes {
			if !n.Up || n.UsedMemory <= 0 || n.Clients <= 0 || n.Ping <= 0 || n.Error != "" {
				t.Errorf("node %+v", n)
			}
			if n.Role == "master" {
				masters++
			}
		}
		if masters != wantMasters || (topo != "cluster" && len(rep.Nodes) != wantMasters) {
			t.Fatalf("%d nodes, %d masters; want %d masters: %+v", len(rep.Nodes), masters, wantMasters, rep.Nodes)
		}
		if topo == "standalone" && rep.Nodes[0].KeyspaceHits == 0 {
			t.Errorf("keyspace_hits is 0 after reads from Redis")
		}
		// INFO commandstats: every master has run GETs (the liveness
		// probe, or the reads above) and CLIENT TRACKING.
		for _, n := range rep.Nodes {
			if n.Role != "master" {
				continue
			}
			if n.Commands["ping"].Calls == 0 && n.Commands["get"].Calls == 0 {
				t.Errorf("node %s: commandstats %v, want calls of ping or get", n.Addr, n.Commands)
			}
			if n.Commands["client|tracking"].Calls == 0 {
				t.Errorf("node %s: commandstats %v, want client|tracking", n.Addr, n.Commands)
			}
		}
	})
}

func TestReport_JSON(t *testing.T) {
	t.Parallel()
	c := newCache(t, "memory")
	var v int
	_ = c.Get(context.Background(), "nothing", &v)
	rep, err := c.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Counters struct {
			HitsL1   *uint64                      `json:"hits_l1"`
			Breaker  string                       `json:"breaker"`
			Requests map[string]map[string]uint64 `json:"requests"`
		} `json:"counters"`
		HitRatio map[string]float64 `json:"hit_ratio"`
		Latency  map[string]struct {
			P99 *int64 `json:"p99_ns"`
		} `json:"latency"`
		Nodes   []any `json:"nodes"`
		Warming []any `json:"warming"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.Counters.HitsL1 == nil || m.Counters.Breaker != "closed" || m.Counters.Requests["get"]["miss"] != 1 ||
		len(m.Counters.Requests) != int(NumOps) || len(m.HitRatio) != 3 || m.Latency["loader"].P99 == nil ||
		m.Nodes == nil || m.Warming == nil {
		t.Fatalf("unexpected JSON shape: %s", b)
	}
	if strings.Contains(string(b), "HitsL1") {
		t.Fatalf("Go field names in JSON: %s", b)
	}
}

func TestCache_Report_Closed(t *testing.T) {
	t.Parallel()
	c := newCache(t, "memory")
	_ = c.Close()
	if _, err := c.Stats(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Report after Close: %v", err)
	}
}
