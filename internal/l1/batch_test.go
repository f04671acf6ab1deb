package l1

import (
	"fmt"
	"testing"
	"time"
)

// TestWriteBatch_SharedStripe: two keys of one write that share a stripe
// are both kept; without the batch, the second one's token looks changed
// by the first one's write.
func TestWriteBatch_SharedStripe(t *testing.T) {
	l, err := New(Options{MaxBytes: 1 << 20, MaxTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a := "a"
	b := ""
	for i := range 1 << 20 {
		if k := fmt.Sprint("b", i); l.idx(k) == l.idx(a) {
			b = k
			break
		}
	}
	if b == "" {
		t.Fatal("no key shares a's stripe")
	}
	now := l.Now()
	ta, tb := l.Snapshot(a), l.Snapshot(b)
	var batch WriteBatch
	if !batch.SetAfterWrite(l, a, &Entry{Payload: []byte("1")}, ta, now) || !batch.SetAfterWrite(l, b, &Entry{Payload: []byte("2")}, tb, now) {
		t.Fatal("a key of the batch was dropped because another key of the same batch shares its stripe")
	}
	if _, st := l.Lookup(a); st != Fresh {
		t.Fatal("a is not in L1")
	}
	if _, st := l.Lookup(b); st != Fresh {
		t.Fatal("b is not in L1")
	}
	// Another writer's change in between still drops the key.
	ta = l.Snapshot(a)
	l.Invalidate(b) // same stripe
	var batch2 WriteBatch
	if batch2.SetAfterWrite(l, a, &Entry{Payload: []byte("3")}, ta, now) {
		t.Fatal("kept a value whose stripe another invalidation moved")
	}
}
