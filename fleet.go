package tiercache

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/tiercache/tiercache/internal/l2"
)

// The fleet registry. Every instance of a namespace with Fleet.Enabled
// publishes a small heartbeat under one key, "<namespace>#fleet": a JSON
// object of members by instance id, each stamped with Redis's clock. One
// key, rewritten with a compare-and-swap (WATCH, GET, MULTI, SET, EXEC),
// so that listing the fleet is one GET on every topology, Cluster
// included (no SCAN across nodes), with the commands and key patterns the
// production ACL already grants. A member's expiry is its stamp: each
// writer drops the members not seen for fleetForgetAfter heartbeats, and
// the key itself expires when every instance has stopped.

// Defaults of FleetOptions.
const (
	DefaultFleetHeartbeat = 5 * time.Second
)

// fleetSilentAfter and fleetForgetAfter are, in heartbeats, when a member
// is listed as silent and when it is dropped from the registry.
const (
	fleetSilentAfter = 3
	fleetForgetAfter = 60
)

// FleetOptions make the instances of a namespace visible to each other
// (Cache.Fleet, GET /v1/fleet on tiercache serve) and let them run the
// coherence canary (CanaryOptions). The zero value is off.
type FleetOptions struct {
	// Enabled publishes this instance's heartbeat in the namespace's
	// fleet registry, every Heartbeat.
	Enabled bool

	// InstanceID names this instance in the registry. Empty means
	// "<hostname>-<pid>-<4 random hex digits>", new at each start.
	InstanceID string

	// Address is where this instance can be reached, as others should
	// show it (tiercache serve publishes its listener's address). Empty
	// means none.
	Address string

	// Version is the application's version, published so that a fleet
	// running two versions shows it. Empty means none.
	Version string

	// Heartbeat is how often the heartbeat is published. A member not
	// heard from for three heartbeats is listed as silent, and dropped
	// after sixty. Zero means DefaultFleetHeartbeat.
	Heartbeat time.Duration
}

// FleetMember is one instance's heartbeat, as Cache.Fleet lists it.
// Times come from Redis's clock, not the instance's own.
type FleetMember struct {
	ID      string `json:"id"`
	Address string `json:"address,omitempty"`
	Version string `json:"version,omitempty"`
	// Health is the instance's own verdict from what it knows without
	// asking Redis: unhealthy while its breaker is open or it has not
	// connected yet, degraded while the breaker is half-open, its
	// invalidation link is down or operations wait in its recovery
	// queue, healthy otherwise.
	Health HealthStatus `json:"health"`
	// Epoch is the namespace version the instance holds (Clear bumps
	// it); 0 when it has not read it yet.
	Epoch uint64 `json:"epoch"`
	// Config is a digest of the options that instances of a namespace
	// must share to read each other's entries alike (codec and rules,
	// compression, TTLs, fail-safe, lock, canary interval).
	Config      string       `json:"config"`
	L1Entries   int          `json:"l1_entries"`
	L1Bytes     uint64       `json:"l1_bytes"`
	QueueLength int          `json:"queue_length"`
	LinkResets  uint64       `json:"link_resets"`
	Breaker     BreakerState `json:"breaker"`
	// CanaryInterval is how often the instance writes its coherence
	// marker; 0 when its canary is off. CoherenceLagP99 and
	// MarkersMissed are its canary's figures (see CoherenceStats).
	CanaryInterval  time.Duration `json:"canary_interval_ns"`
	CoherenceLagP99 time.Duration `json:"coherence_lag_p99_ns"`
	MarkersMissed   uint64        `json:"markers_missed"`
	Started         time.Time     `json:"started"`
	LastSeen        time.Time     `json:"last_seen"`
	// Stopped is set by the instance's last heartbeat, at Close.
	Stopped bool `json:"stopped,omitempty"`

	// Set by Cache.Fleet, not published.

	// State is "live", "silent" (no heartbeat for three heartbeats) or
	// "stopped" (closed cleanly).
	State string `json:"state"`
	// Age is how long ago its last heartbeat was, on Redis's clock.
	Age time.Duration `json:"age_ns"`
	// Disagrees lists how the member differs from most live members
	// (epoch, version, config); empty when it agrees.
	Disagrees []string `json:"disagrees,omitempty"`
	// Self marks the instance that answered.
	Self bool `json:"self,omitempty"`
}

// Fleet is the fleet registry of a namespace, as one instance reads it.
type Fleet struct {
	Namespace string `json:"namespace"`
	// Self is the id of the instance that answered.
	Self string `json:"self"`
	// Now is the time of the listing, on Redis's clock.
	Now time.Time `json:"now"`
	// Heartbeat is this instance's heartbeat period; members are silent
	// after SilentAfter without a heartbeat.
	Heartbeat   time.Duration `json:"heartbeat_ns"`
	SilentAfter time.Duration `json:"silent_after_ns"`
	// Members are sorted by id.
	Members []FleetMember `json:"members"`
	// Live, Silent, Stopped and Disagreeing count the members by state,
	// and those that disagree.
	Live        int `json:"live"`
	Silent      int `json:"silent"`
	Stopped     int `json:"stopped"`
	Disagreeing int `json:"disagreeing"`
}

// ErrFleetDisabled is returned by Cache.Fleet when Fleet.Enabled is off.
var ErrFleetDisabled = errors.New("tiercache: the fleet registry is off (Fleet.Enabled)")

// fleetRegistry is what "<namespace>#fleet" holds.
type fleetRegistry struct {
	Members map[string]FleetMember `json:"members"`
}

// fleet is the running fleet registry of a cache.
type fleet struct {
	key     string // "<namespace>#fleet"
	id      string
	period  time.Duration
	config  string
	started time.Time
	clock   *redisClock
}

// defaultInstanceID is "<hostname>-<pid>-<4 random hex digits>".
func defaultInstanceID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "host"
	}
	var b [2]byte
	_, _ = rand.Read(b[:])
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
}

// configDigest is FleetMember.Config: the options instances of one
// namespace must share.
func configDigest(o Options) string {
	h := sha256.New()
	fmt.Fprintf(h, "codec=%s compress=%d ttl=%v neg=%v jitter=%v l1ttl=%v failsafe=%v lock=%v canary=%v rules=",
		o.Codec, o.CompressAbove, o.DefaultTTL, o.NegativeTTL, o.TTLJitter, o.L1.MaxTTL, o.FailSafe.MaxDuration, o.Lock.Enabled, o.Canary.Interval)
	for _, r := range o.CodecRules {
		fmt.Fprintf(h, "%s=%s;", r.Pattern, r.Codec)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// startFleet starts the heartbeat (and the canary, which needs it).
func (c *Cache) startFleet() {
	o := c.opts.Fleet
	if !o.Enabled {
		return
	}
	c.fleet = &fleet{
		key: c.opts.Namespace + "#fleet", id: o.InstanceID, period: o.Heartbeat,
		config: configDigest(c.opts), started: time.Now(), clock: &redisClock{},
	}
	if c.opts.Canary.Interval > 0 {
		c.canary = newCanary(c)
	}
	c.bg.Add(1)
	go c.heartbeatLoop()
	if c.canary != nil {
		c.bg.Add(1)
		go c.canary.run()
	}
}

// heartbeatLoop publishes the heartbeat every period, and a last one
// marked stopped when the cache closes.
func (c *Cache) heartbeatLoop() {
	defer c.bg.Done()
	f := c.fleet
	t := time.NewTicker(f.period)
	defer t.Stop()
	for {
		c.beat(c.ctx, false)
		select {
		case <-c.ctx.Done():
			ctx, cancel := context.WithTimeout(context.Background(), c.bgTimeout())
			c.beat(ctx, true)
			cancel()
			return
		case <-t.C:
		}
	}
}

// bgTimeout bounds one background operation of the fleet and canary.
func (c *Cache) bgTimeout() time.Duration {
	if c.opts.OperationTimeout > 0 {
		return c.opts.OperationTimeout
	}
	return DefaultOperationTimeout
}

// beat publishes one heartbeat and keeps the members it read for the
// canary. Failures are logged at debug level: the next beat retries.
func (c *Cache) beat(ctx context.Context, stopped bool) {
	ctx, cancel := context.WithTimeout(ctx, c.bgTimeout())
	defer cancel()
	if err := c.syncClock(ctx); err != nil {
		c.logger.Debug("tiercache: fleet heartbeat: read Redis's clock", "err", redactErr(err, c.opts.Redis))
	}
	me := c.selfMember(ctx)
	me.Stopped = stopped
	members, err := c.publish(ctx, me)
	if err != nil {
		c.logger.Debug("tiercache: fleet heartbeat", "err", redactErr(err, c.opts.Redis))
		return
	}
	if c.canary != nil {
		c.canary.setMembers(members)
	}
}

// errRegistryChanged makes publish read the registry again.
var errRegistryChanged = errors.New("tiercache: the fleet registry changed")

// publish writes me into the registry under me.ID, dropping the members not seen for
// fleetForgetAfter heartbeats, and returns the members written. It reads
// the registry, then writes it back on the condition that it did not
// change meanwhile (CompareAndSwap), a few times at most.
func (c *Cache) publish(ctx context.Context, me FleetMember) (map[string]FleetMember, error) {
	f := c.fleet
	sw, ok := c.guard.s.(l2.Swapper)
	if !ok {
		return nil, errors.New("tiercache: the L2 cannot compare and swap")
	}
	forget := time.Duration(fleetForgetAfter) * f.period
	var err error
	for range 5 {
		var cur []byte
		cur, err = c.guard.s.Get(ctx, f.key)
		if err != nil && !errors.Is(err, l2.ErrNotFound) {
			return nil, err
		}
		// Redis answered on the tracked connections, as an L2 operation
		// through the guard would have: the invalidation link is up (the
		// tracking check, and so this heartbeat's health, say so).
		c.obs.l2OKAt.Store(time.Now().UnixNano())
		reg := decodeRegistry(cur)
		me.LastSeen = f.clock.now()
		for id, m := range reg.Members {
			if me.LastSeen.Sub(m.LastSeen) > forget {
				delete(reg.Members, id)
			}
		}
		reg.Members[me.ID] = me
		val, merr := json.Marshal(reg)
		if merr != nil {
			return nil, merr
		}
		err = sw.CompareAndSwap(ctx, f.key, func(_ context.Context, now []byte) error {
			if !bytes.Equal(now, cur) {
				return errRegistryChanged
			}
			return nil
		}, val, forget)
		if err == nil {
			return reg.Members, nil
		}
		if !errors.Is(err, errRegistryChanged) && !errors.Is(err, l2.ErrConflict) {
			return nil, err
		}
	}
	return nil, err
}

// decodeRegistry reads the registry; a missing or unreadable one is empty.
func decodeRegistry(b []byte) fleetRegistry {
	var reg fleetRegistry
	if len(b) > 0 {
		_ = json.Unmarshal(b, &reg)
	}
	if reg.Members == nil {
		reg.Members = map[string]FleetMember{}
	}
	return reg
}

// selfMember is this instance's heartbeat, without LastSeen.
func (c *Cache) selfMember(ctx context.Context) FleetMember {
	f := c.fleet
	cn := c.Counters()
	m := FleetMember{
		ID: f.id, Address: c.opts.Fleet.Address, Version: c.opts.Fleet.Version,
		Health: c.quickHealth(cn), Config: f.config,
		L1Entries: cn.L1Entries, L1Bytes: cn.L1Bytes, QueueLength: cn.QueueLength,
		LinkResets: cn.LinkResets, Breaker: cn.Breaker,
		CanaryInterval: c.opts.Canary.Interval, Started: f.started.Add(f.clock.offset()),
	}
	// The cached version, else Redis's, read without caching it: a
	// version 0 (no key yet) must not be cached for writers to record.
	if ns := c.vers.ns.Load(); ns > 0 {
		m.Epoch = ns - 1
	} else if b, err := c.guard.s.Get(ctx, c.vers.nsKey); err == nil {
		m.Epoch, _ = strconv.ParseUint(string(b), 10, 64)
	}
	if c.canary != nil {
		st := c.canary.stats()
		m.CoherenceLagP99, m.MarkersMissed = st.Lag.P99, st.Missed
	}
	return m
}

// quickHealth is FleetMember.Health: a verdict from local state only.
func (c *Cache) quickHealth(cn Counters) HealthStatus {
	switch {
	case cn.Breaker == BreakerOpen || !c.Connected():
		return Unhealthy
	case cn.Breaker == BreakerHalfOpen || !c.trackingCheck().Up || cn.QueueLength > 0:
		return Degraded
	}
	return Healthy
}

// Fleet lists the instances of the namespace that publish heartbeats
// (Options.Fleet), this one included: each with its state (live, silent,
// stopped), its age on Redis's clock, and how it disagrees with most live
// members. It costs one GET. It returns ErrFleetDisabled when this
// instance's Fleet.Enabled is off.
func (c *Cache) Fleet(ctx context.Context) (Fleet, error) {
	if c.closed.Load() {
		return Fleet{}, fleetError{ErrClosed}
	}
	f := c.fleet
	if f == nil {
		return Fleet{}, ErrFleetDisabled
	}
	ctx, cancel := context.WithTimeout(ctx, c.bgTimeout())
	defer cancel()
	raw, err := c.guard.s.Get(ctx, f.key)
	if err != nil && !errors.Is(err, l2.ErrNotFound) {
		return Fleet{}, fleetError{err}
	}
	reg := decodeRegistry(raw)
	silent := time.Duration(fleetSilentAfter) * f.period
	out := Fleet{Namespace: c.opts.Namespace, Self: f.id, Now: f.clock.now(), Heartbeat: f.period, SilentAfter: silent}
	for _, m := range reg.Members {
		m.Age = max(out.Now.Sub(m.LastSeen), 0)
		m.Self = m.ID == f.id
		switch {
		case m.Stopped:
			m.State = "stopped"
			out.Stopped++
		case m.Age > silent:
			m.State = "silent"
			out.Silent++
		default:
			m.State = "live"
			out.Live++
		}
		out.Members = append(out.Members, m)
	}
	slices.SortFunc(out.Members, func(a, b FleetMember) int { return cmp.Compare(a.ID, b.ID) })
	flagDisagreements(out.Members)
	for _, m := range out.Members {
		if len(m.Disagrees) > 0 {
			out.Disagreeing++
		}
	}
	if out.Members == nil {
		out.Members = []FleetMember{}
	}
	return out, nil
}

// fleetError is an error of Cache.Fleet: "tiercache: fleet: <cause>", the
// prefix once.
type fleetError struct{ err error }

func (e fleetError) Error() string { return "tiercache: fleet: " + trimPrefix(e.err) }
func (e fleetError) Unwrap() error { return e.err }

// flagDisagreements sets Disagrees on the live members whose epoch,
// version or config differs from the most common one among live members
// (ties go to the highest epoch, and to the first value in order for the
// others).
func flagDisagreements(ms []FleetMember) {
	type field struct {
		name string
		get  func(*FleetMember) string
	}
	fields := []field{
		{"epoch", func(m *FleetMember) string {
			if m.Epoch == 0 {
				return ""
			}
			return fmt.Sprintf("%020d", m.Epoch)
		}},
		{"version", func(m *FleetMember) string { return m.Version }},
		{"config", func(m *FleetMember) string { return m.Config }},
	}
	for _, fd := range fields {
		count := map[string]int{}
		for i := range ms {
			if v := fd.get(&ms[i]); ms[i].State == "live" && v != "" {
				count[v]++
			}
		}
		if len(count) < 2 {
			continue
		}
		var best string
		for v, n := range count {
			if n > count[best] || (n == count[best] && (fd.name == "epoch") == (v > best)) {
				best = v
			}
		}
		show := func(v string) string {
			if fd.name == "epoch" {
				n, _ := strconv.ParseUint(v, 10, 64)
				return strconv.FormatUint(n, 10)
			}
			return strconv.Quote(v)
		}
		for i := range ms {
			if v := fd.get(&ms[i]); ms[i].State == "live" && v != "" && v != best {
				ms[i].Disagrees = append(ms[i].Disagrees, fmt.Sprintf("%s %s, most have %s", fd.name, show(v), show(best)))
			}
		}
	}
}
