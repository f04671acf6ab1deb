// Package redistest starts real Redis processes for tests: a standalone
// server, a sentinel group (one master, two replicas, three sentinels), a
// six-node cluster (three masters, three replicas), and a master with one
// replica started from the deployment's redis-production.conf and
// acl.conf (StartProduction). Every process listens on a free port, lives
// in its own temporary directory and dies with the test binary.
//
// The package has no dependency on the code under test: it speaks RESP2
// over a plain net.Conn, and takes only the configuration files from
// package deploy.
package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redisproc"
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

// freePort is redisproc.FreePort; tests replace it to hand out a taken
// port.
func freePort(bus bool) (int, error) { return redisproc.FreePort(bus) }

// poll calls cond until it returns nil or timeout has passed, and then
// returns cond's last error. A cond error wrapping errGiveUp ends it at
// once.
func poll(timeout time.Duration, what string, cond func() error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := redisproc.Poll(ctx, pollInterval, 0, func(context.Context) error { return cond() })
	if err != nil {
		return fmt.Errorf("redistest: %s: %w", what, err)
	}
	return nil
}

// eventuallyInterval is the pause between two calls of Eventually's
// condition.
const eventuallyInterval = 10 * time.Millisecond

// Eventually calls cond until it returns nil, and fails t when cond still
// errs after timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := redisproc.Poll(ctx, eventuallyInterval, 0, func(context.Context) error { return cond() }); err != nil {
		t.Fatalf("%s: not done after %v: %v", what, timeout, err)
	}
}

// errGiveUp is the shared process helpers' error, under this package's
// name.
var errGiveUp = redisproc.ErrGiveUp

// busOffset is the distance from a cluster node's port to its bus port.
const busOffset = redisproc.BusOffset
