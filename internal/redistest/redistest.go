// Package redistest starts real Redis processes for tests: a standalone
// server, a sentinel group (one master, two replicas, three sentinels) and
// a six-node cluster (three masters, three replicas). Every process listens
// on a free loopback port, lives in its own temporary directory and dies
// with the test binary.
//
// The package has no dependency on the code under test: it speaks RESP2
// over a plain net.Conn.
package redistest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Binaries the harness runs. Require checks that all of them are on PATH.
var binaries = [...]string{"redis-server", "redis-sentinel", "redis-cli"}

const (
	// startTimeout bounds the wait for a fresh process to answer PING.
	startTimeout = 10 * time.Second
	// topologyTimeout bounds the wait for replicas, sentinels or cluster
	// nodes to agree on a topology.
	topologyTimeout = 30 * time.Second
	// killTimeout bounds the wait for a killed process to be reaped.
	killTimeout = 10 * time.Second
	// pollInterval is the pause between two probes of a condition.
	pollInterval = 25 * time.Millisecond
	// bindAttempts is how many fresh ports a start tries when another
	// process takes its port between the probe and the bind.
	bindAttempts = 5
	// busOffset is the distance from a cluster node's port to its bus port.
	busOffset = 10000
)

// Require skips the test when redis-server, redis-sentinel or redis-cli is
// not on PATH. Under CI=true it fails the test instead, because there a
// skipped integration test would hide a broken setup.
func Require(t testing.TB) {
	t.Helper()
	var missing []string
	for _, b := range binaries {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("redistest: %s not found on PATH; install the Debian packages redis-server, redis-sentinel and redis-tools (make test does)",
		strings.Join(missing, ", "))
	if inCI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func inCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// freePort returns a loopback port that was free a moment ago. With bus
// set, port+10000 (a cluster node's bus port) was free as well. Another
// process may still take it before Redis binds; callers retry.
func freePort(bus bool) (int, error) {
	var lastErr error
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("redistest: find a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if !bus {
			l.Close()
			return port, nil
		}
		if port+busOffset > 65535 {
			l.Close()
			lastErr = fmt.Errorf("bus port of %d out of range", port)
			continue
		}
		bl, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+busOffset)))
		l.Close()
		if err != nil {
			lastErr = err
			continue
		}
		bl.Close()
		return port, nil
	}
	return 0, fmt.Errorf("redistest: find a free port pair: %w", lastErr)
}

// poll calls cond until it returns nil or timeout has passed, and then
// returns cond's last error.
func poll(timeout time.Duration, what string, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if errors.Is(err, errGiveUp) {
			return fmt.Errorf("redistest: %s: %w", what, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: %s: not done after %v: %w", what, timeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// errGiveUp, wrapped into a condition's error, ends poll at once, for
// failures that waiting cannot cure, such as a process that exited.
var errGiveUp = errors.New("will not recover")
