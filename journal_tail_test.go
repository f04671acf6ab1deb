package tiercache

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestJournal_CorruptLengthMidFile: a length field in the middle of the
// journal that points past the end of the file is not a torn last write
// (the records after it were fsynced and acknowledged): the journal is
// quarantined as corrupt and the namespace cleared, rather than the
// records after it dropped with a warning.
func TestJournal_CorruptLengthMidFile(t *testing.T) {
	keys := []string{"jt:a", "jt:b", "jt:c", "jt:d", "jt:e"}
	// offset of the length field of record i (0-based) in a journal of keys.
	recordAt := func(i int) int {
		off := len(encodeJournalHeader("jt"))
		for k := range i {
			off += len(appendJournalRecord(nil, addPayload(journalOp{seq: uint64(k + 1), kind: opDel, key: keys[k]})))
		}
		return off
	}
	for name, corrupt := range map[string]func(b []byte){
		"just past the end": func(b []byte) {
			off := recordAt(1)
			setLength(b, off, len(b)-off-8+1)
		},
		"far past the end": func(b []byte) { setLength(b, recordAt(2), 1<<19) },
		"done record": func(b []byte) {
			off := len(b) - len(appendJournalRecord(nil, donePayload(1))) - len(appendJournalRecord(nil, donePayload(2)))
			setLength(b, off, 64)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "jt.journal")
			b := writeJournal(t, path, "jt", keys...)
			b = appendJournalRecord(b, donePayload(1))
			b = appendJournalRecord(b, donePayload(2))
			corrupt(b)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			_, ops, rec, log := mustJournal(t, dir)
			if got := opsString(ops); got != "incr jt#ns;" {
				t.Fatalf("ops %q, want a Clear of the namespace; log %q", got, log)
			}
			if !slices.Equal(rec.quarantined, []string{quarantineCorrupt}) || strings.Contains(log.String(), "incomplete last record") {
				t.Fatalf("quarantined %v, log %q", rec.quarantined, log)
			}
		})
	}
}

func setLength(b []byte, off, n int) {
	b[off], b[off+1], b[off+2], b[off+3] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
}

// TestJournal_TornAnywhere: a journal whose last write (two records, one
// with a long key) stopped at any byte is read as a torn tail: the earlier
// records are kept and nothing is quarantined.
func TestJournal_TornAnywhere(t *testing.T) {
	long := "jt:" + strings.Repeat("k", 3000)
	b := writeJournal(t, filepath.Join(t.TempDir(), "x"), "jt", "jt:a", "jt:b")
	before := len(b)
	b = appendJournalRecord(b, addPayload(journalOp{seq: 3, kind: opDel, key: long}))
	b = appendJournalRecord(b, addPayload(journalOp{seq: 4, kind: opIncr, key: "jt#t:red"}))
	for end := before + 1; end < len(b); end++ {
		f, err := decodeJournal(b[:end])
		if err != nil {
			t.Fatalf("cut at %d of %d: %v", end, len(b), err)
		}
		want, boundary := "del jt:a;del jt:b;", len(b)-len(appendJournalRecord(nil, addPayload(journalOp{seq: 4, kind: opIncr, key: "jt#t:red"})))
		if end >= boundary {
			want += "del " + long + ";"
		}
		if f.torn != (end != boundary) || opsString(f.queued()) != want {
			t.Fatalf("cut at %d of %d: torn %v, ops %.40q", end, len(b), f.torn, opsString(f.queued()))
		}
	}
}
