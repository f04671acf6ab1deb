package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
)

// TestFleet_Endpoint: GET /v1/fleet lists both instances of a namespace
// on one Redis, then the one that stopped; /v1/stats carries the canary's
// figures; an instance without the registry answers 404 fleet_disabled.
func TestFleet_Endpoint(t *testing.T) {
	t.Parallel()
	srv := redistest.NewStandalone(t)
	opts := func(id string) tiercache.Options {
		return tiercache.Options{
			Namespace: "fleet", Redis: tiercache.RedisOptions{Addrs: []string{srv.Addr}},
			Fleet:  tiercache.FleetOptions{Enabled: true, InstanceID: id, Heartbeat: 50 * time.Millisecond, Version: "v1"},
			Canary: tiercache.CanaryOptions{Interval: 100 * time.Millisecond},
		}
	}
	a := newCache(t, opts("a"))
	b := newCache(t, opts("b"))
	ts := newTestServer(t, Config{Cache: a})
	fleet := func() (tiercache.Fleet, error) {
		r := do(t, ts, http.MethodGet, "/v1/fleet", "")
		var f tiercache.Fleet
		if r.status != http.StatusOK || r.header.Get("Cache-Control") != "no-store" {
			return f, fmt.Errorf("status %d, Cache-Control %q: %s", r.status, r.header.Get("Cache-Control"), r.body)
		}
		return f, json.Unmarshal([]byte(r.body), &f)
	}
	eventuallyErr(t, 10*time.Second, func() error {
		f, err := fleet()
		if err != nil {
			return err
		}
		if f.Self != "a" || f.Live != 2 || len(f.Members) != 2 || f.Members[0].ID != "a" || !f.Members[0].Self || f.Members[1].ID != "b" {
			return fmt.Errorf("%+v", f)
		}
		return nil
	})
	eventuallyErr(t, 10*time.Second, func() error {
		r := do(t, ts, http.MethodGet, "/v1/stats", "")
		var st struct {
			Coherence *tiercache.CoherenceStats `json:"coherence"`
		}
		if err := json.Unmarshal([]byte(r.body), &st); err != nil {
			return err
		}
		if st.Coherence == nil || st.Coherence.Watching != 1 || st.Coherence.Seen < 3 || st.Coherence.Lag.P99 <= 0 {
			return fmt.Errorf("coherence %+v", st.Coherence)
		}
		return nil
	})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	eventuallyErr(t, 10*time.Second, func() error {
		f, err := fleet()
		if err != nil {
			return err
		}
		if f.Live != 1 || f.Stopped != 1 || f.Members[1].State != "stopped" {
			return fmt.Errorf("%+v", f)
		}
		return nil
	})
	if r := do(t, ts, http.MethodGet, "/v1/fleet?x=1", ""); r.status != http.StatusBadRequest {
		t.Errorf("GET /v1/fleet?x=1: %d, want 400", r.status)
	}

	off := newTestServer(t, Config{Cache: newCache(t, tiercache.Options{})})
	r := do(t, off, http.MethodGet, "/v1/fleet", "")
	var e errorBody
	if err := json.Unmarshal([]byte(r.body), &e); err != nil || r.status != http.StatusNotFound || e.Error.Code != codeFleetDisabled {
		t.Errorf("GET /v1/fleet without the registry: %d %s", r.status, r.body)
	}
}

// eventuallyErr polls cond until it returns nil, failing t with its last
// error after d.
func eventuallyErr(t *testing.T, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
