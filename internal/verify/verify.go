// Package verify proves a live tiercache deployment coherent. Several
// instances (library caches on the operator's Redis, or running services)
// write, delete, invalidate tags and read concurrently; every operation is
// recorded with its time and outcome, and the history is checked
// afterwards: no read may return a state older than the last acknowledged
// write, delete or invalidation of its key by more than a grace period,
// and after the writers stop every instance must read every key's final
// state.
//
// Each tag group has one writer, so the operations on a key form a
// sequence, and each value written names its place in that sequence. A
// read's answer therefore says which operation produced it, and the check
// compares that with the operations acknowledged before the read began.
package verify

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNotFound is what Instance.Get returns for an absent key.
var ErrNotFound = errors.New("verify: not found")

// ErrStale is what Instance.Get returns for an answer the cache flagged
// as stale (fail-safe, while Redis fails): the client is told, so it is
// not checked, only counted.
var ErrStale = errors.New("verify: answer flagged stale")

// Instance is one cache instance under test.
type Instance interface {
	// Name identifies the instance in the report.
	Name() string
	// Get reads key; ErrNotFound when absent.
	Get(ctx context.Context, key string) (string, error)
	// Set writes key with the tags and TTL; nil means acknowledged:
	// applied in Redis.
	Set(ctx context.Context, key, value string, tags []string, ttl time.Duration) error
	// Delete deletes key; nil means acknowledged.
	Delete(ctx context.Context, key string) error
	// Invalidate invalidates the entries written with tag; nil means
	// acknowledged.
	Invalidate(ctx context.Context, tag string) error
}

// Defaults of Config.
const (
	DefaultDuration = 10 * time.Second
	MaxDuration     = 10 * time.Minute
	DefaultKeys     = 64
	DefaultGroups   = 8
	DefaultGrace    = 100 * time.Millisecond
	DefaultMaxOps   = 200_000
	DefaultReaders  = 2
	// settleTimeout bounds the final reads, and cleanupTimeout the
	// cleanup, beyond Duration.
	settleTimeout  = 10 * time.Second
	cleanupTimeout = 10 * time.Second
	// maxExamples is how many violations the report details.
	maxExamples = 20
)

// Config configures a Run. Zero fields take the defaults above.
type Config struct {
	Instances []Instance // at least two
	Duration  time.Duration
	Keys      int           // keys used, spread over Groups tags
	Groups    int           // tags; each has one writer
	Grace     time.Duration // how stale a read may be after an acknowledgement
	MaxOps    int           // bound on the operations of the run, reads included
	Readers   int           // reading goroutines per instance
	// Prefix starts every key and tag of the run; empty means
	// "tiercache-verify/<random>/".
	Prefix string
	// TTL of every value written; zero means ten minutes (long enough
	// never to expire during a run).
	TTL time.Duration
	// Faults are fault steps to run during the workload. With any, failed
	// operations are expected and do not fail the run by themselves
	// (their outcome is unknown, and the check allows either); stale reads
	// and lost writes or invalidations still do.
	Faults []Fault
	// Cleanup runs after the checks, to remove what the run wrote: its
	// keys and the tags it invalidated.
	Cleanup func(ctx context.Context, keys, tags []string) error
}

// Report is the outcome of a Run.
type Report struct {
	Pass       bool          `json:"pass"`
	Instances  []string      `json:"instances"`
	Duration   time.Duration `json:"duration_ns"`
	Grace      time.Duration `json:"grace_ns"`
	Prefix     string        `json:"prefix"` // of every key of the run
	Keys       int           `json:"keys"`
	Groups     int           `json:"groups"`
	Writes     int           `json:"writes"`
	Deletes    int           `json:"deletes"`
	Invalidate int           `json:"invalidations"`
	Reads      int           `json:"reads"`
	// Errors counts operations that failed (their outcome is unknown and
	// they are checked as possibly applied).
	Errors int `json:"errors"`
	// FlaggedStale counts answers the cache flagged as stale (fail-safe
	// while Redis failed): not checked, since the client is told.
	FlaggedStale int `json:"flagged_stale"`
	// StaleWithinGrace counts reads that missed an acknowledged change by
	// less than Grace: allowed, and the source of Lag.
	StaleWithinGrace int `json:"stale_within_grace"`
	// Lag is how long after an acknowledgement another instance could
	// still read the older state, over every (operation, instance) pair.
	Lag Percentiles `json:"lag"`
	// Violations counts reads that broke the rule; Lost counts the
	// (instance, key) pairs still read wrong after the writers stopped.
	Violations int         `json:"violations"`
	Lost       int         `json:"lost"`
	Examples   []Violation `json:"examples,omitempty"`
	// LostInRedis counts the keys that every instance read wrong, and
	// the same: Redis itself lost the acknowledged operation (such as a
	// failover without synchronous replication), not one instance's L1.
	LostInRedis int `json:"lost_in_redis"`
	// ErrorExamples are the first few errors, with their instance.
	ErrorExamples []string `json:"error_examples,omitempty"`
	// Problem says why a run without violations did not pass.
	Problem string        `json:"problem,omitempty"`
	Faults  []FaultReport `json:"faults,omitempty"`
	Stopped string        `json:"stopped"` // why the run ended: "duration" or "max-ops"
	Cleanup string        `json:"cleanup"` // "done" or the error
}

// Percentiles of a duration distribution.
type Percentiles struct {
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
	N   int           `json:"samples"`
}

// Violation is one read that broke the rule.
type Violation struct {
	Instance string        `json:"instance"`
	Key      string        `json:"key"`
	Got      string        `json:"got"`  // the state read
	Want     string        `json:"want"` // the state acknowledged before the read
	Late     time.Duration `json:"late_ns"`
	Final    bool          `json:"final"` // found by the reads after the writers stopped
}

func (v Violation) String() string {
	when := fmt.Sprintf("%v after it was acknowledged", v.Late.Round(time.Microsecond))
	if v.Final {
		when = "after the writers stopped, " + when
	}
	return fmt.Sprintf("%s read %s as %s, %s was acknowledged: %s", v.Instance, v.Key, v.Got, v.Want, when)
}

// opKind is what a writer did.
type opKind uint8

const (
	opSet opKind = iota
	opDel
	opInv
)

// op is one writer operation, in its group's sequence.
type op struct {
	kind       opKind
	key        int // key index; -1 for an invalidation
	start, ack time.Time
	failed     bool
	cut        bool // failed because the run ended: not counted as an error
}

// read is one read.
type read struct {
	inst       int
	key        int
	start, end time.Time
	found      bool
	seq        int // the sequence number the value names
	err        bool
}

// run is one Run's state.
type run struct {
	cfg    Config
	groups [][]op // per group, in sequence order
	reads  [][]read
	ops    atomic.Int64
	stop   atomic.Bool
	why    atomic.Value

	begin   time.Time // when the workload started
	end     time.Time // when the workload stops taking operations
	flagged atomic.Int64
	errMu   sync.Mutex
	errs    []string // the first few errors
}

// noteErr keeps err as an example.
func (r *run) noteErr(inst Instance, op string, err error) {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	if len(r.errs) < 5 {
		r.errs = append(r.errs, inst.Name()+" "+op+": "+err.Error())
	}
}

// Run runs the workload for cfg.Duration (or until cfg.MaxOps
// operations), checks the history and returns the report. It returns an
// error only when the run could not be made at all; violations are in the
// report. ctx bounds everything: the run ends early when it is done.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if err := cfg.defaults(); err != nil {
		return Report{}, err
	}
	r := &run{cfg: cfg, groups: make([][]op, cfg.Groups), reads: make([][]read, len(cfg.Instances)*cfg.Readers)}
	hard, cancel := context.WithTimeout(ctx, cfg.Duration+settleTimeout+cleanupTimeout)
	defer cancel()
	begin := time.Now()
	// Operations run on hard, not on a context that ends with Duration:
	// cutting them off would count, in the caches, as Redis failing.
	// The loops stop taking new ones at the end.
	r.begin, r.end = begin, begin.Add(cfg.Duration)
	var wg sync.WaitGroup
	for g := range cfg.Groups {
		wg.Go(func() { r.writer(hard, g) })
	}
	for i := range cfg.Instances {
		for j := range cfg.Readers {
			wg.Go(func() { r.reader(hard, i, i*cfg.Readers+j) })
		}
	}
	var faults []FaultReport
	if len(cfg.Faults) > 0 {
		fctx, stopFaults := context.WithDeadline(hard, r.end)
		done := make(chan struct{})
		go func() { faults = r.runFaults(fctx, begin); close(done) }()
		wg.Wait()
		stopFaults()
		<-done
	}
	wg.Wait()
	end := time.Now()
	rep := r.check()
	for i := range faults {
		if faults[i].Error != "" {
			continue
		}
		from := begin.Add(faults[i].At)
		faults[i].WriteOutage = r.outage(from, end)
		for j, in := range cfg.Instances {
			if in.Name() == faults[i].Instance {
				faults[i].InstanceOutage, faults[i].InstanceErrors = r.instanceOutage(j, from, end)
			}
		}
	}
	rep.Faults = faults
	rep.Duration = time.Since(begin)
	if w, _ := r.why.Load().(string); w != "" {
		rep.Stopped = w
	} else {
		rep.Stopped = "duration"
	}
	r.final(hard, &rep)
	rep.ErrorExamples = r.errs
	rep.FlaggedStale = int(r.flagged.Load())
	rep.Pass = rep.Violations == 0 && rep.Lost == 0
	switch {
	case rep.Writes == 0 || rep.Reads == rep.Errors:
		rep.Pass, rep.Problem = false, "nothing was acknowledged or read: the run proves nothing"
	case rep.Errors > 0 && len(cfg.Faults) == 0:
		rep.Pass, rep.Problem = false, fmt.Sprintf("%d operations failed: a correct deployment answers every one", rep.Errors)
	}
	rep.Cleanup = "done"
	if cfg.Cleanup != nil {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer ccancel()
		if err := cfg.Cleanup(cctx, r.keyNames(), r.tagNames()); err != nil {
			rep.Cleanup = err.Error()
		}
	}
	return rep, nil
}

func (c *Config) defaults() error {
	if len(c.Instances) < 2 {
		return fmt.Errorf("verify: %d instances; coherence needs at least two", len(c.Instances))
	}
	switch {
	case c.Duration == 0:
		c.Duration = DefaultDuration
	case c.Duration < 0 || c.Duration > MaxDuration:
		return fmt.Errorf("verify: duration %v outside (0, %v]", c.Duration, MaxDuration)
	}
	for _, f := range c.Faults {
		if f.At < 0 || f.At >= c.Duration || f.Do == nil {
			return fmt.Errorf("verify: fault %q at %v is outside the run's %v", f.Name, f.At, c.Duration)
		}
	}
	if c.Keys == 0 {
		c.Keys = DefaultKeys
	}
	if c.Groups == 0 {
		c.Groups = min(DefaultGroups, c.Keys)
	}
	if c.Grace == 0 {
		c.Grace = DefaultGrace
	}
	if c.MaxOps == 0 {
		c.MaxOps = DefaultMaxOps
	}
	if c.Readers == 0 {
		c.Readers = DefaultReaders
	}
	if c.TTL == 0 {
		c.TTL = 10 * time.Minute
	}
	switch {
	case c.Keys < 1 || c.Keys > 100_000:
		return fmt.Errorf("verify: %d keys outside [1, 100000]", c.Keys)
	case c.Groups < 1 || c.Groups > c.Keys:
		return fmt.Errorf("verify: %d groups outside [1, keys]", c.Groups)
	case c.Grace < 0:
		return fmt.Errorf("verify: negative grace %v", c.Grace)
	case c.MaxOps < 1 || c.MaxOps > 10_000_000:
		return fmt.Errorf("verify: max ops %d outside [1, 10000000]", c.MaxOps)
	case c.Readers < 1 || c.Readers > 64:
		return fmt.Errorf("verify: %d readers outside [1, 64]", c.Readers)
	}
	if c.Prefix == "" {
		c.Prefix = "tiercache-verify/" + strconv.FormatUint(rand.Uint64()>>16, 36) + "/"
	}
	return nil
}

func (r *run) keyName(k int) string { return r.cfg.Prefix + "k" + strconv.Itoa(k) }
func (r *run) tagName(g int) string {
	return strings.ReplaceAll(r.cfg.Prefix, "/", "-") + "g" + strconv.Itoa(g)
}

// value is what the set with sequence number seq of group g writes.
func (r *run) value(g, seq int) string {
	return r.cfg.Prefix + strconv.Itoa(g) + "/" + strconv.Itoa(seq)
}

// parse returns the sequence number a value names, or -1 when it is not
// a value of this run's group g.
func (r *run) parse(g int, v string) int {
	rest, ok := strings.CutPrefix(v, r.cfg.Prefix+strconv.Itoa(g)+"/")
	if !ok {
		return -1
	}
	n, err := strconv.Atoi(rest)
	if err != nil {
		return -1
	}
	return n
}

func (r *run) keyNames() []string {
	ks := make([]string, r.cfg.Keys)
	for k := range ks {
		ks[k] = r.keyName(k)
	}
	return ks
}

func (r *run) tagNames() []string {
	ts := make([]string, r.cfg.Groups)
	for g := range ts {
		ts[g] = r.tagName(g)
	}
	return ts
}

// take counts one operation against MaxOps; false means stop: the run
// reached MaxOps or its duration.
func (r *run) take() bool {
	if r.stop.Load() {
		return false
	}
	if !time.Now().Before(r.end) {
		r.stop.Store(true)
		return false
	}
	if r.ops.Add(1) > int64(r.cfg.MaxOps) {
		r.why.CompareAndSwap(nil, "max-ops")
		r.stop.Store(true)
		return false
	}
	return true
}

// keysOf returns group g's key indexes.
func (r *run) keysOf(g int) []int {
	var ks []int
	for k := g; k < r.cfg.Keys; k += r.cfg.Groups {
		ks = append(ks, k)
	}
	return ks
}

// writer runs group g's operations from instance g mod N: 60% sets, 20%
// deletes, 20% invalidations of the group's tag.
func (r *run) writer(ctx context.Context, g int) {
	inst := r.cfg.Instances[g%len(r.cfg.Instances)]
	keys := r.keysOf(g)
	tags := []string{r.tagName(g)}
	for ctx.Err() == nil && r.take() {
		seq := len(r.groups[g])
		o := op{key: keys[rand.IntN(len(keys))], start: time.Now()}
		var err error
		switch p := rand.IntN(10); {
		case p < 6:
			o.kind = opSet
			err = inst.Set(ctx, r.keyName(o.key), r.value(g, seq), tags, r.cfg.TTL)
		case p < 8:
			o.kind = opDel
			err = inst.Delete(ctx, r.keyName(o.key))
		default:
			o.kind, o.key = opInv, -1
			err = inst.Invalidate(ctx, tags[0])
		}
		o.ack = time.Now()
		o.failed = err != nil
		o.cut = o.failed && ctx.Err() != nil
		if o.failed && !o.cut {
			r.noteErr(inst, [...]string{"write", "delete", "invalidate"}[o.kind], err)
		}
		r.groups[g] = append(r.groups[g], o)
	}
}

// reader reads random keys from instance i into slot.
func (r *run) reader(ctx context.Context, i, slot int) {
	inst := r.cfg.Instances[i]
	for ctx.Err() == nil && r.take() {
		k := rand.IntN(r.cfg.Keys)
		rd := read{inst: i, key: k, start: time.Now()}
		v, err := inst.Get(ctx, r.keyName(k))
		rd.end = time.Now()
		switch {
		case errors.Is(err, ErrNotFound):
		case errors.Is(err, ErrStale):
			r.flagged.Add(1)
			continue
		case err != nil:
			if ctx.Err() != nil {
				return // cut off by the end of the run: no answer
			}
			rd.err = true
			r.noteErr(inst, "read", err)
		default:
			rd.found = true
			rd.seq = r.parse(k%r.cfg.Groups, v)
		}
		r.reads[slot] = append(r.reads[slot], rd)
	}
}
