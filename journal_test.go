package tiercache

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// journalRecorder counts quarantines and restored operations.
type journalRecorder struct {
	NopRecorder
	mu          sync.Mutex
	quarantined []string
	restored    int
	syncs       int
}

func (r *journalRecorder) RecordJournalQuarantine(reason string) {
	r.mu.Lock()
	r.quarantined = append(r.quarantined, reason)
	r.mu.Unlock()
}

func (r *journalRecorder) RecordJournalRestored(n int) {
	r.mu.Lock()
	r.restored += n
	r.mu.Unlock()
}

func (r *journalRecorder) RecordJournalSync(time.Duration) {
	r.mu.Lock()
	r.syncs++
	r.mu.Unlock()
}

// testJournal opens the journal of namespace "jt" in dir, with its log in
// the returned buffer.
func testJournal(t *testing.T, dir string, maxOps int) (*journal, []journalOp, *journalRecorder, *bytes.Buffer, error) {
	t.Helper()
	var log bytes.Buffer
	rec := &journalRecorder{}
	j, ops, err := openJournal(journalConfig{
		dir: dir, namespace: "jt", maxOps: maxOps,
		logger:   slog.New(slog.NewTextHandler(&log, nil)),
		recorder: rec,
		now:      func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) },
	})
	if err == nil {
		t.Cleanup(func() { _ = j.close() })
	}
	return j, ops, rec, &log, err
}

func mustJournal(t *testing.T, dir string) (*journal, []journalOp, *journalRecorder, *bytes.Buffer) {
	t.Helper()
	j, ops, rec, log, err := testJournal(t, dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	return j, ops, rec, log
}

func opsString(ops []journalOp) string {
	var b strings.Builder
	for _, op := range ops {
		b.WriteString(map[opKind]string{opSet: "set", opDel: "del", opIncr: "incr", opIncrSoft: "soft"}[op.kind] + " " + op.key + ";")
	}
	return b.String()
}

// TestJournal_RoundTrip: what was added and not marked done comes back at
// the next open, Sets as Deletes, one operation per key, in order; the
// lock is released by close.
func TestJournal_RoundTrip(t *testing.T) {
	dir := t.TempDir()
	j, ops, _, _ := mustJournal(t, dir)
	if len(ops) != 0 {
		t.Fatalf("a new journal holds %v", ops)
	}
	seqs, err := j.add([]recOp{{kind: opSet, key: "jt:a", value: []byte("v")}, {kind: opDel, key: "jt:b"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.add([]recOp{{kind: opIncr, key: "jt#t:red"}, {kind: opIncr, key: "jt#ns"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := j.add([]recOp{{kind: opSet, key: "jt:b"}}); err != nil { // b again: newest wins
		t.Fatal(err)
	}
	// Soft increments: kept as soft, unless a hard one of the key is
	// queued before them.
	if _, err := j.add([]recOp{{kind: opIncrSoft, key: "jt#t:red"}, {kind: opIncrSoft, key: "jt#t:blue"}}); err != nil {
		t.Fatal(err)
	}
	j.done(seqs[0])
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
	_, ops, rec, _ := mustJournal(t, dir)
	if got, want := opsString(ops), "incr jt#ns;del jt:b;incr jt#t:red;soft jt#t:blue;"; got != want {
		t.Fatalf("reopened journal holds %q, want %q", got, want)
	}
	if len(rec.quarantined) != 0 {
		t.Fatalf("quarantined %v", rec.quarantined)
	}
	// The reopened file was rewritten with exactly these operations.
	b, err := os.ReadFile(filepath.Join(dir, "jt.journal"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := decodeJournal(b)
	if err != nil || len(f.ops) != 4 || f.torn {
		t.Fatalf("rewritten journal: %v %+v", err, f)
	}
}

// TestJournal_Compacts: once every operation is done the file is back to
// its header; a journal with mostly applied records is rewritten.
func TestJournal_Compacts(t *testing.T) {
	dir := t.TempDir()
	j, _, _, _ := mustJournal(t, dir)
	header := int64(len(encodeJournalHeader("jt")))
	var all []uint64
	for range 50 {
		seqs, err := j.add([]recOp{{kind: opDel, key: "jt:" + strings.Repeat("k", 100)}})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, seqs...)
	}
	if fi, _ := os.Stat(j.path); fi.Size() <= header {
		t.Fatalf("journal of 50 operations is %d bytes", fi.Size())
	}
	j.done(all[:49]...)
	if n := j.pending(); n != 1 {
		t.Fatalf("pending %d, want 1", n)
	}
	j.done(all[49])
	fi, err := os.Stat(j.path)
	if err != nil || fi.Size() != header {
		t.Fatalf("journal after every operation applied: %v %d bytes, want the %d-byte header", err, fi.Size(), header)
	}
	if _, err := j.add([]recOp{{kind: opDel, key: "jt:after"}}); err != nil {
		t.Fatalf("add after compaction: %v", err)
	}
	j.close()
	_, ops, _, _ := mustJournal(t, dir)
	if got := opsString(ops); got != "del jt:after;" {
		t.Fatalf("after compaction and reopen: %q", got)
	}
}

// TestJournal_Locked: a second opener of the same directory and namespace
// is refused with ErrJournalLocked naming the holder; another namespace
// in the same directory is fine.
func TestJournal_Locked(t *testing.T) {
	dir := t.TempDir()
	mustJournal(t, dir)
	_, _, _, _, err := testJournal(t, dir, 100)
	if !errors.Is(err, ErrJournalLocked) || !strings.Contains(err.Error(), "jt.lock") {
		t.Fatalf("second open: %v, want ErrJournalLocked naming the lock file", err)
	}
	j2, _, err := openJournal(journalConfig{dir: dir, namespace: "other", maxOps: 10, logger: slog.New(slog.DiscardHandler), recorder: NopRecorder{}, now: time.Now})
	if err != nil {
		t.Fatalf("another namespace in the same directory: %v", err)
	}
	j2.close()
}

// writeJournal writes a journal of namespace ns holding adds of keys.
func writeJournal(t *testing.T, path, ns string, keys ...string) []byte {
	t.Helper()
	b := encodeJournalHeader(ns)
	for i, k := range keys {
		b = appendJournalRecord(b, addPayload(journalOp{seq: uint64(i + 1), kind: opDel, key: k}))
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestJournal_TornTail: an incomplete last record (a write the process
// never finished, so never acknowledged) is dropped with a warning; the
// records before it are kept and nothing is quarantined.
func TestJournal_TornTail(t *testing.T) {
	for name, cut := range map[string]func([]byte) []byte{
		"short length":  func(b []byte) []byte { return b[:len(b)-len("jt:c")-8+3] },
		"short payload": func(b []byte) []byte { return b[:len(b)-2] },
		"bad checksum":  func(b []byte) []byte { b[len(b)-1] ^= 0xff; return b },
		"zero tail":     func(b []byte) []byte { return append(b, make([]byte, 64)...) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			b := writeJournal(t, filepath.Join(dir, "jt.journal"), "jt", "jt:a", "jt:b", "jt:c")
			if name == "zero tail" {
				b = b[:len(b)-len(appendJournalRecord(nil, addPayload(journalOp{seq: 3, kind: opDel, key: "jt:c"})))]
			}
			if err := os.WriteFile(filepath.Join(dir, "jt.journal"), cut(slices.Clone(b)), 0o600); err != nil {
				t.Fatal(err)
			}
			_, ops, rec, log := mustJournal(t, dir)
			if got := opsString(ops); got != "del jt:a;del jt:b;" {
				t.Fatalf("ops %q, want a and b", got)
			}
			if len(rec.quarantined) != 0 || !strings.Contains(log.String(), "incomplete last record") {
				t.Fatalf("quarantined %v, log %q", rec.quarantined, log)
			}
		})
	}
}

// TestJournal_Quarantine: a corrupt or truncated journal, or another
// namespace's, is moved aside with one log line and a metric and never
// stops the start. When it was this namespace's, a Clear is queued
// instead of the unknown invalidations it held.
func TestJournal_Quarantine(t *testing.T) {
	clear := "incr jt#ns;"
	cases := []struct {
		name, reason, ops string
		write             func(t *testing.T, path string)
	}{
		{"corrupt record", quarantineCorrupt, clear, func(t *testing.T, path string) {
			b := writeJournal(t, path, "jt", "jt:a", "jt:b", "jt:c")
			b[len(encodeJournalHeader("jt"))+9] ^= 0x40 // inside the first record
			os.WriteFile(path, b, 0o600)
		}},
		{"not a journal", quarantineCorrupt, clear, func(t *testing.T, path string) {
			os.WriteFile(path, []byte("some other file, long enough to have a header"), 0o600)
		}},
		{"truncated header", quarantineTruncated, clear, func(t *testing.T, path string) {
			os.WriteFile(path, []byte("TCJ"), 0o600)
		}},
		{"empty", quarantineTruncated, clear, func(t *testing.T, path string) {
			os.WriteFile(path, nil, 0o600)
		}},
		{"key outside the namespace", quarantineCorrupt, clear, func(t *testing.T, path string) {
			writeJournal(t, path, "jt", "jt:a", "other:b")
		}},
		{"another namespace", quarantineNamespace, "", func(t *testing.T, path string) {
			writeJournal(t, path, "other", "other:a")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "jt.journal")
			tc.write(t, path)
			orig, _ := os.ReadFile(path)
			_, ops, rec, log := mustJournal(t, dir)
			if got := opsString(ops); got != tc.ops {
				t.Fatalf("ops %q, want %q", got, tc.ops)
			}
			if !slices.Equal(rec.quarantined, []string{tc.reason}) {
				t.Fatalf("quarantined %v, want [%s]", rec.quarantined, tc.reason)
			}
			moved := path + ".quarantined-20260102T030405.000Z"
			if b, err := os.ReadFile(moved); err != nil || !bytes.Equal(b, orig) {
				t.Fatalf("quarantined file %s: %v (same bytes: %v)", moved, err, bytes.Equal(b, orig))
			}
			if n := strings.Count(log.String(), "recovery journal quarantined"); n != 1 || !strings.Contains(log.String(), "reason="+tc.reason) {
				t.Fatalf("log: %q", log)
			}
		})
	}
}

// TestJournal_TooManyOps: a journal holding more operations than the
// queue can take becomes one Clear.
func TestJournal_TooManyOps(t *testing.T) {
	dir := t.TempDir()
	writeJournal(t, filepath.Join(dir, "jt.journal"), "jt", "jt:a", "jt:b", "jt:c")
	_, ops, _, _, err := testJournal(t, dir, 2)
	if err != nil || opsString(ops) != "incr jt#ns;" {
		t.Fatalf("ops %q %v, want one Clear", opsString(ops), err)
	}
}

// FuzzDecodeJournal: hostile bytes never panic, and a journal that
// decodes re-encodes to the same operations.
func FuzzDecodeJournal(f *testing.F) {
	valid := encodeJournalHeader("jt")
	valid = appendJournalRecord(valid, addPayload(journalOp{seq: 1, kind: opSet, key: "jt:a"}))
	valid = appendJournalRecord(valid, addPayload(journalOp{seq: 2, kind: opIncr, key: "jt#ns"}))
	valid = appendJournalRecord(valid, donePayload(1))
	f.Add(valid)
	f.Add(valid[:len(valid)-3])
	f.Add(encodeJournalHeader(""))
	f.Add([]byte("TCJ1\x01\xff\xff"))
	f.Add(append(encodeJournalHeader("jt"), 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0))
	f.Add(appendJournalRecord(encodeJournalHeader("jt"), []byte{'A', 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		jf, err := decodeJournal(b)
		if err != nil {
			var je *journalError
			if !errors.As(err, &je) || je.reason == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if jf.good > len(b) || (!jf.torn && jf.good != len(b)) {
			t.Fatalf("good %d of %d bytes, torn %v", jf.good, len(b), jf.torn)
		}
		again := encodeJournalHeader(jf.namespace)
		for _, op := range jf.queued() {
			again = appendJournalRecord(again, addPayload(op))
		}
		jf2, err := decodeJournal(again)
		if err != nil || opsString(jf2.queued()) != opsString(jf.queued()) {
			t.Fatalf("re-encoded journal: %v, %q vs %q", err, opsString(jf2.queued()), opsString(jf.queued()))
		}
	})
}

// TestJournal_AfterClose: a replay that ends after Close (a Drain racing
// it) neither panics nor writes; the operations stay for the next start.
func TestJournal_AfterClose(t *testing.T) {
	dir := t.TempDir()
	j, _, _, _ := mustJournal(t, dir)
	seqs, err := j.add([]recOp{{kind: opDel, key: "jt:a"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
	j.done(seqs...)
	if _, err := j.add([]recOp{{kind: opDel, key: "jt:b"}}); !errors.Is(err, ErrJournal) {
		t.Fatalf("add after close: %v, want ErrJournal", err)
	}
	if err := j.close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	_, ops, _, _ := mustJournal(t, dir)
	if got := opsString(ops); got != "del jt:a;" {
		t.Fatalf("after close: %q", got)
	}
}

// TestJournal_Concurrent: writers sharing fsyncs, applied operations and
// compactions racing each other lose nothing: the reopened journal holds
// exactly the operations not marked done.
func TestJournal_Concurrent(t *testing.T) {
	dir := t.TempDir()
	j, _, _, _ := mustJournal(t, dir)
	var wg sync.WaitGroup
	want := make([]map[string]bool, 8)
	for w := range want {
		want[w] = map[string]bool{}
		wg.Go(func() {
			for i := range 100 {
				key := "jt:" + strconv.Itoa(w) + "-" + strconv.Itoa(i)
				seqs, err := j.add([]recOp{{kind: opDel, key: key}})
				if err != nil {
					t.Error(err)
					return
				}
				if i%2 == 0 {
					j.done(seqs...)
				} else {
					want[w][key] = true
				}
			}
		})
	}
	stop := make(chan struct{})
	compacted := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				compacted <- n
				return
			default:
			}
			if err := j.compact(); err != nil {
				t.Error(err)
			}
			n++
		}
	}()
	wg.Wait()
	close(stop)
	if n := <-compacted; n == 0 {
		t.Fatal("no compaction ran during the writes")
	}
	j.close()
	_, ops, _, _, err := testJournal(t, dir, 1000)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, op := range ops {
		got[op.key] = true
	}
	for w := range want {
		for k := range want[w] {
			if !got[k] {
				t.Fatalf("%s lost (%d of 400 kept)", k, len(got))
			}
		}
	}
	if len(got) != 400 {
		t.Fatalf("%d operations kept, want 400", len(got))
	}
}
