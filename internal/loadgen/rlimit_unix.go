//go:build unix

package loadgen

import (
	"fmt"
	"syscall"
)

// RaiseFileLimit raises the process's soft limit on open files
// (RLIMIT_NOFILE) to at least want, up to the hard limit, and returns the
// soft limit in force afterwards. The error says when want could not be
// reached; the limit may still have been raised part of the way.
func RaiseFileLimit(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read the open-file limit: %w", err)
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	target := min(want, lim.Max)
	if lim.Max < want {
		// Raising the hard limit needs privileges; try, then settle for it.
		up := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up) == nil {
			return want, nil
		}
	}
	next := syscall.Rlimit{Cur: target, Max: lim.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
		return lim.Cur, fmt.Errorf("raise the open-file limit from %d to %d: %w", lim.Cur, target, err)
	}
	if target < want {
		return target, fmt.Errorf("the open-file limit is %d (the hard limit), below the %d wanted", target, want)
	}
	return target, nil
}
