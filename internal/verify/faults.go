package verify

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// Fault is a fault step the operator allowed: Do runs once, At after the
// start of the run.
type Fault struct {
	Name string
	At   time.Duration
	Do   func(ctx context.Context) error
	// Instance names the one instance the fault hits; empty means the
	// deployment as a whole.
	Instance string
	// Tolerance is how much staler than Grace the reads of Instance may
	// be when they begin within Tolerance of the fault: what the cache's
	// guarantees allow it (a paused link is noticed within the cache's
	// LivenessBound). Zero allows nothing beyond Grace.
	Tolerance time.Duration
}

// FaultReport is what one fault step did and cost.
type FaultReport struct {
	Name     string        `json:"name"`
	At       time.Duration `json:"at_ns"`
	Instance string        `json:"instance,omitempty"`
	Error    string        `json:"error,omitempty"`
	// WriteOutage is the longest time, from the fault on, during which
	// no write, delete or invalidation was acknowledged by any instance.
	WriteOutage time.Duration `json:"write_outage_ns"`
	// InstanceOutage is, for a fault on one instance, the longest time
	// from the fault on during which that instance answered no operation
	// (no acknowledged write, no read answered), and InstanceErrors the
	// operations of that instance that failed from the fault on.
	InstanceOutage time.Duration `json:"instance_outage_ns,omitempty"`
	InstanceErrors int           `json:"instance_errors,omitempty"`
	// Tolerance is the fault's Tolerance.
	Tolerance time.Duration `json:"tolerance_ns,omitempty"`
}

// runFaults runs each fault at its time; it returns when all have run or
// ctx is done.
func (r *run) runFaults(ctx context.Context, begin time.Time) []FaultReport {
	reps := make([]FaultReport, len(r.cfg.Faults))
	for i, f := range r.cfg.Faults {
		reps[i] = FaultReport{Name: f.Name, At: f.At, Instance: f.Instance, Tolerance: f.Tolerance}
		select {
		case <-time.After(time.Until(begin.Add(f.At))):
		case <-ctx.Done():
			reps[i].Error = "not run: the run ended first"
			continue
		}
		if err := f.Do(ctx); err != nil {
			reps[i].Error = err.Error()
		}
	}
	return reps
}

// outage is the longest gap between acknowledgements after from, the
// end of the run closing the last gap.
func (r *run) outage(from, end time.Time) time.Duration {
	var acks []time.Time
	for _, ops := range r.groups {
		for _, o := range ops {
			if !o.failed && o.ack.After(from) {
				acks = append(acks, o.ack)
			}
		}
	}
	return longestGap(acks, from, end)
}

// instanceOutage is outage for the operations of instance inst, reads
// included; it also counts the instance's failed operations after from.
func (r *run) instanceOutage(inst int, from, end time.Time) (gap time.Duration, failed int) {
	var answers []time.Time
	for g, ops := range r.groups {
		if g%len(r.cfg.Instances) != inst {
			continue
		}
		for _, o := range ops {
			switch {
			case !o.ack.After(from):
			case !o.failed:
				answers = append(answers, o.ack)
			case !o.cut:
				failed++
			}
		}
	}
	for _, reads := range r.reads {
		for _, rd := range reads {
			switch {
			case rd.inst != inst || !rd.end.After(from):
			case rd.err:
				failed++
			default:
				answers = append(answers, rd.end)
			}
		}
	}
	return longestGap(answers, from, end), failed
}

// longestGap is the longest time between from, the times (in any order)
// and end.
func longestGap(times []time.Time, from, end time.Time) time.Duration {
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	prev, worst := from, time.Duration(0)
	for _, a := range append(times, end) {
		worst = max(worst, a.Sub(prev))
		prev = a
	}
	return worst
}

// graceFor is the grace of a read: Grace, plus the Tolerance of a fault
// on the read's instance that began at most Tolerance before the read.
func (r *run) graceFor(rd read) time.Duration {
	grace := r.cfg.Grace
	for _, f := range r.cfg.Faults {
		if f.Tolerance <= 0 || f.Instance != r.cfg.Instances[rd.inst].Name() {
			continue
		}
		at := r.begin.Add(f.At)
		if !rd.start.Before(at) && rd.start.Sub(at) <= f.Tolerance {
			grace = max(grace, r.cfg.Grace+f.Tolerance)
		}
	}
	return grace
}

// Link carries one instance's connections to Redis (set Dial as the
// instance's RedisOptions.DialContext) and can hold them still: while
// paused, nothing the instance sends reaches Redis and nothing Redis sends
// reaches it, and no connection closes, as with a stalled network path or
// a frozen peer. Resume lets everything held through, in order.
type Link struct {
	mu   sync.Mutex
	gate chan struct{} // closed on Resume; nil while not paused
}

// Dial opens a TCP connection that the link can pause.
func (l *Link) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &pausable{Conn: c, link: l, closed: make(chan struct{})}, nil
}

// Pause holds every connection of the link still until Resume.
func (l *Link) Pause() {
	l.mu.Lock()
	if l.gate == nil {
		l.gate = make(chan struct{})
	}
	l.mu.Unlock()
}

// Resume lets the held traffic through.
func (l *Link) Resume() {
	l.mu.Lock()
	if l.gate != nil {
		close(l.gate)
		l.gate = nil
	}
	l.mu.Unlock()
}

// wait blocks while the link is paused, until the connection closes or
// the deadline (zero: none) passes, as a stalled network path would.
func (l *Link) wait(closed <-chan struct{}, deadline time.Time) error {
	l.mu.Lock()
	g := l.gate
	l.mu.Unlock()
	if g == nil {
		return nil
	}
	var expired <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-g:
		return nil
	case <-closed:
		return net.ErrClosed
	case <-expired:
		return os.ErrDeadlineExceeded
	}
}

// pausable is a connection of a Link: bytes read while the link is paused
// are handed over once it resumes, and writes wait for it; both honour
// the connection's deadlines meanwhile.
type pausable struct {
	net.Conn
	link   *Link
	closed chan struct{}
	once   sync.Once
	mu     sync.Mutex
	rd, wd time.Time // read and write deadlines
	held   []byte    // read while paused; only the reading goroutine uses it
}

func (p *pausable) deadlines() (rd, wd time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rd, p.wd
}

// Read hands over what arrived only while the link flows; what arrives
// while it is paused waits in held, in order, for the next Read.
func (p *pausable) Read(b []byte) (int, error) {
	rd, _ := p.deadlines()
	if len(p.held) > 0 {
		if err := p.link.wait(p.closed, rd); err != nil {
			return 0, err
		}
		n := copy(b, p.held)
		p.held = p.held[n:]
		return n, nil
	}
	n, err := p.Conn.Read(b)
	if n > 0 {
		rd, _ = p.deadlines()
		if werr := p.link.wait(p.closed, rd); werr != nil {
			p.held = append(p.held, b[:n]...)
			return 0, werr
		}
	}
	return n, err
}

func (p *pausable) Write(b []byte) (int, error) {
	_, wd := p.deadlines()
	if err := p.link.wait(p.closed, wd); err != nil {
		return 0, err
	}
	return p.Conn.Write(b)
}

func (p *pausable) SetDeadline(t time.Time) error {
	p.mu.Lock()
	p.rd, p.wd = t, t
	p.mu.Unlock()
	return p.Conn.SetDeadline(t)
}

func (p *pausable) SetReadDeadline(t time.Time) error {
	p.mu.Lock()
	p.rd = t
	p.mu.Unlock()
	return p.Conn.SetReadDeadline(t)
}

func (p *pausable) SetWriteDeadline(t time.Time) error {
	p.mu.Lock()
	p.wd = t
	p.mu.Unlock()
	return p.Conn.SetWriteDeadline(t)
}

func (p *pausable) Close() error {
	p.once.Do(func() { close(p.closed) })
	return p.Conn.Close()
}

// LinkPause returns a fault step that pauses link, the connections of
// instance inst, for d, then resumes it. tolerance is the fault's
// Tolerance: for a library cache, its LivenessBound.
func LinkPause(inst Instance, link *Link, d, tolerance time.Duration) Fault {
	return Fault{Name: "link-pause", Instance: inst.Name(), Tolerance: tolerance, Do: func(ctx context.Context) error {
		link.Pause()
		defer link.Resume()
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done(): // the run ended first: resume now
		}
		return nil
	}}
}

// SentinelFailover returns a fault step that asks the sentinels, one after
// the other until one accepts, to fail master over (SENTINEL FAILOVER).
func SentinelFailover(sentinels []string, username, password, master string) Fault {
	return Fault{Name: "sentinel-failover", Do: func(ctx context.Context) error {
		var last error
		for _, addr := range sentinels {
			c, err := rueidis.NewClient(rueidis.ClientOption{
				InitAddress: []string{addr}, Username: username, Password: password,
				DisableCache: true, ForceSingleClient: true, DisableRetry: true,
			})
			if err != nil {
				last = err
				continue
			}
			err = c.Do(ctx, c.B().Arbitrary("SENTINEL", "FAILOVER").Args(master).Build()).Error()
			c.Close()
			if err == nil {
				return nil
			}
			last = err
		}
		return fmt.Errorf("SENTINEL FAILOVER %s: %w", master, last)
	}}
}
