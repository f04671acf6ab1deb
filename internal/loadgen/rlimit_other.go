//go:build !unix

package loadgen

import "errors"

// RaiseFileLimit is not supported on this platform: it returns 0 and an
// error.
func RaiseFileLimit(uint64) (uint64, error) {
	return 0, errors.New("raising the open-file limit is not supported on this platform")
}
