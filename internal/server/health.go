package server

import (
	"context"
	"net/http"

	"github.com/tiercache/tiercache"
)

// readyz answers GET /readyz with the cache's health: 200 when healthy or
// degraded (a degraded cache still serves every request), 503 when
// unhealthy.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	h := s.cache.Health(ctx)
	status := http.StatusOK
	if h.Status == tiercache.Unhealthy {
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, h)
}

// stats answers GET /v1/stats with the cache's report: counters, hit
// ratios, latency percentiles and Redis INFO per node.
func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	rep, err := s.cache.Stats(ctx)
	if err != nil {
		s.writeCacheError(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, rep)
}
