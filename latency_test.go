package tiercache

import (
	"testing"
	"time"
)

func TestBucketOf(t *testing.T) {
	t.Parallel()
	prev := -1
	for _, d := range []int64{0, 1, 3, 4, 5, 7, 8, 100, 999, 1000, 1 << 20, 123456789, int64(time.Minute)} {
		b := bucketOf(d)
		if b < prev {
			t.Fatalf("bucketOf(%d) = %d, below the previous bucket %d", d, b, prev)
		}
		prev = b
		mid := bucketMid(b)
		// A bucket is at most 25% wide; its middle is within 12.5%.
		if diff := float64(mid) - float64(d); diff > 0.125*float64(d)+1 || -diff > 0.125*float64(d)+1 {
			t.Errorf("bucketOf(%d) = %d, whose middle %d is too far", d, b, mid)
		}
	}
	if b := bucketOf(int64(24 * time.Hour)); b != latencyBucket-1 {
		t.Errorf("a day lands in bucket %d, want the last (%d)", b, latencyBucket-1)
	}
	if b := bucketOf(-5); b != 0 {
		t.Errorf("a negative duration lands in bucket %d", b)
	}
}

func TestLatencyWindow(t *testing.T) {
	t.Parallel()
	var l latencyWindow
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	if s := l.summary(now); s != (LatencySummary{}) {
		t.Fatalf("empty: %+v", s)
	}
	// 98 reads of 1 ms and 2 of 100 ms: p50 1 ms, p99 100 ms.
	for i := range 100 {
		d := time.Millisecond
		if i >= 98 {
			d = 100 * time.Millisecond
		}
		l.observe(now, d)
	}
	s := l.summary(now)
	if s.Count != 100 || !near(s.P50, time.Millisecond) || !near(s.P99, 100*time.Millisecond) {
		t.Fatalf("summary %+v; want 100 measurements, p50 ≈ 1ms, p99 ≈ 100ms", s)
	}
	// One window later the counts are still there (previous window)...
	next := now + int64(latencyWindowSpan)
	l.observe(next, 10*time.Millisecond)
	if s := l.summary(next); s.Count != 101 {
		t.Fatalf("one window later: %d measurements, want 101", s.Count)
	}
	// ...two windows later the first ones are gone.
	later := now + 2*int64(latencyWindowSpan)
	l.observe(later, 10*time.Millisecond)
	if s := l.summary(later); s.Count != 2 || !near(s.P50, 10*time.Millisecond) {
		t.Fatalf("two windows later: %+v, want the 2 recent measurements", s)
	}
	if s := l.summary(later + 5*int64(latencyWindowSpan)); s.Count != 0 {
		t.Fatalf("long after: %+v, want nothing", s)
	}
}

// near reports whether got is within a bucket's width of want.
func near(got, want time.Duration) bool {
	return got >= want*7/8 && got <= want*9/8
}
