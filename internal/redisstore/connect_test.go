package redisstore

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/l2"
	"github.com/tiercache/tiercache/internal/redistest"
)

// TestStore_LazyCluster: a lazy store on a Cluster none of whose nodes
// runs yet returns from New at once, fails every operation as unreachable,
// and once the nodes are up connects by itself, with tracking: a write by
// another client is reported.
func TestStore_LazyCluster(t *testing.T) {
	c := redistest.NewCluster(t)
	nodes := c.Nodes()
	for _, n := range nodes {
		if err := n.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	rec := newRecorder()
	start := time.Now()
	s, err := New(Options{Addrs: c.Addrs(), Cluster: true, Lazy: true, OnInvalidation: rec.record,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if d := time.Since(start); d > time.Second {
		t.Errorf("New took %v without a server", d)
	}
	ctx := context.Background()
	if _, err := s.Get(ctx, "k"); !errors.Is(err, l2.ErrUnavailable) {
		t.Fatalf("Get before the cluster runs: %v, want l2.ErrUnavailable", err)
	}
	if err := s.Set(ctx, "k", []byte("v"), 0); !errors.Is(err, l2.ErrUnavailable) {
		t.Fatalf("Set before the cluster runs: %v, want l2.ErrUnavailable", err)
	}
	if s.Connected() || s.Mode() != "cluster" {
		t.Fatalf("before the cluster runs: Connected %v, Mode %q", s.Connected(), s.Mode())
	}
	if ns := s.Nodes(ctx); len(ns) != 1 || !errors.Is(ns[0].Err, l2.ErrUnavailable) {
		t.Fatalf("Nodes before the cluster runs: %+v", ns)
	}
	// A restarted node waits for the others to agree: restart them all at
	// once.
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Go(func() { errs[i] = n.Restart() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.WaitConnected():
	case <-time.After(waitFor):
		t.Fatalf("not connected %v after the cluster started", waitFor)
	}
	eventually(t, "a write and a read", func() error {
		if err := s.Set(ctx, "k", []byte("v"), 0); err != nil {
			return err
		}
		_, err := s.Get(ctx, "k")
		return err
	})
	n := rec.key("k")
	if _, err := c.Do("SET", "k", "other"); err != nil {
		t.Fatal(err)
	}
	waitKey(t, rec, "k", n)
}

// TestStore_LazyClose: closing a lazy store that never connected stops
// its connector at once (TestMain checks that no goroutine is left).
func TestStore_LazyClose(t *testing.T) {
	s, err := New(Options{Addrs: []string{"127.0.0.1:1"}, Lazy: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(context.Background(), "k"); !errors.Is(err, l2.ErrUnavailable) {
		t.Fatalf("Get: %v, want l2.ErrUnavailable", err)
	}
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	if _, err := s.Get(context.Background(), "k"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: %v, want ErrClosed", err)
	}
}
