package tiercache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// fleetOn turns on the fleet registry and the canary with short periods.
func fleetOn(id string, beat, canary time.Duration) func(*Options) {
	return func(o *Options) {
		o.Fleet = FleetOptions{Enabled: true, InstanceID: id, Heartbeat: beat, Version: "v1", Address: id + ":8080"}
		o.Canary = CanaryOptions{Interval: canary}
	}
}

// memberOf returns the member id of f, or an error naming the members.
func memberOf(f Fleet, id string) (FleetMember, error) {
	for _, m := range f.Members {
		if m.ID == id {
			return m, nil
		}
	}
	ids := make([]string, len(f.Members))
	for i, m := range f.Members {
		ids[i] = m.ID + "(" + m.State + ")"
	}
	return FleetMember{}, fmt.Errorf("%s not listed; members: %v", id, ids)
}

// TestFleet_Canary runs two instances of one namespace with the fleet
// registry and the canary on: each lists both as live, sees the other's
// markers with a lag well under MissAfter and misses none; the one that
// closes is then listed as stopped.
func TestFleet_Canary(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		t.Parallel()
		ctx := context.Background()
		// A marker a reader has not read back before the next one counts as
		// missed: the interval leaves a busy test machine room.
		const beat, interval = 50 * time.Millisecond, 100 * time.Millisecond
		a := newCache(t, topo, fleetOn("a", beat, interval))
		if topo == "memory" {
			// The in-memory store is private: a fleet of one.
			eventually(t, 5*time.Second, "a lists itself", func() error {
				f, err := a.Fleet(ctx)
				if err != nil {
					return err
				}
				m, err := memberOf(f, "a")
				if err != nil || !m.Self || m.State != "live" || f.Live != 1 {
					return fmt.Errorf("%+v, %v", f, err)
				}
				return nil
			})
			return
		}
		b := newCache(t, topo, fleetOn("b", beat, interval), func(o *Options) { o.Namespace = a.Namespace() })
		// A write creates the namespace version: the epoch both publish.
		if err := a.Set(ctx, "k", 1); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "both list both as live", func() error {
			for _, c := range []*Cache{a, b} {
				f, err := c.Fleet(ctx)
				if err != nil {
					return err
				}
				for _, id := range []string{"a", "b"} {
					m, err := memberOf(f, id)
					if err != nil {
						return err
					}
					if m.State != "live" || m.Health != Healthy || m.Address != id+":8080" || m.Version != "v1" || m.Epoch == 0 || len(m.Disagrees) > 0 {
						return fmt.Errorf("%s lists %+v", c.fleet.id, m)
					}
				}
				if f.Live != 2 || f.Disagreeing != 0 {
					return fmt.Errorf("%s: live %d, disagreeing %d", c.fleet.id, f.Live, f.Disagreeing)
				}
			}
			return nil
		})
		eventually(t, 20*time.Second, "each sees ten of the other's markers", func() error {
			for _, c := range []*Cache{a, b} {
				co, ok := c.Coherence()
				if !ok {
					return errors.New("canary off")
				}
				if co.Watching != 1 || co.Seen < 10 {
					return fmt.Errorf("%s: %+v", c.fleet.id, co)
				}
			}
			return nil
		})
		for _, c := range []*Cache{a, b} {
			co, _ := c.Coherence()
			t.Logf("%s: written %d, seen %d, missed %d, lag p50 %v p99 %v, clock offset %v ± %v",
				c.fleet.id, co.Written, co.Seen, co.Missed, co.Lag.P50, co.Lag.P99, co.ClockOffset, co.ClockUncertainty)
			// A reader stalled for a whole interval (a busy machine under
			// -race) misses the marker overwritten meanwhile; a healthy
			// link misses no more than that.
			if co.Missed*10 > co.Seen {
				t.Errorf("%s missed %d markers of a healthy peer, for %d seen", c.fleet.id, co.Missed, co.Seen)
			}
			if co.Lag.P99 <= 0 || co.Lag.P99 >= co.MissAfter {
				t.Errorf("%s: lag p99 %v, want in (0, %v)", c.fleet.id, co.Lag.P99, co.MissAfter)
			}
			st, err := c.Stats(ctx)
			if err != nil || st.Coherence == nil || st.Coherence.Seen == 0 {
				t.Errorf("Stats().Coherence = %+v, %v", st.Coherence, err)
			}
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "a lists b as stopped", func() error {
			f, err := a.Fleet(ctx)
			if err != nil {
				return err
			}
			m, err := memberOf(f, "b")
			if err != nil || m.State != "stopped" || f.Stopped != 1 || f.Live != 1 {
				return fmt.Errorf("%+v, %v", m, err)
			}
			return nil
		})
	})
}

// TestFleet_SilentAndDisagreeing puts members into a's registry beside
// a's own heartbeat: one not heard from for ten heartbeats (silent), two
// that agree with a, and one on another version, namespace epoch and
// configuration, which is flagged on each.
func TestFleet_SilentAndDisagreeing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tp := shared.Get(t, "standalone")
	a := newCache(t, "standalone", fleetOn("a", time.Second, 0))
	if err := a.Set(ctx, "k", 1); err != nil {
		t.Fatal(err)
	}
	var me FleetMember
	eventually(t, 5*time.Second, "a's heartbeat with the epoch", func() error {
		f, err := a.Fleet(ctx)
		if err != nil {
			return err
		}
		if me, err = memberOf(f, "a"); err == nil && me.Epoch == 0 {
			err = errors.New("epoch 0")
		}
		return err
	})
	now := a.fleet.clock.now()
	reg := fleetRegistry{Members: map[string]FleetMember{"a": me}}
	add := func(id string, mod func(*FleetMember)) {
		m := me
		m.ID, m.LastSeen = id, now
		mod(&m)
		reg.Members[id] = m
	}
	add("ghost", func(m *FleetMember) { m.LastSeen = now.Add(-10 * time.Second) })
	add("peer1", func(*FleetMember) {})
	add("peer2", func(*FleetMember) {})
	add("odd", func(m *FleetMember) { m.Version, m.Epoch, m.Config = "v2", m.Epoch+1, "0123456789ab" })
	raw, _ := json.Marshal(reg)
	if _, err := tp.Do("SET", a.fleet.key, string(raw)); err != nil {
		t.Fatal(err)
	}
	f, err := a.Fleet(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f.Live != 4 || f.Silent != 1 || f.Disagreeing != 1 {
		t.Errorf("live %d, silent %d, disagreeing %d; want 4, 1, 1: %+v", f.Live, f.Silent, f.Disagreeing, f.Members)
	}
	ghost, _ := memberOf(f, "ghost")
	if ghost.State != "silent" || ghost.Age < 9*time.Second {
		t.Errorf("ghost: %+v", ghost)
	}
	odd, _ := memberOf(f, "odd")
	if len(odd.Disagrees) != 3 {
		t.Errorf("odd disagrees on %q, want epoch, version and config", odd.Disagrees)
	}
	for _, id := range []string{"a", "peer1", "peer2"} {
		if m, _ := memberOf(f, id); m.State != "live" || len(m.Disagrees) > 0 {
			t.Errorf("%s: %+v", id, m)
		}
	}
	if !slices.IsSortedFunc(f.Members, func(x, y FleetMember) int { return compareStrings(x.ID, y.ID) }) {
		t.Error("members not sorted by id")
	}
	// a's next heartbeat keeps the others.
	eventually(t, 5*time.Second, "a's heartbeat keeps the others", func() error {
		f, err := a.Fleet(ctx)
		if err != nil {
			return err
		}
		m, err := memberOf(f, "a")
		if err != nil {
			return err
		}
		if !m.LastSeen.After(now) || len(f.Members) != 5 {
			return fmt.Errorf("a last seen %v (before %v), %d members", m.LastSeen, now, len(f.Members))
		}
		return nil
	})
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestCanary_Missed plays another instance by hand: a member in the
// registry with a canary, whose markers are written straight to Redis. A
// marker reaches a and is seen; the sequence numbers skipped are missed.
func TestCanary_Missed(t *testing.T) {
	t.Parallel()
	tp := shared.Get(t, "standalone")
	a := newCache(t, "standalone", fleetOn("a", 100*time.Millisecond, 50*time.Millisecond),
		func(o *Options) { o.Canary.MissAfter = 300 * time.Millisecond })
	eventually(t, 5*time.Second, "Redis's clock known", func() error {
		if !a.fleet.clock.synced.Load() {
			return errors.New("not yet")
		}
		return nil
	})
	write := ghostWriter(t, a, tp.Do)
	write(1, a.fleet.clock.now())
	eventually(t, 5*time.Second, "a follows w", func() error {
		if co, _ := a.Coherence(); co.Watching != 1 {
			return fmt.Errorf("watching %d", co.Watching)
		}
		return nil
	})
	seq := armCanary(t, a, write)
	co, _ := a.Coherence()
	seen, missed := co.Seen, co.Missed
	write(seq+10, a.fleet.clock.now()) // skips 9
	eventually(t, 5*time.Second, "skipped markers missed", func() error {
		co, _ := a.Coherence()
		// 9 skipped; one more when the previous marker's invalidation
		// was still on its way and a read this one first.
		if co.Seen == seen || co.Missed-missed < 9 || co.Missed-missed > 10 {
			return fmt.Errorf("seen %d, missed %d (before: %d, %d)", co.Seen, co.Missed, seen, missed)
		}
		return nil
	})
}

func TestFleet_Options(t *testing.T) {
	t.Parallel()
	for name, o := range map[string]Options{
		"canary without fleet": {Canary: CanaryOptions{Interval: time.Second}},
		"negative heartbeat":   {Fleet: FleetOptions{Enabled: true, Heartbeat: -time.Second}},
		"negative miss after":  {Fleet: FleetOptions{Enabled: true}, Canary: CanaryOptions{Interval: time.Second, MissAfter: -1}},
		"id with a space":      {Fleet: FleetOptions{Enabled: true, InstanceID: "a b"}},
		"id too long":          {Fleet: FleetOptions{Enabled: true, InstanceID: strings.Repeat("x", 129)}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(o); !errors.Is(err, ErrInvalidOptions) {
				t.Errorf("New: %v, want ErrInvalidOptions", err)
			}
		})
	}
	c, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Fleet(context.Background()); !errors.Is(err, ErrFleetDisabled) {
		t.Errorf("Fleet with the registry off: %v, want ErrFleetDisabled", err)
	}
	on, err := New(Options{Fleet: FleetOptions{Enabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	_ = on.Close()
	if _, err := on.Fleet(context.Background()); !errors.Is(err, ErrClosed) || err.Error() != "tiercache: fleet: cache is closed" {
		t.Errorf("Fleet after Close: %v, want %q matching ErrClosed", err, "tiercache: fleet: cache is closed")
	}
	if _, ok := c.Coherence(); ok {
		t.Error("Coherence reports a canary that is off")
	}
}

// TestRedisClock_ChoosesShortestRoundTrip: the offset comes from the
// sample with the shortest round trip of the last clockSamples.
func TestRedisClock_ChoosesShortestRoundTrip(t *testing.T) {
	t.Parallel()
	var k redisClock
	k.add(5*time.Millisecond, 10*time.Millisecond)
	k.add(2*time.Millisecond, time.Millisecond)
	k.add(9*time.Millisecond, 4*time.Millisecond)
	if k.offset() != 2*time.Millisecond || k.uncert.Load() != int64(500*time.Microsecond) {
		t.Errorf("offset %v ± %v, want 2ms ± 500µs", k.offset(), time.Duration(k.uncert.Load()))
	}
	for range clockSamples { // the good sample ages out
		k.add(7*time.Millisecond, 3*time.Millisecond)
	}
	if k.offset() != 7*time.Millisecond {
		t.Errorf("offset %v after the good sample aged out, want 7ms", k.offset())
	}
}

// TestCanary_MissedWhileDisconnected: a marker written while the reader's
// link to Redis is down never reaches it as an invalidation; the reader's
// periodic check finds it older than MissAfter and counts it missed,
// without a lag.
func TestCanary_MissedWhileDisconnected(t *testing.T) {
	t.Parallel()
	tp := shared.Get(t, "standalone")
	px := redistest.NewProxy(t, tp.Addrs[0])
	a := newCache(t, "standalone", fleetOn("a", 100*time.Millisecond, 50*time.Millisecond), func(o *Options) {
		o.Redis = RedisOptions{Addrs: []string{px.Addr}}
		o.Canary.MissAfter = 300 * time.Millisecond
	})
	eventually(t, 5*time.Second, "Redis's clock known", func() error {
		if !a.fleet.clock.synced.Load() {
			return errors.New("not yet")
		}
		return nil
	})
	write := ghostWriter(t, a, tp.Do)
	write(1, a.fleet.clock.now())
	seq := armCanary(t, a, write)
	before, _ := a.Coherence()
	if err := px.Disable(); err != nil {
		t.Fatal(err)
	}
	write(seq+1, a.fleet.clock.now().Add(-time.Second)) // already older than MissAfter
	if err := px.Enable(); err != nil {
		t.Fatal(err)
	}
	// Missed by the check (with the marker before it, when that one's
	// invalidation was still on its way at the cut), never seen: seen, it
	// would have a lag of a second.
	eventually(t, 10*time.Second, "the marker written while disconnected missed", func() error {
		co, _ := a.Coherence()
		if co.Missed == before.Missed || co.Lag.P99 >= a.opts.Canary.MissAfter {
			return fmt.Errorf("seen %d, missed %d, lag p99 %v (before: %d, %d)", co.Seen, co.Missed, co.Lag.P99, before.Seen, before.Missed)
		}
		return nil
	})
}

// armCanary writes w's markers with write until a has seen one (each poll
// writes the next: a's first read only learns where w is), then one more,
// and waits until a has accounted for every marker up to it. It returns
// the last sequence number written.
func armCanary(t *testing.T, a *Cache, write func(seq uint64, at time.Time)) uint64 {
	t.Helper()
	seq := uint64(1)
	eventually(t, 5*time.Second, "a marker seen", func() error {
		seq++
		write(seq, a.fleet.clock.now())
		if co, _ := a.Coherence(); co.Seen == 0 {
			return errors.New("not seen")
		}
		return nil
	})
	settled, _ := a.Coherence()
	seq++
	write(seq, a.fleet.clock.now())
	eventually(t, 5*time.Second, "the last marker accounted for", func() error {
		if co, _ := a.Coherence(); co.Seen+co.Missed == settled.Seen+settled.Missed {
			return errors.New("not yet")
		}
		return nil
	})
	return seq
}

// ghostWriter registers a canary writer "w" in a's fleet until the end of
// the test (a publishes w's heartbeat every 50 ms) and returns the
// function that writes w's marker seq, stamped at, with do (a plain Redis
// client).
func ghostWriter(t *testing.T, a *Cache, do func(args ...string) (any, error)) func(seq uint64, at time.Time) {
	t.Helper()
	ctx := context.Background()
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			_, _ = a.publish(ctx, FleetMember{ID: "w", CanaryInterval: time.Second, LastSeen: a.fleet.clock.now(), Config: a.fleet.config})
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	key := a.prefix + markerKey("w")
	return func(seq uint64, at time.Time) {
		t.Helper()
		v, _ := json.Marshal(marker{ID: "w", Seq: seq, At: at.UnixNano()})
		if _, err := do("SET", key, string(v)); err != nil {
			t.Fatal(err)
		}
	}
}
