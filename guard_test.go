package tiercache

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/l2"
)

// scriptedStore answers each Get with the next error of its script.
type scriptedStore struct {
	l2.Store
	errs []error
}

func (s *scriptedStore) Get(context.Context, string) ([]byte, error) {
	err := s.errs[0]
	s.errs = s.errs[1:]
	return nil, err
}

// TestGuard_BreakerCountsConsecutiveFailures: the breaker trips on
// Threshold consecutive failures only: a success between failures, or an
// answered miss, starts the count again.
func TestGuard_BreakerCountsConsecutiveFailures(t *testing.T) {
	down := fmt.Errorf("redis: %w", l2.ErrUnavailable)
	notFound := l2.ErrNotFound // L2 answered: a success for the breaker
	for _, tc := range []struct {
		name   string
		script []error
		open   bool
	}{
		{"a success between failures", []error{nil, down, down, nil, down, down, nil, down, down}, false},
		{"an answered miss between failures", []error{nil, down, down, notFound, down, down}, false},
		{"three in a row after successes", []error{nil, nil, nil, down, down, down}, true},
		{"three in a row after a recovered failure", []error{down, nil, nil, down, down, down}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{Breaker: BreakerOptions{Threshold: 3, OpenTimeout: time.Hour, HalfOpenProbes: 1}, Retries: -1}
			g := newGuarded(&scriptedStore{errs: tc.script}, opts, nil)
			g.obs = newObserver(opts)
			for i, want := range tc.script {
				if _, err := g.Get(t.Context(), "k"); !errors.Is(err, want) && !(want == nil && err == nil) {
					t.Fatalf("call %d: %v, want %v", i, err, want)
				}
			}
			if open := g.state() == BreakerOpen; open != tc.open {
				t.Fatalf("breaker %s after %d calls, want open=%v", g.state(), len(tc.script), tc.open)
			}
		})
	}
}
