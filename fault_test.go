package tiercache

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/redisproc"
	"github.com/tiercache/tiercache/internal/redistest"
)

// faultTarget is one scenario's Redis deployment and its fault.
type faultTarget struct {
	redis RedisOptions
	// raw runs a command on the node that serves its key, bypassing any
	// proxy: what Redis really holds.
	raw func(args ...string) (any, error)
	// onVictim reports whether a full key lives where the fault hits, so
	// that the marker invalidations are exposed to it. Nil means anywhere.
	onVictim func(fullKey string) bool
	// prepare runs just before the last acknowledged invalidations that
	// precede the fault (failovers cut the replication links there).
	prepare  func() error
	inject   func() error
	heal     func() error // nil: the deployment heals itself
	faultFor time.Duration
	// failover: acknowledged Sets may be lost; they are counted.
	failover bool
	// strict: callers may see no error at all (slot migration).
	strict bool
	// maxOutage bounds the client-visible write outage; zero: unbounded.
	maxOutage time.Duration
	// promoted reports whether Redis has promoted a replica (failovers).
	promoted func() bool
}

// TestFault runs each fault against real Redis processes under load from
// two instances and checks the call log: see docs/reliability.md.
func TestFault(t *testing.T) {
	redistest.Require(t)
	for _, sc := range []struct {
		name  string
		setup func(t *testing.T, ns string) *faultTarget
	}{
		{"latency", func(t *testing.T, _ string) *faultTarget {
			return proxied(t, plainUpstream(t), 3*time.Second,
				func(px *redistest.Proxy) error { return px.Latency(200 * time.Millisecond) },
				func(px *redistest.Proxy) error { return px.Latency(0) })
		}},
		{"reset", func(t *testing.T, _ string) *faultTarget { return resetTarget(t, plainUpstream(t), 0) }},
		// Two faults at once: every round trip slow, and connections
		// reset while they are.
		{"latency+reset", func(t *testing.T, _ string) *faultTarget {
			return resetTarget(t, plainUpstream(t), 100*time.Millisecond)
		}},
		// Every reset costs a TLS handshake on reconnect.
		{"tls-reset", func(t *testing.T, _ string) *faultTarget { return resetTarget(t, tlsUpstream(t), 0) }},
		{"blackhole", func(t *testing.T, _ string) *faultTarget {
			return proxied(t, plainUpstream(t), 3*time.Second, (*redistest.Proxy).Blackhole, (*redistest.Proxy).Heal)
		}},
		{"kill-restart", func(t *testing.T, _ string) *faultTarget {
			// fsync on every write: a restart keeps every acknowledged write.
			srv := redistest.NewStandalone(t, "--appendonly", "yes", "--appendfsync", "always")
			return &faultTarget{redis: RedisOptions{Addrs: []string{srv.Addr}}, raw: srv.Do,
				inject: srv.Kill, heal: srv.Restart, faultFor: 2 * time.Second}
		}},
		{"pause", func(t *testing.T, _ string) *faultTarget {
			srv := redistest.NewStandalone(t)
			return &faultTarget{redis: RedisOptions{Addrs: []string{srv.Addr}}, raw: srv.Do,
				inject: srv.Pause, heal: srv.Resume, faultFor: 5 * time.Second}
		}},
		{"production-pause", productionPauseTarget},
		{"sentinel-failover", sentinelTarget},
		{"cluster-pause", clusterPauseTarget},
		{"cluster-failover", clusterFailoverTarget},
		{"cluster-migration", clusterMigrationTarget},
	} {
		t.Run(sc.name, func(t *testing.T) {
			checkNoLeaks(t)
			// A scenario named production-... runs on the production
			// configuration, in a namespace its ACL user may touch.
			topo, _, _ := strings.Cut(sc.name, "-")
			ns := namespaceFor(t, topo)
			runFault(t, ns, sc.setup(t, ns))
		})
	}
}

// upstream is the server behind a scenario's proxy.
type upstream struct {
	addr string
	tls  *tls.Config // the client's configuration; nil for plain TCP
	raw  func(args ...string) (any, error)
}

// plainUpstream is a standalone server.
func plainUpstream(t *testing.T) upstream {
	srv := redistest.NewStandalone(t)
	return upstream{addr: srv.Addr, raw: srv.Do}
}

// tlsUpstream is a standalone server that speaks TLS only. Its certificate
// names 127.0.0.1, where the proxy listens too.
func tlsUpstream(t *testing.T) upstream {
	certs := redistest.NewTLSFiles(t)
	srv := redistest.NewTLS(t, certs)
	return upstream{addr: srv.Addr, tls: certs.ClientConfig(), raw: func(args ...string) (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.DoTLS(ctx, certs.ClientConfig(), args...)
	}}
}

// proxied is up behind a proxy that inject and heal act on.
func proxied(t *testing.T, up upstream, d time.Duration, inject, heal func(*redistest.Proxy) error) *faultTarget {
	px := redistest.NewProxy(t, up.addr)
	return &faultTarget{redis: RedisOptions{Addrs: []string{px.Addr}, TLS: up.tls}, raw: up.raw, faultFor: d,
		inject: func() error { return inject(px) }, heal: func() error { return heal(px) }}
}

// resetTarget resets every connection to up every 150 ms for two seconds,
// with latency added to every round trip meanwhile (none when zero).
func resetTarget(t *testing.T, up upstream, latency time.Duration) *faultTarget {
	var (
		stop = make(chan struct{})
		done = make(chan error, 1)
	)
	tg := proxied(t, up, 2*time.Second, func(px *redistest.Proxy) error {
		if latency > 0 {
			if err := px.Latency(latency); err != nil {
				return err
			}
		}
		go func() {
			tick := time.NewTicker(150 * time.Millisecond)
			defer tick.Stop()
			for {
				if err := px.ResetPeer(); err != nil {
					done <- err
					return
				}
				select {
				case <-stop:
					done <- nil
					return
				case <-tick.C:
				}
			}
		}()
		return nil
	}, func(px *redistest.Proxy) error {
		close(stop)
		err := <-done
		if latency > 0 {
			err = cmp.Or(err, px.Latency(0))
		}
		return err
	})
	return tg
}

// productionPauseTarget pauses, for 2 s, the master of a deployment started
// from deploy/redis-production.conf, which the caches reach as the ACL
// user tiercache: recovery (the breaker's probes, the liveness probe, the
// replay of the queue) must need nothing the user is refused, and the
// scenario fails on any ACL denial.
func productionPauseTarget(t *testing.T, _ string) *faultTarget {
	p := redistest.NewProduction(t)
	t.Cleanup(func() {
		if err := checkNoDenials(p); err != nil {
			t.Error(err)
		}
	})
	return &faultTarget{
		redis:  RedisOptions{Addrs: []string{p.Addr}, Username: p.Username, Password: p.Password},
		raw:    p.Master.Do,
		inject: p.Master.Pause, heal: p.Master.Resume, faultFor: 2 * time.Second,
	}
}

// sentinelTarget kills the master of a sentinel group. Its replication
// links are cut 300 ms before, so the writes it acknowledges in between
// (the last marker invalidations among them) never reach the replica that
// the sentinels promote: the failover loses them for certain.
func sentinelTarget(t *testing.T, _ string) *faultTarget {
	st := redistest.NewSentinel(t)
	measureReplicaAck(t, st)
	old := st.Master
	return &faultTarget{
		redis:     RedisOptions{SentinelMaster: st.MasterName, SentinelAddrs: st.SentinelAddrs()},
		raw:       func(args ...string) (any, error) { return sentinelMaster(st).Do(args...) },
		prepare:   func() error { return cutReplication(old) },
		inject:    old.Kill,
		failover:  true,
		maxOutage: 3 * time.Second,
		promoted:  func() bool { a, err := st.MasterAddr(); return err == nil && a != old.Addr },
	}
}

// cutReplication makes the writes m acknowledges from now on reach no
// replica, for 300 ms of load and then until m dies. It closes the
// replication links and lowers maxclients to the connections open now
// (Redis counts cluster bus links too), so that the replicas cannot
// reconnect while the connections already open, the caches' and the
// sentinels', carry on. Both commands go on one connection, which the
// limit accounts for: a second one would be refused.
func cutReplication(m *redistest.Server) error {
	// What m acknowledged before this call (the markers' tag versions
	// among it) must reach the replicas first: the cut is to lose what
	// comes after it, not what replication had not caught up with yet.
	if err := waitReplicasCaughtUp(m, 5*time.Second); err != nil {
		return err
	}
	info, err := m.Info("clients")
	if err != nil {
		return err
	}
	clients, _ := strconv.Atoi(info["connected_clients"]) // this INFO's connection included
	bus, _ := strconv.Atoi(info["cluster_connections"])
	conn, err := net.DialTimeout("tcp", m.Addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "CONFIG SET maxclients %d\r\nCLIENT KILL TYPE replica\r\n", clients-1+bus); err != nil {
		return err
	}
	r := bufio.NewReader(conn)
	for range 2 {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if strings.HasPrefix(line, "-") {
			return errors.New(strings.TrimSpace(line))
		}
	}
	time.Sleep(300 * time.Millisecond) // the load writes to m alone
	return nil
}

// waitReplicasCaughtUp waits until every replica of m has acknowledged
// m's replication offset as it is now.
func waitReplicasCaughtUp(m *redistest.Server, timeout time.Duration) error {
	info, err := m.Info("replication")
	if err != nil {
		return err
	}
	target, err := strconv.ParseInt(info["master_repl_offset"], 10, 64)
	if err != nil {
		return fmt.Errorf("master_repl_offset %q: %w", info["master_repl_offset"], err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return redisproc.Poll(ctx, 20*time.Millisecond, 0, func(context.Context) error {
		info, err := m.Info("replication")
		if err != nil {
			return err
		}
		n, _ := strconv.Atoi(info["connected_slaves"])
		for i := range n {
			var offset int64 = -1
			for f := range strings.SplitSeq(info["slave"+strconv.Itoa(i)], ",") {
				if v, ok := strings.CutPrefix(f, "offset="); ok {
					offset, _ = strconv.ParseInt(v, 10, 64)
				}
			}
			if offset < target {
				return fmt.Errorf("replica %d at offset %d, the master at %d", i, offset, target)
			}
		}
		return nil
	})
}

// sentinelMaster returns the server the sentinels name as master now.
func sentinelMaster(st *redistest.Sentinel) *redistest.Server {
	addr, err := st.MasterAddr()
	if err == nil {
		for _, s := range append([]*redistest.Server{st.Master}, st.Replicas...) {
			if s.Addr == addr {
				return s
			}
		}
	}
	return st.Master
}

// clusterFailoverTarget kills one master of a cluster 300 ms after cutting
// its replication link; its replica takes over its slots without the
// writes acknowledged in between.
func clusterFailoverTarget(t *testing.T, _ string) *faultTarget {
	cl := redistest.NewCluster(t)
	victim := cl.Masters[0]
	var heir *redistest.Server // the victim's replica
	for _, r := range cl.Replicas {
		if info, err := r.Info("replication"); err == nil && info["master_port"] == strconv.Itoa(victim.Port) {
			heir = r
		}
	}
	if heir == nil {
		t.Fatalf("no replica of %s", victim.Addr)
	}
	return &faultTarget{
		promoted: func() bool { info, err := heir.Info("replication"); return err == nil && info["role"] == "master" },
		redis:    RedisOptions{Addrs: cl.Addrs(), Cluster: true},
		raw:      cl.Do,
		onVictim: func(key string) bool { _, err := victim.Do("EXISTS", key); return err == nil },
		prepare:  func() error { return cutReplication(victim) },
		inject:   victim.Kill,
		failover: true,
	}
}

// clusterPauseTarget pauses a master that does not hold the namespace's
// version key for one second, half of cluster-node-timeout: no failover, and the
// connections stay open, so only the liveness probe's PING to every master
// tells the instances that invalidations of its keys may be held back.
func clusterPauseTarget(t *testing.T, ns string) *faultTarget {
	cl := redistest.NewCluster(t)
	owns := func(m *redistest.Server, key string) bool { _, err := m.Do("EXISTS", key); return err == nil }
	var victim *redistest.Server
	for _, m := range cl.Masters {
		if !owns(m, ns+"#ns") {
			victim = m
			break
		}
	}
	// The marker invalidations made during the fault wait for their
	// timeouts, longer than the pause: the resume runs on its own timer.
	resumed := make(chan error, 1)
	return &faultTarget{
		redis:    RedisOptions{Addrs: cl.Addrs(), Cluster: true},
		raw:      cl.Do,
		onVictim: func(key string) bool { return owns(victim, key) },
		inject: func() error {
			if err := victim.Pause(); err != nil {
				return err
			}
			time.AfterFunc(time.Second, func() { resumed <- victim.Resume() })
			return nil
		},
		heal:     func() error { return <-resumed },
		faultFor: time.Second,
	}
}

// clusterMigrationTarget moves the slots of every key the load uses (and
// of its version counters) to another master while the load runs.
func clusterMigrationTarget(t *testing.T, ns string) *faultTarget {
	cl := redistest.NewCluster(t)
	var slots []int
	keys := []string{ns + "#ns"}
	for i := range faultKeys {
		keys = append(keys, ns+":"+faultKey(i))
	}
	for g := range faultGroups {
		keys = append(keys, ns+"#t:"+faultTag(g))
	}
	for _, k := range keys {
		s, err := cl.Do("CLUSTER", "KEYSLOT", k)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(slots, int(s.(int64))) {
			slots = append(slots, int(s.(int64)))
		}
	}
	done := make(chan error, 1)
	return &faultTarget{
		redis:  RedisOptions{Addrs: cl.Addrs(), Cluster: true},
		raw:    cl.Do,
		inject: func() error { go func() { done <- migrateSlots(cl, slots) }(); return nil },
		heal:   func() error { return <-done },
		strict: true,
	}
}

// runFault runs one scenario: a baseline, the fault, recovery, one more
// second of load, then the checks.
func runFault(t *testing.T, ns string, tg *faultTarget) {
	opts := faultOptions(ns, tg.redis)
	caches := faultCaches(t, opts, faultWriters+1)
	mk := newFaultMarkers(t, faultCaches(t, faultOptions(ns+"-m", tg.redis), 2), tg)
	log := &faultLog{}
	seedFaultKeys(t, caches[0], log)
	mon := startFaultMonitor(caches)
	ld := startFaultLoad(t, caches, log)
	time.Sleep(500 * time.Millisecond) // baseline load
	mk.before(t)
	faultStart := time.Now()
	if err := tg.inject(); err != nil {
		t.Fatalf("inject: %v", err)
	}
	promoted := watchPromotion(t, tg)
	mk.during(t)
	time.Sleep(time.Until(faultStart.Add(tg.faultFor)))
	if tg.heal != nil {
		if err := tg.heal(); err != nil {
			t.Fatalf("heal: %v", err)
		}
	}
	healed := time.Now()
	recovered := waitRecovered(t, append(slices.Clone(caches), mk.caches...))
	mk.applied(t)
	kept, lostGap := mk.witnessed(t)
	time.Sleep(time.Second) // load after recovery
	ld.halt()
	final := converge(t, caches, log)
	mk.visible(t)
	mon.halt()

	fc := newFaultChecker(log.snapshot(), mon, len(caches), faultStart, recovered)
	var f faultFindings
	fc.tally(opts, &f)
	fc.checkReads(recovered, tg.failover, &f)
	fc.checkFinal(final, &f)
	if p := promoted(); !p.IsZero() {
		t.Logf("Redis promoted a replica %v after the kill; writes resumed %v after it", p.Sub(faultStart).Round(time.Millisecond), (f.outage - p.Sub(faultStart)).Round(time.Millisecond))
	}
	t.Logf("acknowledged Sets just before the fault: %d kept, %d lost", kept, lostGap)
	if !tg.failover && lostGap > 0 {
		t.Errorf("%d acknowledged Sets made just before the fault were lost", lostGap)
	}
	t.Logf("fault from %s, healed %s, recovered %s", ts(faultStart), ts(healed), ts(recovered))
	reportFault(t, tg, caches, mon, &f, healed.Sub(faultStart), recovered.Sub(healed), recovered.Sub(faultStart))
}

// watchPromotion polls tg.promoted every 20 ms in the background; the
// function it returns stops the polling and returns when a replica was
// first seen promoted (zero: never, or not a failover).
func watchPromotion(t *testing.T, tg *faultTarget) func() time.Time {
	if tg.promoted == nil {
		return func() time.Time { return time.Time{} }
	}
	var at time.Time
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for !tg.promoted() {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
		at = time.Now()
	}()
	t.Cleanup(func() { close(stop); <-done })
	return func() time.Time {
		select {
		case <-done:
			return at
		case <-time.After(30 * time.Second):
			return time.Time{}
		}
	}
}

// faultCaches opens n instances with opts.
func faultCaches(t *testing.T, opts Options, n int) []*Cache {
	caches := make([]*Cache, n)
	for i := range caches {
		c, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		caches[i] = c
	}
	return caches
}

// seedFaultKeys gives every key a first value.
func seedFaultKeys(t *testing.T, c *Cache, log *faultLog) {
	for i := range faultKeys {
		s := log.next()
		start := time.Now()
		if err := c.Set(context.Background(), faultKey(i), s, WithTags(faultTag(i))); err != nil {
			t.Fatal(err)
		}
		log.add(faultRec{op: fSet, key: faultKey(i), seq: s, start: start, end: time.Now()})
	}
}

// waitRecovered waits until every cache's recovery queue is empty and
// every cache reaches L2 again (reads of 32 absent keys, which spread over
// every cluster shard, report a miss), and returns that time.
func waitRecovered(t *testing.T, caches []*Cache) time.Time {
	eventually(t, 60*time.Second, "recovery", func() error {
		for i, c := range caches {
			if n := c.QueueLength(); n > 0 {
				return fmt.Errorf("instance %d has %d queued operations", i, n)
			}
		}
		for i, c := range caches {
			for p := range 32 {
				var v int64
				if err := c.Get(context.Background(), fmt.Sprint("probe:", p), &v); !errors.Is(err, ErrNotFound) {
					return fmt.Errorf("instance %d: probe: %v", i, err)
				}
			}
		}
		return nil
	})
	return time.Now()
}

// converge reads every key on every instance until all agree, logging the
// reads, and returns each key's final value (0: missing).
func converge(t *testing.T, caches []*Cache, log *faultLog) map[string]int64 {
	final := map[string]int64{}
	eventually(t, 15*time.Second, "instances agree", func() error {
		for i := range faultKeys {
			k := faultKey(i)
			var first int64
			for inst, c := range caches {
				var v int64
				start := time.Now()
				res, err := c.Lookup(context.Background(), k, &v)
				log.add(faultRec{op: fGet, inst: inst, key: k, seq: v, stale: res.Stale, start: start, end: time.Now(), err: err})
				if err != nil && !errors.Is(err, ErrNotFound) {
					return fmt.Errorf("instance %d: %s: %v", inst, k, err)
				}
				if inst == 0 {
					first = v
				} else if v != first {
					return fmt.Errorf("%s: instance 0 reads %d, instance %d reads %d", k, first, inst, v)
				}
			}
			final[k] = first
		}
		return nil
	})
	return final
}

// reportFault logs the scenario's figures (docs/reliability.md quotes
// them) and fails on what must never happen.
func reportFault(t *testing.T, tg *faultTarget, caches []*Cache, mon *faultMonitor, f *faultFindings, fault, recovery, window time.Duration) {
	var replayed, overflow, failed, resets, loads uint64
	peak, open := 0, 0
	for i, c := range caches {
		s := c.Counters()
		replayed, overflow, failed, resets = replayed+s.Replayed, overflow+s.QueueOverflow, failed+s.ReplayFailed, resets+s.LinkResets
		loads += s.Loads
		peak, open = max(peak, mon.peak[i]), max(open, mon.open[i])
	}
	var durs []string
	for op := fGet; op <= fClear; op++ {
		durs = append(durs, fmt.Sprintf("%s=%v", op, f.maxDur[op].Round(time.Millisecond)))
	}
	t.Logf("FAULT %s: fault=%v outage=%v recovery=%v (fault start to recovered %v) calls=%d errors=%v stale-reads=%d queue-peak=%d replayed=%d overflow=%d breaker-open≈%v link-resets=%d loader-calls=%d lost-sets=%d lost-to-miss=%d resurrected-before-replay=%d max-duration{%s}",
		t.Name(), fault.Round(time.Millisecond), f.outage.Round(time.Millisecond), recovery.Round(time.Millisecond),
		window.Round(time.Millisecond), sum(f.calls), f.errs, f.stale, peak, replayed, overflow,
		time.Duration(open)*2*time.Millisecond, resets, loads, f.lostSets, f.lostToMiss, len(f.resurrected), strings.Join(durs, " "))
	t.Logf("calls by kind and outcome: %v", f.calls)
	if len(f.lostDetail) > 0 {
		t.Logf("lost writes:\n%s", firstFew(f.lostDetail, 10))
	}
	if failed > 0 {
		t.Errorf("%d queued operations were refused by L2", failed)
	}
	if len(f.untyped) > 0 {
		t.Errorf("%d calls failed with an untyped error:\n%s", len(f.untyped), firstFew(f.untyped, 5))
	}
	if len(f.slow) > 0 {
		t.Errorf("%d calls took longer than their bound:\n%s", len(f.slow), firstFew(f.slow, 5))
	}
	if len(f.violations) > 0 {
		t.Errorf("%d reads returned a value an invalidation had removed:\n%s\ncalls on the first one's key:\n%s", len(f.violations), firstFew(f.violations, 10), f.timeline)
	}
	if len(f.resurrected) > 0 {
		t.Logf("%d fresh reads between the failover and the replay returned a value an acknowledged invalidation had removed, before the failover lost it:\n%s", len(f.resurrected), firstFew(f.resurrected, 3))
	}
	if tg.strict && len(f.errs) > 0 {
		t.Errorf("callers saw errors: %v", f.errs)
	}
	// Like every latency target, the outage bound is checked without the
	// race detector, which slows the client several-fold.
	if tg.maxOutage > 0 && f.outage > tg.maxOutage && !raceEnabled {
		t.Errorf("write outage %v, want at most %v", f.outage, tg.maxOutage)
	}
	if !tg.failover && f.lostSets > 0 {
		t.Errorf("%d acknowledged Sets were replaced by older values", f.lostSets)
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// faultMarkers are invalidations on their own namespace (the load's Clear
// does not touch them) whose effect is checked in Redis itself: two made
// just before the fault and acknowledged, two made while it lasts.
type faultMarkers struct {
	caches []*Cache
	tg     *faultTarget
	keys   [4]string // deleted before, tagged before, deleted during, tagged during
	tags   [2]string // before, during
	vers   [2]int64  // the tags' counters before
	errs   [2]error  // what the invalidations during the fault returned
	// witnesses are set to 1, then (after tg.prepare, so in the window a
	// failover loses) to 2, and never written again: what they read
	// afterwards counts the acknowledged Sets that survived the fault.
	witnesses []string
}

func newFaultMarkers(t *testing.T, caches []*Cache, tg *faultTarget) *faultMarkers {
	m := &faultMarkers{caches: caches, tg: tg}
	prefix := caches[0].prefix
	pick := func(full func(string) string, format string, skip string) string {
		for i := 0; ; i++ {
			name := fmt.Sprintf(format, i)
			if name != skip && (tg.onVictim == nil || tg.onVictim(full(name))) {
				return name
			}
		}
	}
	key := func(s string) string { return prefix + s }
	ver := func(s string) string { return caches[0].vers.tagKey(s) }
	for i := range m.keys {
		m.keys[i] = pick(key, fmt.Sprintf("marker%d-%%d", i), "")
	}
	for i := range 50 {
		m.witnesses = append(m.witnesses, pick(key, fmt.Sprintf("witness%d-%%d", i), ""))
	}
	m.tags[0] = pick(ver, "mt%d", "")
	m.tags[1] = pick(ver, "mt%d", m.tags[0])
	return m
}

// before writes the markers, reads them everywhere, then invalidates the
// first two (acknowledged) right before the fault.
func (m *faultMarkers) before(t *testing.T) {
	ctx := context.Background()
	c := m.caches[0]
	for i, k := range m.keys {
		if err := c.Set(ctx, k, int64(i+1), WithTags(m.tags[i/2])); err != nil {
			t.Fatalf("marker %s: %v", k, err)
		}
		for _, r := range m.caches {
			if _, err := getInt(r, k); err != nil {
				t.Fatalf("marker %s: %v", k, err)
			}
		}
	}
	for i, tag := range m.tags {
		m.vers[i] = m.rawInt(t, m.caches[0].vers.tagKey(tag))
	}
	m.setWitnesses(t, 1)
	if m.tg.prepare != nil {
		if err := m.tg.prepare(); err != nil {
			t.Fatalf("prepare: %v", err)
		}
	}
	m.setWitnesses(t, 2)
	if err := c.Delete(ctx, m.keys[0]); err != nil {
		t.Fatalf("delete before the fault: %v", err)
	}
	if err := c.InvalidateTags(ctx, m.tags[0]); err != nil {
		t.Fatalf("invalidate before the fault: %v", err)
	}
}

func (m *faultMarkers) setWitnesses(t *testing.T, v int) {
	for _, k := range m.witnesses {
		if err := m.caches[0].Set(context.Background(), k, v); err != nil {
			t.Fatalf("witness %s: %v", k, err)
		}
	}
}

// witnessed counts the witnesses that read 2 (kept) and those that do not
// (their last acknowledged Set was lost), once the deployment recovered.
func (m *faultMarkers) witnessed(t *testing.T) (kept, lost int) {
	for _, k := range m.witnesses {
		v, err := getInt(m.caches[0], k)
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatalf("witness %s: %v", k, err)
		}
		if v == 2 {
			kept++
		} else {
			lost++
		}
	}
	return kept, lost
}

// during invalidates the last two markers while the fault lasts.
func (m *faultMarkers) during(t *testing.T) {
	ctx := context.Background()
	m.errs[0] = m.caches[1].Delete(ctx, m.keys[2])
	m.errs[1] = m.caches[1].InvalidateTags(ctx, m.tags[1])
	for _, err := range m.errs {
		if err != nil && !errors.Is(err, ErrQueued) {
			t.Errorf("an invalidation during the fault was neither applied nor queued: %v", err)
		}
	}
	t.Logf("invalidations during the fault: delete: %s, tags: %s", errClass(m.errs[0]), errClass(m.errs[1]))
}

// applied checks, once the queues are empty, that Redis holds the effect
// of every marker invalidation.
func (m *faultMarkers) applied(t *testing.T) {
	prefix := m.caches[0].prefix
	for _, k := range []string{m.keys[0], m.keys[2]} {
		if v, err := m.tg.raw("GET", prefix+k); err != nil || v != nil {
			t.Errorf("Redis still holds %s after its acknowledged or queued Delete: %v %v", k, v, err)
		}
	}
	for i, tag := range m.tags {
		if now := m.rawInt(t, m.caches[0].vers.tagKey(tag)); now <= m.vers[i] {
			t.Errorf("tag %s: counter %d after its invalidation, %d before", tag, now, m.vers[i])
		}
	}
}

// visible checks that no instance serves an invalidated marker.
func (m *faultMarkers) visible(t *testing.T) {
	for _, k := range m.keys {
		for i, c := range m.caches {
			if v, err := getInt(c, k); !errors.Is(err, ErrNotFound) {
				t.Errorf("instance %d serves invalidated marker %s: %d %v", i, k, v, err)
			}
		}
	}
}

func (m *faultMarkers) rawInt(t *testing.T, key string) int64 {
	v, err := m.tg.raw("GET", key)
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	s, _ := v.(string)
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// migrateSlots moves each slot from the master serving it to the next
// master, the way redis-cli --cluster reshard does, pausing between the
// steps so that the load meets every intermediate state: MIGRATING and
// IMPORTING (ASK redirects), then the new owner (MOVED).
func migrateSlots(cl *redistest.Cluster, slots []int) error {
	ids := make([]string, len(cl.Masters))
	for i, m := range cl.Masters {
		id, err := m.Do("CLUSTER", "MYID")
		if err != nil {
			return err
		}
		ids[i], _ = id.(string)
	}
	for _, slot := range slots {
		src, err := slotOwner(cl.Masters[0], ids, slot)
		if err != nil {
			return err
		}
		if err := moveSlot(cl.Masters, ids, strconv.Itoa(slot), src, (src+1)%len(ids)); err != nil {
			return fmt.Errorf("slot %d: %w", slot, err)
		}
	}
	return nil
}

// slotOwner returns the index in ids of the master serving slot.
func slotOwner(n *redistest.Server, ids []string, slot int) (int, error) {
	reply, err := n.Do("CLUSTER", "SLOTS")
	if err != nil {
		return 0, err
	}
	ranges, _ := reply.([]any)
	for _, r := range ranges {
		f, _ := r.([]any)
		if len(f) < 3 || slot < int(f[0].(int64)) || slot > int(f[1].(int64)) {
			continue
		}
		node, _ := f[2].([]any)
		if len(node) >= 3 {
			if i := slices.Index(ids, node[2].(string)); i >= 0 {
				return i, nil
			}
		}
	}
	return 0, fmt.Errorf("no master serves slot %d", slot)
}

func moveSlot(masters []*redistest.Server, ids []string, slot string, from, to int) error {
	src, dst := masters[from], masters[to]
	host, port, _ := net.SplitHostPort(dst.Addr)
	steps := [][]string{{"CLUSTER", "SETSLOT", slot, "IMPORTING", ids[from]}, {"CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to]}}
	for i, n := range []*redistest.Server{dst, src} {
		if _, err := n.Do(steps[i]...); err != nil {
			return err
		}
	}
	time.Sleep(30 * time.Millisecond) // the load meets the MIGRATING state
	for {
		reply, err := src.Do("CLUSTER", "GETKEYSINSLOT", slot, "10")
		if err != nil {
			return err
		}
		keys, _ := reply.([]any)
		if len(keys) == 0 {
			break
		}
		for _, k := range keys {
			if _, err := src.Do("MIGRATE", host, port, k.(string), "0", "5000"); err != nil {
				return err
			}
			time.Sleep(5 * time.Millisecond) // keys on both sides: ASK
		}
	}
	order := []*redistest.Server{dst, src}
	for _, n := range masters {
		if n != src && n != dst {
			order = append(order, n)
		}
	}
	for _, n := range order {
		if _, err := n.Do("CLUSTER", "SETSLOT", slot, "NODE", ids[to]); err != nil {
			return err
		}
	}
	return nil
}

// measureReplicaAck measures on the sentinel group's master what waiting
// for a replica costs: a SET alone, a SET followed by WAIT 1 on the same
// connection, and a SET with min-replicas-to-write 1. It also shows what a
// cache sees when the master refuses writes for want of replicas.
func measureReplicaAck(t *testing.T, st *redistest.Sentinel) {
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{st.Master.Addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()
	measure := func(wait bool) (p50, p99 time.Duration) {
		const n = 2000
		ds := make([]time.Duration, n)
		for i := range ds {
			cmds := rueidis.Commands{client.B().Set().Key("wait:" + strconv.Itoa(i%50)).Value("v").Build()}
			if wait {
				cmds = append(cmds, client.B().Wait().Numreplicas(1).Timeout(1000).Build())
			}
			start := time.Now()
			for _, r := range client.DoMulti(ctx, cmds...) {
				if err := r.Error(); err != nil {
					t.Fatal(err)
				}
			}
			ds[i] = time.Since(start)
		}
		slices.Sort(ds)
		return ds[n/2], ds[n*99/100]
	}
	setP50, setP99 := measure(false)
	waitP50, waitP99 := measure(true)
	config := func(n string) {
		if _, err := st.Master.Do("CONFIG", "SET", "min-replicas-to-write", n, "min-replicas-max-lag", "10"); err != nil {
			t.Fatal(err)
		}
	}
	config("1")
	minP50, minP99 := measure(false)
	// More replicas than exist: the master refuses every write.
	config("3")
	c, err := New(Options{Namespace: "norepl", Redis: RedisOptions{Addrs: []string{st.Master.Addr}}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	refused := c.Delete(ctx, "k")
	_ = c.Close()
	config("0")
	if !errors.Is(refused, ErrQueued) {
		t.Errorf("a Delete refused with NOREPLICAS: %v, want it queued for replay (ErrQueued)", refused)
	}
	t.Logf("REPLICA-ACK: SET p50=%v p99=%v; SET+WAIT 1 p50=%v p99=%v; SET with min-replicas-to-write 1 p50=%v p99=%v; Delete refused for want of replicas: %s (%v)",
		setP50, setP99, waitP50, waitP99, minP50, minP99, errClass(refused), refused)
}
