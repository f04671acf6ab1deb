package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// result is one library's figures for one workload, printed by the child
// process as JSON and gathered by the parent.
type result struct {
	Workload string  `json:"workload"`
	Lib      string  `json:"lib"`
	Value    float64 `json:"value"`           // ops/s, ns/op, loads/herd, p99 ms or hit ratio
	Extra    float64 `json:"extra,omitempty"` // ms/herd, or p50 ms
	Max      float64 `json:"max,omitempty"`   // max ms (staleness, herd)
	NA       string  `json:"na,omitempty"`    // why it was not measured
	Note     string  `json:"note,omitempty"`
}

type params struct {
	addr      string
	dur       time.Duration // per throughput case
	herds     int
	writes    int
	zipfKeys  int
	zipfOps   int
	zipfWarm  int
	zipfBytes int64
	zipfG     int
}

// zipfSeq returns a repeatable zipf (s = 1.01) sequence over n keys.
func zipfSeq(n, length int, seed uint64) []int {
	r := rand.New(rand.NewPCG(seed, 2))
	z := rand.NewZipf(r, 1.01, 1, uint64(n-1))
	out := make([]int, length)
	for i := range out {
		out[i] = int(z.Uint64())
	}
	return out
}

func keyNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

// value returns a deterministic, incompressible payload of n bytes for key.
func value(key string, n int) []byte {
	var h uint64 = 1469598103934665603
	for i := 0; i < len(key); i++ {
		h = (h ^ uint64(key[i])) * 1099511628211
	}
	r := rand.New(rand.NewPCG(h, 7))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

const readKeys = 1 << 12 // keys of the read workloads, as BenchmarkCache_Get

// runFor calls fn on g goroutines for d and returns the calls made and the
// wall time taken.
func runFor(g int, d time.Duration, fn func(i int) error) (int64, time.Duration, error) {
	var stop atomic.Bool
	var total atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := range g {
		wg.Go(func() {
			i := w * 7919
			var n int64
			for !stop.Load() {
				if err := fn(i); err != nil {
					firstErr.CompareAndSwap(nil, err)
					stop.Store(true)
				}
				i++
				n++
			}
			total.Add(n)
		})
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	el := time.Since(start)
	if e, ok := firstErr.Load().(error); ok {
		return 0, el, e
	}
	return total.Load(), el, nil
}

// l2Read: 64 goroutines read 128-byte values of 4096 keys in a zipf order
// with no local tier; the figure is ops/s.
func l2Read(p params, lib string) (result, error) {
	r := result{Workload: "l2read", Lib: lib}
	in, err := newInst(lib, instCfg{addr: p.addr, ns: "r:", localOff: true})
	if err != nil {
		return r, err
	}
	defer in.close()
	ctx := context.Background()
	keys := keyNames("bench:", readKeys)
	payload := value("payload", 128)
	for _, k := range keys {
		if err := in.set(ctx, k, payload); err != nil {
			return r, err
		}
	}
	seq := zipfSeq(readKeys, 1<<16, 1)
	read := func(i int) error {
		b, err := in.get(ctx, keys[seq[i&(len(seq)-1)]])
		if err == nil && len(b) != len(payload) {
			err = fmt.Errorf("read %d bytes, want %d", len(b), len(payload))
		}
		return err
	}
	for i := range readKeys { // warm the connections, check the values
		if err := read(i); err != nil {
			return r, err
		}
	}
	n, el, err := runFor(64, p.dur, read)
	if err != nil {
		return r, err
	}
	r.Value = float64(n) / el.Seconds()
	return r, nil
}

// l1Hit: 2 goroutines read 128-byte values of 4096 keys, all held in the
// local tier (64 MiB), in a zipf order; the figure is ns/op (wall time
// per operation, as go test's RunParallel reports it).
func l1Hit(p params, lib string) (result, error) {
	r := result{Workload: "l1hit", Lib: lib}
	in, err := newInst(lib, instCfg{addr: p.addr, ns: "h:", localBytes: 64 << 20, localEntries: 1 << 16})
	if err != nil {
		return r, err
	}
	defer in.close()
	ctx := context.Background()
	keys := keyNames("bench:", readKeys)
	payload := value("payload", 128)
	for _, k := range keys {
		if err := in.set(ctx, k, payload); err != nil {
			return r, err
		}
	}
	seq := zipfSeq(readKeys, 1<<16, 1)
	read := func(i int) error {
		b, err := in.get(ctx, keys[seq[i&(len(seq)-1)]])
		if err == nil && len(b) != len(payload) {
			err = fmt.Errorf("read %d bytes, want %d", len(b), len(payload))
		}
		return err
	}
	// Fill the local tiers: a read after a write (and, for client-side
	// caching, after the write's own invalidation) brings each key in.
	for range 3 {
		for _, k := range keys {
			if _, err := in.get(ctx, k); err != nil {
				return r, err
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	n, el, err := runFor(2, p.dur, read)
	if err != nil {
		return r, err
	}
	r.Value = float64(el.Nanoseconds()) / float64(n)
	if in.note != nil {
		r.Note = in.note()
	}
	return r, nil
}

// herd: 4 instances × 250 goroutines fetch one cold key at once through
// the library's loader API; the loader takes 50 ms. The figures are loader
// calls per herd and the herd's wall time.
func herd(p params, lib string) (result, error) {
	r := result{Workload: "herd", Lib: lib}
	const instances, goroutines, loadTime = 4, 250, 50 * time.Millisecond
	var calls atomic.Int64
	load := func(ctx context.Context, key string) ([]byte, error) {
		calls.Add(1)
		time.Sleep(loadTime) // the loader's work
		return value(key, 128), nil
	}
	name, lock := lib, false
	if lib == "tiercache+lock" {
		name, lock = "tiercache", true
	}
	ins := make([]*inst, instances)
	for i := range ins {
		in, err := newInst(name, instCfg{addr: p.addr, ns: "f:", id: i, localBytes: 64 << 20, localEntries: 1 << 16, lock: lock, load: load})
		if err != nil {
			return r, err
		}
		defer in.close()
		ins[i] = in
	}
	var total, worst time.Duration
	for h := range p.herds {
		key := fmt.Sprint("herd-", h)
		before := calls.Load()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		gate := make(chan struct{})
		var wg sync.WaitGroup
		var failed atomic.Value
		for _, in := range ins {
			for range goroutines {
				wg.Go(func() {
					<-gate
					b, err := in.fetch(ctx, key)
					if err == nil && len(b) != 128 {
						err = fmt.Errorf("fetched %d bytes", len(b))
					}
					if err != nil {
						failed.CompareAndSwap(nil, err)
					}
				})
			}
		}
		start := time.Now()
		close(gate)
		wg.Wait()
		el := time.Since(start)
		cancel()
		if e, ok := failed.Load().(error); ok {
			return r, fmt.Errorf("herd %d: %w", h, e)
		}
		total += el
		worst = max(worst, el)
		r.Value += float64(calls.Load() - before)
		time.Sleep(100 * time.Millisecond) // let background work settle
	}
	r.Value /= float64(p.herds)
	r.Extra = float64(total) / float64(p.herds) / float64(time.Millisecond)
	r.Max = float64(worst) / float64(time.Millisecond)
	return r, nil
}

// staleness: a writer instance writes an increasing number to one key and
// waits until a reader instance, polling the key in a loop, has seen it;
// the figure is the time from the writer's acknowledged write to the
// reader's first read of it (p50, p99, max).
func staleness(p params, lib string) (result, error) {
	r := result{Workload: "stale", Lib: lib}
	// A reader spinning on local hits would otherwise hold every P of a
	// small machine, and Go polls the network only from an idle P or from
	// sysmon every 10 ms (the same setting as tiercache's own
	// BenchmarkCoherence_Staleness, for every library alike).
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(max(runtime.NumCPU()*4, 8)))
	mk := func(id int) (*inst, error) {
		return newInst(lib, instCfg{addr: p.addr, ns: "s:", id: id, localBytes: 64 << 20, localEntries: 1 << 16, syncLocal: true})
	}
	w, err := mk(0)
	if err != nil {
		return r, err
	}
	defer w.close()
	rd, err := mk(1)
	if err != nil {
		return r, err
	}
	defer rd.close()
	ctx := context.Background()
	const key = "hot"
	if err := w.set(ctx, key, []byte("0")); err != nil {
		return r, err
	}
	readInt := func() (int, error) {
		b, err := rd.get(ctx, key)
		if err != nil {
			return -1, err
		}
		return strconv.Atoi(string(b))
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		if v, err := readInt(); err == nil && v == 0 {
			break
		}
		if time.Now().After(deadline) {
			return r, errors.New("the reader never saw the first write")
		}
	}
	seen := make([]int64, p.writes+1)
	acks := make([]atomic.Int64, p.writes+1)
	var latest atomic.Int64
	var backwards atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := 0
		for {
			select {
			case <-stop:
				return
			default:
			}
			v, err := readInt()
			now := time.Now().UnixNano()
			if err != nil || v < 0 || v > p.writes {
				continue
			}
			if v < last {
				backwards.Add(1)
				continue
			}
			for i := last + 1; i <= v; i++ {
				seen[i] = now
			}
			if v > last {
				last = v
				latest.Store(int64(v))
			}
		}
	}()
	written := 0
	for i := 1; i <= p.writes; i++ {
		if err := w.set(ctx, key, []byte(strconv.Itoa(i))); err != nil {
			close(stop)
			<-done
			return r, err
		}
		acks[i].Store(time.Now().UnixNano())
		deadline := time.Now().Add(time.Second)
		for latest.Load() < int64(i) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Microsecond)
		}
		if latest.Load() < int64(i) {
			close(stop)
			<-done
			r.NA = fmt.Sprintf("write %d not seen by the other instance within 1 s", i)
			return r, nil
		}
		written = i
	}
	close(stop)
	<-done
	lat := make([]time.Duration, 0, written)
	for i := 1; i <= written; i++ {
		lat = append(lat, max(time.Duration(seen[i]-acks[i].Load()), 0))
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	r.Extra = ms(percentile(lat, 0.50))
	r.Value = ms(percentile(lat, 0.99))
	r.Max = ms(lat[len(lat)-1])
	if n := backwards.Load(); n > 0 {
		r.Note = fmt.Sprintf("%d reads went back to an older value", n)
	}
	return r, nil
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// zipf: get-or-load through the library's loader API over 100k keys in a
// zipf (s = 1.01) order, with a local tier of zipfBytes; the figure is
// the share of calls that neither Redis nor the loader answered, counted
// after a warm-up as 1 - (GET commands Redis executed) / calls (for raw
// otter, which has no Redis: 1 - loader calls / calls).
func zipfHit(p params, lib string, adm *admin) (result, error) {
	r := result{Workload: "zipf", Lib: lib}
	var loads atomic.Int64
	const valueSize = 512
	load := func(_ context.Context, key string) ([]byte, error) {
		loads.Add(1)
		return value(key, valueSize), nil
	}
	in, err := newInst(lib, instCfg{addr: p.addr, ns: "z:", localBytes: p.zipfBytes,
		localEntries: p.zipfKeys / 100, load: load})
	if err != nil {
		return r, err
	}
	defer in.close()
	ctx := context.Background()
	keys := keyNames("z", p.zipfKeys)
	seq := zipfSeq(p.zipfKeys, p.zipfWarm+p.zipfOps, 3)
	phase := func(from, to int) error {
		var wg sync.WaitGroup
		var failed atomic.Value
		for g := range p.zipfG {
			wg.Go(func() {
				for i := from + g; i < to; i += p.zipfG {
					b, err := in.fetch(ctx, keys[seq[i]])
					if err == nil && len(b) != valueSize {
						err = fmt.Errorf("fetched %d bytes", len(b))
					}
					if err != nil {
						failed.CompareAndSwap(nil, err)
						return
					}
				}
			})
		}
		wg.Wait()
		if e, ok := failed.Load().(error); ok {
			return e
		}
		return nil
	}
	if err := phase(0, p.zipfWarm); err != nil {
		return r, err
	}
	time.Sleep(100 * time.Millisecond) // asynchronous local fills settle
	g0, err := adm.gets()
	if err != nil {
		return r, err
	}
	l0 := loads.Load()
	var h0 uint64
	if in.localHits != nil {
		h0 = in.localHits()
	}
	if err := phase(p.zipfWarm, p.zipfWarm+p.zipfOps); err != nil {
		return r, err
	}
	g1, err := adm.gets()
	if err != nil {
		return r, err
	}
	calls := float64(p.zipfOps)
	lo := float64(loads.Load() - l0)
	byGets := 1 - float64(g1-g0)/calls
	switch {
	case lib == "otter":
		r.Value = 1 - lo/calls
	case in.localHits != nil:
		// tiercache's Fetch reads Redis twice on a full miss (once
		// before and once inside its in-process flight), so Redis's GET
		// count would overstate its local misses: its own per-call
		// count of L1 hits is used instead.
		r.Value = float64(in.localHits()-h0) / calls
		r.Note = fmt.Sprintf("(by Redis GETs: %.1f%%; %.2f GETs per call not answered locally)",
			100*byGets, float64(g1-g0)/(calls*(1-r.Value)))
	default:
		r.Value = byGets
	}
	r.Extra = lo / calls
	if in.note != nil {
		r.Note += " " + in.note()
	}
	return r, nil
}
