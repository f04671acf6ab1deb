package warm

import (
	"math"
	"sync"
	"sync/atomic"
)

// sketchDepth is the number of rows of a count-min sketch: the chance that
// all of a key's counters are inflated by collisions falls geometrically
// with it, and four rows keep an add within one cache line per row.
const sketchDepth = 4

// topK estimates the k most frequent keys of a stream in bounded memory:
// a count-min sketch (conservative update) counts every key, and a min-heap
// keeps the k keys with the highest estimates. Counts are halved every
// decayAt adds, so that popularity that has passed fades. The shards of one
// tracker share an epoch: a shard that reaches decayAt bumps it, and every
// shard halves its counts once per epoch it has not seen yet, so that an
// idle shard's old counts fade as fast as a busy one's.
//
// It is written here rather than taken from a module: it is small, the
// read path needs only add, which allocates nothing for a key already
// known, and a dependency would impose its own hashing and locking on
// every Cache.Get that OnAccess reports.
type topK struct {
	mu      sync.Mutex
	k       int
	mask    uint64
	rows    [sketchDepth][]uint32
	heap    []KeyCount // min-heap on Count
	index   map[string]int
	adds    uint64
	decayAt uint64
	epoch   uint64         // the shared epoch this shard has caught up with
	shared  *atomic.Uint64 // the tracker's epoch
}

func newTopK(k int, width uint64, decayAt uint64, epoch *atomic.Uint64) *topK {
	t := &topK{k: k, mask: width - 1, index: make(map[string]int, k), decayAt: decayAt, shared: epoch}
	for i := range t.rows {
		t.rows[i] = make([]uint32, width)
	}
	return t
}

// add counts one occurrence of key, whose 64-bit hash is h.
func (t *topK) add(key string, h uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.catchUp()
	var idx [sketchDepth]uint64
	est := uint32(math.MaxUint32)
	for i := range sketchDepth {
		idx[i] = rowHash(h, i) & t.mask
		est = min(est, t.rows[i][idx[i]])
	}
	if est < math.MaxUint32 {
		est++
	}
	// Conservative update: raise only the counters below the new
	// estimate, which keeps collisions from inflating it further.
	for i := range sketchDepth {
		if t.rows[i][idx[i]] < est {
			t.rows[i][idx[i]] = est
		}
	}
	n := uint64(est)
	switch i, ok := t.index[key]; {
	case ok:
		t.heap[i].Count = n
		t.down(i)
	case len(t.heap) < t.k:
		t.heap = append(t.heap, KeyCount{Key: key, Count: n})
		t.index[key] = len(t.heap) - 1
		t.up(len(t.heap) - 1)
	case n > t.heap[0].Count:
		delete(t.index, t.heap[0].Key)
		t.heap[0] = KeyCount{Key: key, Count: n}
		t.index[key] = 0
		t.down(0)
	}
	if t.adds++; t.adds >= t.decayAt {
		t.adds = 0
		t.shared.Add(1)
		t.catchUp()
	}
}

// catchUp halves every count once per epoch missed. Halving keeps the
// heap's order.
func (t *topK) catchUp() {
	e := t.shared.Load()
	if e == t.epoch {
		return
	}
	shift := min(e-t.epoch, 32)
	t.epoch = e
	for i := range t.rows {
		for j := range t.rows[i] {
			t.rows[i][j] >>= shift
		}
	}
	for i := range t.heap {
		t.heap[i].Count >>= shift
	}
}

// snapshot appends the tracked keys that still have a count to dst.
func (t *topK) snapshot(dst []KeyCount) []KeyCount {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.catchUp()
	for _, kc := range t.heap {
		if kc.Count > 0 {
			dst = append(dst, kc)
		}
	}
	return dst
}

func (t *topK) less(i, j int) bool { return t.heap[i].Count < t.heap[j].Count }

func (t *topK) swap(i, j int) {
	t.heap[i], t.heap[j] = t.heap[j], t.heap[i]
	t.index[t.heap[i].Key] = i
	t.index[t.heap[j].Key] = j
}

func (t *topK) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !t.less(i, p) {
			return
		}
		t.swap(i, p)
		i = p
	}
}

func (t *topK) down(i int) {
	n := len(t.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && t.less(r, l) {
			m = r
		}
		if !t.less(m, i) {
			return
		}
		t.swap(i, m)
		i = m
	}
}

// rowHash derives row i's index from a key's hash with the splitmix64
// finalizer. Rows need independent indices: with plain double hashing two
// keys that agree on a few low bits of the hash collide in every row.
func rowHash(h uint64, i int) uint64 {
	h += uint64(i+1) * 0x9e3779b97f4a7c15
	h = (h ^ h>>30) * 0xbf58476d1ce4e5b9
	h = (h ^ h>>27) * 0x94d049bb133111eb
	return h ^ h>>31
}
