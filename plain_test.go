package tiercache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/l2"
)

// TestNotTiercacheValues: a key holding bytes tiercache did not write reads
// as ErrNotTiercache (which also matches ErrNotFound and ErrCorrupt), is
// counted each time and logged once, and Fetch replaces it with what it
// loads. LookupMany reports the same error for that key.
func TestNotTiercacheValues(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		logs := &logCapture{}
		c := newCache(t, topo, func(o *Options) { o.Logger = slog.New(logs) })
		if topo == "memory" {
			if err := c.store.Set(ctx, c.prefix+"plain", []byte("hello"), 0); err != nil {
				t.Fatal(err)
			}
		} else {
			rawDo(t, topo, "SET", c.prefix+"plain", "hello")
		}
		for range 3 {
			var s string
			err := c.Get(ctx, "plain", &s)
			if !errors.Is(err, ErrNotTiercache) || !errors.Is(err, ErrNotFound) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Get of a plain value: %v, want ErrNotTiercache (and ErrNotFound, ErrCorrupt)", err)
			}
			if !strings.Contains(err.Error(), "did not write") {
				t.Errorf("message %q does not say what is wrong", err)
			}
		}
		if n := c.Counters(); n.Corrupt != 3 || n.Misses != 3 {
			t.Errorf("Corrupt = %d, Misses = %d after three reads, want 3 and 3 (each is a miss too)", n.Corrupt, n.Misses)
		}
		if got := logs.matching("did not write"); len(got) != 1 {
			t.Errorf("%d warnings for three reads, want 1:%s", len(got), logs.all())
		}
		res, err := c.LookupMany(ctx, []string{"plain", "absent"}, map[string]Raw{})
		if err != nil || !errors.Is(res[0].Err, ErrNotTiercache) || !errors.Is(res[1].Err, ErrNotFound) || errors.Is(res[1].Err, ErrNotTiercache) {
			t.Fatalf("LookupMany: %+v %v", res, err)
		}
		v, err := Fetch(ctx, c, "plain", func(context.Context, string) (string, error) { return "loaded", nil })
		if err != nil || v != "loaded" {
			t.Fatalf("Fetch over a plain value = %q, %v; want the loaded value", v, err)
		}
		var s string
		if err := c.Get(ctx, "plain", &s); err != nil || s != "loaded" {
			t.Fatalf("after Fetch: %q, %v", s, err)
		}
	})
}

// TestReadPlainValues: with ReadPlainValues, plain bytes read as raw
// values, coherently: a change made in Redis reaches the reader's L1, and
// Delete removes them; tag invalidation and Clear leave them alone.
func TestReadPlainValues(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		c := newCache(t, topo, func(o *Options) { o.ReadPlainValues = true })
		set := func(v string) {
			if topo == "memory" {
				// Another process's write: through a second view of the store.
				if err := c.mem.View(func(l2.Invalidation) {}).Set(ctx, c.prefix+"plain", []byte(v), 0); err != nil {
					t.Fatal(err)
				}
				return
			}
			rawDo(t, topo, "SET", c.prefix+"plain", v)
		}
		read := func() (Raw, Result, error) {
			var r Raw
			res, err := c.Lookup(ctx, "plain", &r)
			return r, res, err
		}
		set("hello")
		r, res, err := read()
		if err != nil || string(r.Data) != "hello" || r.Codec != "raw" || res.Source != SourceL2 || res.Stale {
			t.Fatalf("first read: %+v %+v %v", r, res, err)
		}
		// The next reads fill L1 and are answered from it (a fill can be
		// refused while the first connections settle: reads again).
		eventually(t, 2*time.Second, "a read answered by L1", func() error {
			if r, res, err := read(); err != nil || string(r.Data) != "hello" || res.Source != SourceL1 {
				return fmt.Errorf("read: %+v %+v %v, want it from L1", r, res, err)
			}
			return nil
		})
		set("bye")
		eventually(t, 2*time.Second, "the reader sees the change made in Redis", func() error {
			if r, _, err := read(); err != nil || string(r.Data) != "bye" {
				return fmt.Errorf("reads %q, %v", r.Data, err)
			}
			return nil
		})
		if err := c.Clear(ctx); err != nil {
			t.Fatal(err)
		}
		if r, _, err := read(); err != nil || string(r.Data) != "bye" {
			t.Fatalf("after Clear: %q, %v; a plain value carries no namespace version", r.Data, err)
		}
		if err := c.Delete(ctx, "plain"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := read(); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after Delete: %v", err)
		}
	})
}
