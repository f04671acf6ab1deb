package redisstore

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

func TestParseInfo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, text string
		want       map[string]string
	}{
		{"plain", "# Memory\r\nused_memory:1024\r\nmaxmemory:0\r\n\r\n# Replication\r\nrole:master\r\n",
			map[string]string{"used_memory": "1024", "maxmemory": "0", "role": "master"}},
		{"verbatim", "txt:cluster_state:ok\r\ncluster_known_nodes:6\r\n",
			map[string]string{"cluster_state": "ok", "cluster_known_nodes": "6"}},
		{"value with colons", "master_host:::1\r\n", map[string]string{"master_host": "::1"}},
		{"empty", "", map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ParseInfo(tc.text)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestParseClusterNodes(t *testing.T) {
	t.Parallel()
	text := `07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@40002,host2 master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30003@40003 master,fail? - 0 1426238318243 3 connected 10923-16383
6ec2 127.0.0.1:30005@40005 slave,fail 67ed 0 1426238316232 5 disconnected
824f 127.0.0.1:30006@40006 myself,slave 292f 0 0 6 connected
e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460
`
	st := parseClusterNodes(text)
	if st.Masters != 3 || st.Replicas != 3 {
		t.Errorf("%d masters, %d replicas", st.Masters, st.Replicas)
	}
	if want := []string{"127.0.0.1:30003", "127.0.0.1:30005"}; !slices.Equal(st.Failing, want) {
		t.Errorf("failing %v, want %v", st.Failing, want)
	}
}

func TestStore_Nodes(t *testing.T) {
	for _, topo := range topologies {
		t.Run(topo.name, func(t *testing.T) {
			t.Parallel()
			d := topo.start(t)
			s := newStore(t, d, nil)
			ctx := context.Background()
			if got := s.Mode(); got != topo.name {
				t.Errorf("Mode() = %q", got)
			}
			nodes := s.Nodes(ctx)
			var masters []string
			for _, n := range nodes {
				if n.Err != nil || n.Ping <= 0 || n.UsedMemory <= 0 || n.ConnectedClients <= 0 || n.ReplID == "" || !n.MasterLinkUp {
					t.Errorf("node %+v", n)
				}
				if n.Role == "master" {
					masters = append(masters, n.Addr)
				}
			}
			var want []string
			for _, m := range d.masters() {
				want = append(want, m.Addr)
			}
			slices.Sort(want)
			if !slices.Equal(masters, want) {
				t.Fatalf("masters %v, want %v", masters, want)
			}

			cs, err := s.Cluster(ctx)
			if topo.name != "cluster" {
				if err == nil {
					t.Fatal("Cluster() on a non-cluster succeeded")
				}
				return
			}
			if err != nil || cs.State != "ok" || cs.Masters != 3 || cs.Replicas != 3 || len(cs.Failing) != 0 {
				t.Fatalf("Cluster() = %+v, %v", cs, err)
			}
		})
	}
}

func TestProbeSentinels(t *testing.T) {
	t.Parallel()
	st := redistest.NewSentinel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dead := "127.0.0.1:1"
	views := ProbeSentinels(ctx, SentinelProbe{Addrs: append(st.SentinelAddrs(), dead), Master: st.MasterName})
	if len(views) != 4 {
		t.Fatalf("%d views", len(views))
	}
	for _, v := range views[:3] {
		if v.Err != nil || v.MasterAddr != st.Master.Addr || v.Quorum != 2 || v.Replicas != 2 || v.MasterDown || len(v.FailingReplicas) != 0 {
			t.Errorf("view %+v", v)
		}
	}
	if v := views[3]; v.Addr != dead || v.Err == nil {
		t.Errorf("dead sentinel: %+v", v)
	}
}
