package redisstore

import (
	"context"
	"fmt"
	"testing"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestStore_FollowsFailoverOnAnySentinel: the sentinel rueidis listens to
// (the first address) is paused, and another sentinel runs a failover. The
// store follows the new master on that sentinel's +switch-master, which
// rueidis alone would never hear, and reports the switch as a lost link.
func TestStore_FollowsFailoverOnAnySentinel(t *testing.T) {
	redistest.Require(t)
	st := redistest.NewSentinel(t)
	rec := newRecorder()
	s, err := New(Options{Addrs: st.SentinelAddrs(), SentinelMaster: st.MasterName, OnInvalidation: rec.record})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Set(ctx, "k", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	old := st.Master.Addr
	if _, ok := s.cli().Nodes()[old]; !ok {
		t.Fatalf("the client does not use the master %s: %v", old, s.cli().Nodes())
	}
	deaf := st.Sentinels[0]
	if err := deaf.Pause(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = deaf.Resume() }()
	lost := rec.allCount()
	// A sentinel told to fail over runs the failover itself, without an
	// election, and announces it at once.
	if _, err := st.Sentinels[1].Do("SENTINEL", "FAILOVER", st.MasterName); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the store follows the new master", func() error {
		if _, ok := s.cli().Nodes()[old]; ok {
			return fmt.Errorf("still on %s", old)
		}
		return s.Set(ctx, "k", []byte("2"), 0)
	})
	if s.Followed() != 1 {
		t.Fatalf("Followed() = %d, want 1", s.Followed())
	}
	if rec.allCount() <= lost {
		t.Fatal("no lost-link invalidation after the switch")
	}
	v, err := s.Get(ctx, "k")
	if err != nil || string(v) != "2" {
		t.Fatalf("k = %q %v on the new master, want 2", v, err)
	}
}
