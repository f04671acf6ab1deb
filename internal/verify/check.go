package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// maxMissedPerRead bounds the work one stale read costs the check (a
// broken instance can miss every operation of the run).
const maxMissedPerRead = 1000

// affecting returns, per key, the sequence numbers of its group's
// operations that change it: its sets and deletes and the group's
// invalidations, in order.
func (r *run) affecting() [][]int {
	aff := make([][]int, r.cfg.Keys)
	for g, ops := range r.groups {
		for seq, o := range ops {
			if o.kind == opInv {
				for _, k := range r.keysOf(g) {
					aff[k] = append(aff[k], seq)
				}
				continue
			}
			aff[o.key] = append(aff[o.key], seq)
		}
	}
	return aff
}

// produced returns the position in aff (the key's operations) of the
// operation a read's answer comes from, or -1 for the initial state; ok
// is false when no operation can have produced it.
func (r *run) produced(g int, aff []int, rd read) (pos int, ok bool) {
	ops := r.groups[g]
	if rd.found {
		p, hit := slices.BinarySearch(aff, rd.seq)
		if !hit || ops[rd.seq].kind != opSet || ops[rd.seq].start.After(rd.end) {
			return 0, false
		}
		return p, true
	}
	// An absence: the latest delete or invalidation begun before the read
	// ended is the most favourable explanation.
	for p := len(aff) - 1; p >= 0; p-- {
		o := ops[aff[p]]
		if o.kind != opSet && !o.start.After(rd.end) {
			return p, true
		}
	}
	return -1, true
}

// lagKey names an (operation, instance) pair.
type lagKey struct{ g, seq, inst int }

// check goes through every read.
func (r *run) check() Report {
	rep := Report{Prefix: r.cfg.Prefix, Keys: r.cfg.Keys, Groups: r.cfg.Groups, Grace: r.cfg.Grace}
	for _, in := range r.cfg.Instances {
		rep.Instances = append(rep.Instances, in.Name())
	}
	acked := 0
	for _, ops := range r.groups {
		for _, o := range ops {
			switch {
			case o.failed && o.cut:
			case o.failed:
				rep.Errors++
			case o.kind == opSet:
				rep.Writes++
			case o.kind == opDel:
				rep.Deletes++
			default:
				rep.Invalidate++
			}
			if !o.failed {
				acked++
			}
		}
	}
	aff := r.affecting()
	lag := map[lagKey]time.Duration{}
	for _, reads := range r.reads {
		for _, rd := range reads {
			rep.Reads++
			if rd.err {
				rep.Errors++
				continue
			}
			r.checkRead(&rep, aff[rd.key], rd, lag, r.graceFor(rd))
		}
	}
	rep.Lag = percentiles(lag, acked*len(r.cfg.Instances))
	return rep
}

// checkRead checks one read against the operations acknowledged before
// it began, allowing grace; lag, when not nil, collects the staleness of
// every (operation, instance) pair.
func (r *run) checkRead(rep *Report, aff []int, rd read, lag map[lagKey]time.Duration, grace time.Duration) {
	g := rd.key % r.cfg.Groups
	ops := r.groups[g]
	pos, ok := r.produced(g, aff, rd)
	if !ok {
		rep.Violations++
		r.example(rep, Violation{Instance: r.cfg.Instances[rd.inst].Name(), Key: r.keyName(rd.key),
			Got: r.state(g, rd), Want: "a value this run wrote before the read ended"})
		return
	}
	var worst time.Duration
	want := -1
	n := 0
	for p := pos + 1; p < len(aff) && n < maxMissedPerRead; p++ {
		o := ops[aff[p]]
		if !o.ack.Before(rd.start) {
			break // acknowledged after the read began: either answer is right
		}
		if o.failed {
			continue
		}
		n++
		late := rd.start.Sub(o.ack)
		if lag != nil {
			k := lagKey{g, aff[p], rd.inst}
			lag[k] = max(lag[k], late)
		}
		if late > worst {
			worst, want = late, aff[p]
		}
	}
	switch {
	case n == 0:
	case worst > grace:
		rep.Violations++
		r.example(rep, Violation{Instance: r.cfg.Instances[rd.inst].Name(), Key: r.keyName(rd.key),
			Got: r.state(g, rd), Want: r.opText(g, want), Late: worst})
	default:
		rep.StaleWithinGrace++
	}
}

// example keeps v as an example, one per instance and key.
func (r *run) example(rep *Report, v Violation) {
	if len(rep.Examples) >= maxExamples {
		return
	}
	for _, e := range rep.Examples {
		if e.Instance == v.Instance && e.Key == v.Key && e.Final == v.Final {
			return
		}
	}
	rep.Examples = append(rep.Examples, v)
}

// state describes what a read returned.
func (r *run) state(g int, rd read) string {
	if !rd.found {
		return "absent"
	}
	if rd.seq < 0 {
		return "a value this run did not write"
	}
	return fmt.Sprintf("the value of write #%d", rd.seq)
}

// opText describes operation seq of group g.
func (r *run) opText(g, seq int) string {
	switch o := r.groups[g][seq]; o.kind {
	case opSet:
		return fmt.Sprintf("write #%d", seq)
	case opDel:
		return fmt.Sprintf("delete #%d", seq)
	default:
		return fmt.Sprintf("invalidation #%d of tag %s", seq, r.tagName(g))
	}
}

// percentiles summarises the lags of n pairs; pairs absent from lag had
// none.
func percentiles(lag map[lagKey]time.Duration, n int) Percentiles {
	vals := make([]time.Duration, 0, len(lag))
	for _, d := range lag {
		vals = append(vals, d)
	}
	sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
	n = max(n, len(vals))
	p := Percentiles{N: n}
	if n == 0 {
		return p
	}
	at := func(q float64) time.Duration {
		i := int(q*float64(n-1)+0.5) - (n - len(vals)) // the zeros come first
		if i < 0 {
			return 0
		}
		return vals[i]
	}
	p.P50, p.P99 = at(0.50), at(0.99)
	if len(vals) > 0 {
		p.Max = vals[len(vals)-1]
	}
	return p
}

// final waits for the grace to pass after the last acknowledgement, then
// reads every key from every instance: each must read its key's final
// state. Such a read that still misses an operation is an invalidation
// (or write) lost.
func (r *run) final(ctx context.Context, rep *Report) {
	last := time.Time{}
	for _, ops := range r.groups {
		for _, o := range ops {
			last = maxTime(last, o.ack)
		}
	}
	select {
	case <-time.After(time.Until(last.Add(r.cfg.Grace))):
	case <-ctx.Done():
		return
	}
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	aff := r.affecting()
	var mu sync.Mutex
	var wg sync.WaitGroup
	// seen[k][i] is what instance i read of key k ("" on an error), and
	// wrong[k] how many instances read it wrong.
	seen := make([][]string, r.cfg.Keys)
	for k := range seen {
		seen[k] = make([]string, len(r.cfg.Instances))
	}
	wrong := make([]int, r.cfg.Keys)
	for i, in := range r.cfg.Instances {
		wg.Go(func() {
			for k := range r.cfg.Keys {
				rd := read{inst: i, key: k, start: time.Now()}
				v, err := in.Get(ctx, r.keyName(k))
				rd.end = time.Now()
				switch {
				case errors.Is(err, ErrNotFound):
				case err != nil: // a flagged stale answer included: the final reads want the truth
					mu.Lock()
					rep.Errors++
					mu.Unlock()
					r.noteErr(in, "final read", err)
					continue
				default:
					rd.found, rd.seq = true, r.parse(k%r.cfg.Groups, v)
				}
				var tmp Report
				r.checkRead(&tmp, aff[k], rd, nil, -1)
				mu.Lock()
				seen[k][i] = r.state(k%r.cfg.Groups, rd)
				mu.Unlock()
				if tmp.Violations > 0 {
					mu.Lock()
					wrong[k]++
					rep.Lost++
					for _, e := range tmp.Examples {
						e.Final = true
						r.example(rep, e)
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for k, st := range seen {
		if wrong[k] == len(st) && !slices.Contains(st, "") && len(slices.Compact(slices.Clone(st))) == 1 {
			rep.LostInRedis++
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
