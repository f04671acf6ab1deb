package tiercache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"sync"
	"time"
)

// The recovery journal keeps the recovery queue on disk (see
// docs/durability.md). An operation the queue accepts is appended and
// fsynced before Set, Delete, InvalidateTags or Clear return ErrQueued;
// an applied one is marked done (without fsync: applying it twice is
// harmless). The file is rewritten, compacted, at every start and
// whenever the queue empties or the file holds mostly applied records.
//
// File "<dir>/<namespace>.journal":
//
//	header  "TCJ1" | version (1 byte) | namespace length (2 bytes) |
//	        namespace | CRC-32C of the preceding header bytes (4 bytes)
//	record  payload length (4 bytes) | CRC-32C of the payload (4 bytes) |
//	        payload
//	payload 'A' | sequence (uvarint) | kind (1 byte) | key length
//	        (uvarint) | key      -- an operation was queued
//	        'D' | sequence (uvarint)  -- the operation was applied
//
// Integers are little-endian. Keys are full L2 keys, so they carry the
// namespace too. A Set is journaled by its key only: a journal replayed
// at the next start turns it into a Delete of that key.

// Errors of the recovery journal.
var (
	// ErrJournalLocked is returned by New when another process holds the
	// recovery journal of the same namespace in Options.RecoveryJournalDir.
	ErrJournalLocked = errors.New("tiercache: recovery journal is in use by another process")

	// ErrJournal marks a failure to write the recovery journal. The
	// operation it concerns was neither applied nor queued.
	ErrJournal = errors.New("tiercache: recovery journal write failed")
)

const (
	journalMagic   = "TCJ1"
	journalVersion = 1
	// maxJournalRecord bounds a record's payload; a longer length field
	// is corruption.
	maxJournalRecord = 1 << 20
	// compactAbove: a journal larger than this that holds mostly applied
	// records is rewritten.
	compactAbove = 1 << 20
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// journalOp is one queued operation as the journal keeps it.
type journalOp struct {
	seq  uint64
	kind opKind
	key  string
}

// journalFile is the decoded content of a journal.
type journalFile struct {
	namespace string
	ops       map[uint64]journalOp // queued and not marked done
	maxSeq    uint64
	good      int  // length of the valid prefix
	torn      bool // bytes after good were an incomplete last record
}

// Reasons a journal is quarantined; the values of the quarantine metric.
const (
	quarantineCorrupt   = "corrupt"
	quarantineTruncated = "truncated"
	quarantineNamespace = "namespace"
)

// journalError is why a journal could not be read; reason is one of the
// quarantine reasons.
type journalError struct {
	reason string
	msg    string
}

func (e *journalError) Error() string { return e.msg }

func corruptAt(off int, format string, args ...any) error {
	return &journalError{reason: quarantineCorrupt, msg: fmt.Sprintf("offset %d: ", off) + fmt.Sprintf(format, args...)}
}

// encodeJournalHeader returns the header for namespace.
func encodeJournalHeader(namespace string) []byte {
	b := append([]byte(journalMagic), journalVersion)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(namespace)))
	b = append(b, namespace...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crc32c))
}

// appendJournalRecord appends one framed record with payload p.
func appendJournalRecord(b, p []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(p, crc32c))
	return append(b, p...)
}

func addPayload(op journalOp) []byte {
	p := binary.AppendUvarint([]byte{'A'}, op.seq)
	p = append(p, byte(op.kind))
	p = binary.AppendUvarint(p, uint64(len(op.key)))
	return append(p, op.key...)
}

func donePayload(seq uint64) []byte { return binary.AppendUvarint([]byte{'D'}, seq) }

// decodeJournal reads a journal. It never panics: hostile bytes give an
// error whose reason says how the journal is broken. An incomplete last
// record (a write the process did not finish, so never acknowledged) is
// not an error: good and torn say where the valid records end.
func decodeJournal(b []byte) (*journalFile, error) {
	f, off, err := decodeJournalHeader(b)
	if err != nil {
		return nil, err
	}
	f.ops = map[uint64]journalOp{}
	for off < len(b) {
		rest := b[off:]
		if len(rest) < 8 {
			return f.tornAt(off), nil
		}
		n := int(binary.LittleEndian.Uint32(rest))
		sum := binary.LittleEndian.Uint32(rest[4:])
		if n > maxJournalRecord {
			if allZero(rest) {
				return f.tornAt(off), nil
			}
			return nil, corruptAt(off, "record of %d bytes, at most %d", n, maxJournalRecord)
		}
		if n > len(rest)-8 {
			if err := tornRecord(rest[8:], n); err != nil {
				return nil, corruptAt(off, "record of %d bytes runs past the end of the file, and %v", n, err)
			}
			return f.tornAt(off), nil
		}
		p := rest[8 : 8+n]
		if crc32.Checksum(p, crc32c) != sum {
			if 8+n == len(rest) || allZero(rest) {
				return f.tornAt(off), nil
			}
			return nil, corruptAt(off, "record checksum mismatch")
		}
		if err := f.apply(p); err != nil {
			if allZero(rest) {
				return f.tornAt(off), nil
			}
			return nil, corruptAt(off, "%v", err)
		}
		off += 8 + n
		f.good = off
	}
	return f, nil
}

func decodeJournalHeader(b []byte) (*journalFile, int, error) {
	const fixed = len(journalMagic) + 1 + 2
	if len(b) < fixed {
		return nil, 0, &journalError{reason: quarantineTruncated, msg: fmt.Sprintf("%d bytes, shorter than a header", len(b))}
	}
	if string(b[:4]) != journalMagic {
		return nil, 0, corruptAt(0, "not a recovery journal (magic %q)", b[:4])
	}
	if b[4] != journalVersion {
		return nil, 0, corruptAt(4, "format version %d, this build reads %d", b[4], journalVersion)
	}
	n := int(binary.LittleEndian.Uint16(b[5:]))
	end := fixed + n + 4
	if len(b) < end {
		return nil, 0, &journalError{reason: quarantineTruncated, msg: fmt.Sprintf("%d bytes, the header needs %d", len(b), end)}
	}
	if crc32.Checksum(b[:end-4], crc32c) != binary.LittleEndian.Uint32(b[end-4:]) {
		return nil, 0, corruptAt(0, "header checksum mismatch")
	}
	return &journalFile{namespace: string(b[fixed : fixed+n]), good: end}, end, nil
}

// tornAt records that the bytes from off are an incomplete last record.
func (f *journalFile) tornAt(off int) *journalFile {
	f.good, f.torn = off, true
	return f
}

// apply applies one record's payload.
func (f *journalFile) apply(p []byte) error {
	if len(p) == 0 {
		return errors.New("empty record")
	}
	seq, n := binary.Uvarint(p[1:])
	if n <= 0 || seq == 0 {
		return errors.New("bad sequence number")
	}
	switch p[0] {
	case 'D':
		if len(p) != 1+n {
			return errors.New("bad done record")
		}
		delete(f.ops, seq)
		return nil
	case 'A':
		return f.applyAdd(seq, p[1+n:])
	}
	return fmt.Errorf("unknown record type %d", p[0])
}

func (f *journalFile) applyAdd(seq uint64, p []byte) error {
	if len(p) < 2 {
		return errors.New("truncated operation")
	}
	kind := opKind(p[0])
	if kind != opSet && kind != opDel && !kind.incr() {
		return fmt.Errorf("unknown operation kind %d", p[0])
	}
	n, m := binary.Uvarint(p[1:])
	if m <= 0 || n != uint64(len(p)-1-m) {
		return errors.New("bad key length")
	}
	f.ops[seq] = journalOp{seq: seq, kind: kind, key: string(p[1+m:])}
	f.maxSeq = max(f.maxSeq, seq)
	return nil
}

// tornRecord reports why p, the bytes after the length and checksum of a
// record of n payload bytes that runs past the end of the file, cannot be
// an incomplete last write; nil when they can. Only the last write can be
// torn, and it was one record or more: p must be the beginning of one
// record of exactly n bytes (a corrupt length field in the middle of the
// file does not agree with the record it belongs to), and no complete
// record may follow it.
func tornRecord(p []byte, n int) error {
	if len(p) == 0 || allZero(p) {
		return nil
	}
	var want int // the payload length p's own fields give; 0 when unknown
	switch p[0] {
	case 'D':
		if n > 1+binary.MaxVarintLen64 {
			return fmt.Errorf("a done record has at most %d bytes", 1+binary.MaxVarintLen64)
		}
		if _, m := binary.Uvarint(p[1:]); m > 0 {
			want = 1 + m
		}
	case 'A':
		want = addLength(p)
	default:
		return fmt.Errorf("its %d bytes do not begin a record (type %d)", len(p), p[0])
	}
	if want != 0 && want != n {
		return fmt.Errorf("its payload is a record of %d bytes (records after it would be dropped)", want)
	}
	if off, ok := completeRecordIn(p); ok {
		return fmt.Errorf("a complete record follows %d bytes into it", off)
	}
	return nil
}

// addLength is the payload length of the add record that p begins, from
// its sequence and key length fields; 0 when p is too short to tell or
// malformed.
func addLength(p []byte) int {
	_, m := binary.Uvarint(p[1:])
	if m <= 0 || len(p) < 2+m {
		return 0
	}
	kl, k := binary.Uvarint(p[2+m:])
	if k <= 0 || kl > maxJournalRecord {
		return 0
	}
	return 2 + m + k + int(kl)
}

// completeRecordIn reports whether a complete, valid record starts
// somewhere in b, and where. Only done records and add records with keys
// of up to maxTornKey bytes are looked for, which keeps the scan linear.
func completeRecordIn(b []byte) (int, bool) {
	const maxTornKey = 512
	for off := 1; off+8 < len(b); off++ {
		n := int(binary.LittleEndian.Uint32(b[off:]))
		if n < 2 || n > 1+binary.MaxVarintLen64+1+2+maxTornKey || off+8+n > len(b) {
			continue
		}
		p := b[off+8 : off+8+n]
		if crc32.Checksum(p, crc32c) != binary.LittleEndian.Uint32(b[off+4:]) {
			continue
		}
		if (&journalFile{ops: map[uint64]journalOp{}}).apply(p) == nil {
			return off, true
		}
	}
	return 0, false
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// journal is an open recovery journal.
type journal struct {
	path, dir, namespace string
	lock                 *os.File
	syncHook             func(time.Duration) // reports each fsync's duration

	syncMu sync.Mutex // held by fsyncs and compactions, before mu
	mu     sync.Mutex
	f      *os.File
	gen    uint64 // bumped by every compaction: f changed
	size   int64  // bytes written to f
	synced int64  // bytes of f known durable
	seq    uint64
	live   map[uint64]journalOp
	liveB  int64 // bytes of the live records
	broken error // set when the file is in an unknown state
	closed bool
}
