package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/tiercache/tiercache/warm"
)

// Warmer runs warming strategies for POST /v1/warm and lists them for GET
// /v1/warm. *warm.Runner implements it.
type Warmer interface {
	// WarmAsync starts the named strategies (all on-demand ones when none
	// are named) in the background and returns their names in run order.
	WarmAsync(names ...string) ([]string, error)
	// Status lists every strategy with its last run.
	Status() []warm.Status
}

// maxWarmBody bounds the JSON body of POST /v1/warm.
const maxWarmBody = 1 << 20

// warmRequest is the body of POST /v1/warm.
type warmRequest struct {
	Strategies []string `json:"strategies"`
}

// warmAccepted is the answer of POST /v1/warm.
type warmAccepted struct {
	Strategies []string `json:"strategies"`
}

const warmingDisabled = "warming is disabled: start tiercache serve with --config FILE, and CACHE_WARMING_ENABLED unset or true"

// startWarm answers POST /v1/warm with body {"strategies":[...]}, or no
// body for every on-demand strategy: 202 once the runs have started in
// the background, with the strategies in the order they run.
func (s *Server) startWarm(w http.ResponseWriter, r *http.Request) {
	if !s.checkQuery(w, r) {
		return
	}
	if s.warmer == nil {
		s.writeError(w, http.StatusServiceUnavailable, codeWarmingDisabled, warmingDisabled)
		return
	}
	var req warmRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxWarmBody+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		s.writeError(w, http.StatusBadRequest, codeInvalidBody, fmt.Sprintf(`the body must be empty or {"strategies":["name", ...]}: %v`, err))
		return
	}
	if dec.More() {
		s.writeError(w, http.StatusBadRequest, codeInvalidBody, "the body must hold one JSON object")
		return
	}
	names, err := s.warmer.WarmAsync(req.Strategies...)
	switch {
	case errors.Is(err, warm.ErrUnknownStrategy):
		s.writeError(w, http.StatusNotFound, codeUnknownStrategy, err.Error())
		return
	case errors.Is(err, warm.ErrNotOnDemand):
		s.writeError(w, http.StatusConflict, codeNotOnDemand, err.Error())
		return
	case err != nil:
		s.logCause(r, slog.LevelWarn, codeWarmingUnavailable, err)
		s.writeError(w, http.StatusServiceUnavailable, codeWarmingUnavailable, "the warming runner cannot start runs now (it is stopping)")
		return
	}
	if names == nil {
		names = []string{}
	}
	writeJSON(w, http.StatusAccepted, warmAccepted{Strategies: names})
}

// warmStatus is one strategy in the answer of GET /v1/warm.
type warmStatus struct {
	Name          string     `json:"name"`
	Priority      int        `json:"priority"`
	Enabled       bool       `json:"enabled"`
	Schedule      string     `json:"schedule,omitempty"`
	WarmOnStartup bool       `json:"warm_on_startup"`
	WarmOnDemand  bool       `json:"warm_on_demand"`
	BatchSize     int        `json:"batch_size"`
	TTL           string     `json:"ttl,omitempty"` // empty: the cache's default
	Tags          []string   `json:"tags,omitempty"`
	Running       bool       `json:"running"`
	Runs          int64      `json:"runs"`
	Skipped       int64      `json:"skipped"`
	Overlapped    int64      `json:"overlapped"`
	LastRun       *warmRun   `json:"last_run,omitempty"`
	NextRun       *time.Time `json:"next_run,omitempty"`
}

// warmRun is a strategy's last run.
type warmRun struct {
	Trigger         string    `json:"trigger"`
	Started         time.Time `json:"started"`
	Duration        string    `json:"duration"`
	DurationSeconds float64   `json:"duration_seconds"`
	Written         int64     `json:"written"`
	Failed          int64     `json:"failed"`
	Batches         int64     `json:"batches"`
	Error           string    `json:"error,omitempty"`
	LastKeyError    string    `json:"last_key_error,omitempty"`
}

// warmList is the answer of GET /v1/warm.
type warmList struct {
	Enabled    bool         `json:"enabled"`
	Strategies []warmStatus `json:"strategies"`
}

// listWarm answers GET /v1/warm with every strategy and its last run.
func (s *Server) listWarm(w http.ResponseWriter, r *http.Request) {
	if !s.checkQuery(w, r) {
		return
	}
	out := warmList{Enabled: s.warmer != nil, Strategies: []warmStatus{}}
	if s.warmer != nil {
		for _, st := range s.warmer.Status() {
			out.Strategies = append(out.Strategies, toWarmStatus(st))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func toWarmStatus(st warm.Status) warmStatus {
	ws := warmStatus{
		Name: st.Name, Priority: st.Priority, Enabled: st.Enabled, Schedule: st.Schedule,
		WarmOnStartup: st.WarmOnStartup, WarmOnDemand: st.WarmOnDemand, BatchSize: st.BatchSize,
		Tags: st.Tags, Running: st.Running, Runs: st.Runs, Skipped: st.Skipped, Overlapped: st.Overlapped,
	}
	if st.TTL > 0 {
		ws.TTL = st.TTL.String()
	}
	if !st.NextRun.IsZero() {
		ws.NextRun = &st.NextRun
	}
	if l := st.Last; !l.Started.IsZero() {
		ws.LastRun = &warmRun{
			Trigger: string(l.Trigger), Started: l.Started, Duration: l.Duration.String(),
			DurationSeconds: l.Duration.Seconds(), Written: l.Written, Failed: l.Failed, Batches: l.Batches,
		}
		if l.Err != nil {
			ws.LastRun.Error = l.Err.Error()
		}
		if l.KeyErr != nil {
			ws.LastRun.LastKeyError = l.KeyErr.Error()
		}
	}
	return ws
}
