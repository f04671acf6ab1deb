package tiercache

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// journalConfig is what opening a journal needs.
type journalConfig struct {
	dir, namespace string
	maxOps         int // the recovery queue's size
	logger         *slog.Logger
	recorder       Recorder
	now            func() time.Time
}

// openJournal locks and reads the namespace's journal in cfg.dir,
// quarantining it when it cannot be trusted, and rewrites it with the
// operations to queue again, which it returns. Only a directory or lock
// problem is an error: a bad journal never stops the start.
func openJournal(cfg journalConfig) (*journal, []journalOp, error) {
	if len(cfg.namespace) > 1<<10 {
		return nil, nil, fmt.Errorf("%w: a namespace of %d bytes is too long for a recovery journal (at most 1024)", ErrInvalidOptions, len(cfg.namespace))
	}
	if err := os.MkdirAll(cfg.dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("%w: recovery journal directory: %w", ErrInvalidOptions, err)
	}
	base := journalBase(cfg.namespace)
	lock, err := lockJournal(filepath.Join(cfg.dir, base+".lock"))
	if err != nil {
		return nil, nil, err
	}
	j := &journal{
		path:      filepath.Join(cfg.dir, base+".journal"),
		dir:       cfg.dir,
		namespace: cfg.namespace,
		lock:      lock,
		live:      map[uint64]journalOp{},
		syncHook:  cfg.recorder.RecordJournalSync,
	}
	ops, err := j.load(cfg)
	if err == nil {
		for _, op := range ops {
			j.seq++
			op.seq = j.seq
			j.live[op.seq] = op
			j.liveB += int64(8 + len(addPayload(op)))
		}
		err = j.compact()
	}
	if err != nil {
		lock.Close()
		return nil, nil, err
	}
	for i := range ops {
		ops[i] = j.live[uint64(i+1)]
	}
	return j, ops, nil
}

var safeBase = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$`)

// journalBase is the file name, without extension, of namespace's
// journal: the namespace itself when it is a short, plain file name, else
// "ns-" and a hash of it. The header names the namespace either way.
func journalBase(namespace string) string {
	if safeBase.MatchString(namespace) {
		return namespace
	}
	sum := sha256.Sum256([]byte(namespace))
	return "ns-" + hex.EncodeToString(sum[:8])
}

// load returns the operations of the journal at j.path that must be
// queued again: Sets become Deletes of their keys, one operation per key.
// A journal that cannot be trusted is moved aside; when it was this
// namespace's, a Clear is queued instead, since the invalidations it held
// are unknown.
func (j *journal) load(cfg journalConfig) ([]journalOp, error) {
	b, err := os.ReadFile(j.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, errorf("tiercache: recovery journal: %w", err)
	}
	f, err := decodeJournal(b)
	if err == nil {
		err = f.check(cfg.namespace)
	}
	if err != nil {
		reason := quarantineCorrupt
		var je *journalError
		if errors.As(err, &je) {
			reason = je.reason
		}
		j.quarantine(cfg, reason, err)
		if reason == quarantineNamespace {
			return nil, nil
		}
		return []journalOp{{kind: opIncr, key: cfg.namespace + "#ns"}}, nil
	}
	if f.torn {
		cfg.logger.Warn("tiercache: recovery journal: dropped an incomplete last record (its operation was never acknowledged)",
			"path", j.path, "bytes", len(b)-f.good)
	}
	ops := f.queued()
	if len(ops) > cfg.maxOps {
		cfg.logger.Warn("tiercache: recovery journal holds more operations than the recovery queue; clearing the namespace instead",
			"path", j.path, "operations", len(ops), "queue_size", cfg.maxOps)
		return []journalOp{{kind: opIncr, key: cfg.namespace + "#ns"}}, nil
	}
	return ops, nil
}

// check verifies that the journal is namespace's: its header and every key.
func (f *journalFile) check(namespace string) error {
	if f.namespace != namespace {
		return &journalError{reason: quarantineNamespace, msg: fmt.Sprintf("journal of namespace %q, this cache's is %q", truncKey(f.namespace), namespace)}
	}
	for _, op := range f.ops {
		k := op.key
		ok := strings.HasPrefix(k, namespace+":") && len(k) > len(namespace)+1
		if op.kind.incr() {
			ok = k == namespace+"#ns" || (strings.HasPrefix(k, namespace+"#t:") && len(k) > len(namespace)+3)
		}
		if !ok {
			return &journalError{reason: quarantineCorrupt, msg: fmt.Sprintf("operation %d on key %q outside namespace %q", op.seq, truncKey(k), namespace)}
		}
	}
	return nil
}

// queued returns the journal's operations in order, Sets as Deletes, one
// per key (the newest). A soft increment of a key with a hard one before
// it becomes hard: the hard one covers it, as in the recovery queue.
func (f *journalFile) queued() []journalOp {
	seqs := make([]uint64, 0, len(f.ops))
	for s := range f.ops {
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	newest := map[string]uint64{}
	hard := map[string]bool{}
	for _, s := range seqs {
		op := f.ops[s]
		newest[op.key] = s
		if op.kind == opIncr {
			hard[op.key] = true
		}
	}
	var out []journalOp
	for _, s := range seqs {
		op := f.ops[s]
		if newest[op.key] != s {
			continue
		}
		switch {
		case op.kind == opSet:
			op.kind = opDel
		case op.kind == opIncrSoft && hard[op.key]:
			op.kind = opIncr
		}
		out = append(out, op)
	}
	return out
}

// quarantine moves the journal aside, logs it once and counts it.
func (j *journal) quarantine(cfg journalConfig, reason string, cause error) {
	to := j.path + ".quarantined-" + cfg.now().UTC().Format("20060102T150405.000Z")
	err := os.Rename(j.path, to)
	if err == nil {
		err = syncDir(j.dir)
	}
	attrs := []any{"path", j.path, "moved_to", to, "reason", reason, "err", cause}
	if reason != quarantineNamespace {
		attrs = append(attrs, "action", "namespace cleared")
	}
	if err != nil {
		attrs = append(attrs, "move_err", err)
	}
	cfg.logger.Error("tiercache: recovery journal quarantined", attrs...)
	cfg.recorder.RecordJournalQuarantine(reason)
}

// add appends ops and fsyncs them; it returns their sequence numbers.
func (j *journal) add(ops []recOp) ([]uint64, error) {
	for _, op := range ops {
		if len(op.key) > maxJournalRecord-32 {
			return nil, fmt.Errorf("%w: key of %d bytes", ErrJournal, len(op.key))
		}
	}
	if j.brokenErr() != nil {
		if err := j.compact(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrJournal, err)
		}
	}
	j.mu.Lock()
	var buf []byte
	seqs := make([]uint64, len(ops))
	for i, op := range ops {
		j.seq++
		seqs[i] = j.seq
		buf = appendJournalRecord(buf, addPayload(journalOp{seq: j.seq, kind: op.kind, key: op.key}))
	}
	if err := j.write(buf); err != nil {
		j.mu.Unlock()
		return nil, fmt.Errorf("%w: %w", ErrJournal, err)
	}
	for i, op := range ops {
		jo := journalOp{seq: seqs[i], kind: op.kind, key: op.key}
		j.live[jo.seq] = jo
		j.liveB += int64(8 + len(addPayload(jo)))
	}
	gen, end := j.gen, j.size
	j.mu.Unlock()
	if err := j.sync(gen, end); err != nil {
		j.done(seqs...)
		return nil, fmt.Errorf("%w: %w", ErrJournal, err)
	}
	return seqs, nil
}

// write appends buf to the file; j.mu is held. On failure the file is cut
// back to its last record, or marked broken.
func (j *journal) write(buf []byte) error {
	if j.f == nil {
		return errJournalClosed
	}
	if j.broken != nil {
		return j.broken
	}
	if _, err := j.f.Write(buf); err != nil {
		if terr := j.f.Truncate(j.size); terr != nil {
			j.broken = err
		} else if _, serr := j.f.Seek(j.size, 0); serr != nil {
			j.broken = err
		}
		return err
	}
	j.size += int64(len(buf))
	return nil
}

// sync makes the file durable up to end at least, unless a compaction
// (which fsyncs what it writes) replaced it since. Concurrent callers
// share one fsync.
func (j *journal) sync(gen uint64, end int64) error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	j.mu.Lock()
	if j.gen != gen || j.synced >= end {
		j.mu.Unlock()
		return nil
	}
	f, target := j.f, j.size
	j.mu.Unlock()
	t0 := time.Now()
	err := f.Sync()
	if j.syncHook != nil {
		j.syncHook(time.Since(t0))
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if err != nil {
		// After a failed fsync the kernel may have dropped the pages:
		// nothing written to this file can be trusted. The next add
		// rewrites it.
		j.broken = err
		return err
	}
	j.synced = max(j.synced, target)
	return nil
}

func (j *journal) brokenErr() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.broken
}

// done marks applied operations, without fsync, and compacts the file
// when the queue is empty or the file mostly holds applied records.
func (j *journal) done(seqs ...uint64) {
	j.mu.Lock()
	var buf []byte
	for _, s := range seqs {
		if op, ok := j.live[s]; ok {
			delete(j.live, s)
			j.liveB -= int64(8 + len(addPayload(op)))
			buf = appendJournalRecord(buf, donePayload(s))
		}
	}
	if len(buf) > 0 && len(j.live) > 0 {
		_ = j.write(buf) // a lost done record costs a harmless replay
	}
	compact := len(buf) > 0 && (len(j.live) == 0 || (j.size > compactAbove && j.size > 4*j.liveB))
	j.mu.Unlock()
	if compact {
		_ = j.compact() // logged by the caller's next add, if it persists
	}
}

// compact rewrites the file with the live records only: a new file,
// fsynced, renamed over the old one, and the directory fsynced.
func (j *journal) compact() error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return errJournalClosed
	}
	seqs := make([]uint64, 0, len(j.live))
	for s := range j.live {
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	buf := encodeJournalHeader(j.namespace)
	for _, s := range seqs {
		buf = appendJournalRecord(buf, addPayload(j.live[s]))
	}
	tmp := j.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("recovery journal: %w", err)
	}
	t0 := time.Now()
	if _, err = f.Write(buf); err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, j.path)
	}
	if err == nil {
		err = syncDir(j.dir)
	}
	if j.syncHook != nil {
		j.syncHook(time.Since(t0))
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("recovery journal: compact %s: %w", j.path, err)
	}
	if j.f != nil {
		j.f.Close()
	}
	j.f, j.gen, j.size, j.synced, j.broken = f, j.gen+1, int64(len(buf)), int64(len(buf)), nil
	return nil
}

// close makes the done records durable and releases the file and lock.
// Queued operations stay in the file for the next start.
func (j *journal) close() error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	var err error
	if j.f != nil {
		if j.broken == nil {
			err = j.f.Sync()
		}
		err = errors.Join(err, j.f.Close())
		j.f = nil
	}
	return errors.Join(err, j.lock.Close())
}

// pending returns the number of operations the file holds that are not
// marked done.
func (j *journal) pending() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.live)
}

// errJournalClosed is returned by writes after close.
var errJournalClosed = errors.New("recovery journal closed")

// syncDir fsyncs a directory, so that a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
