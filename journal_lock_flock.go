//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package tiercache

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// lockJournal takes an exclusive flock on path, without waiting, and
// writes this process's id into it for the message another process gets.
// The lock ends with the file's closing, or with the process.
func lockJournal(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, errorf("tiercache: recovery journal lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := strings.TrimSpace(string(b))
			if _, perr := strconv.Atoi(holder); perr != nil {
				holder = "unknown"
			}
			return nil, fmt.Errorf("%w: %s is locked by process %s; give each process its own journal directory (Options.RecoveryJournalDir) or namespace", ErrJournalLocked, path, holder)
		}
		return nil, errorf("tiercache: recovery journal lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
