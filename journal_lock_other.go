//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package tiercache

import (
	"fmt"
	"os"
)

// lockJournal opens the lock file. Where there is no flock (Windows,
// Solaris, AIX...) it does not lock: two processes must not share a
// RecoveryJournalDir and namespace.
func lockJournal(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, errorf("tiercache: recovery journal lock: %w", err)
	}
	return f, nil
}
