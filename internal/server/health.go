package server

import (
	"context"
	"net/http"
	"strconv"

	"github.com/tiercache/tiercache"
)

// readyz answers GET /readyz with the cache's health: 200 when healthy or
// degraded (a degraded cache still serves every request), 503 when
// unhealthy or while the cache has not reached Redis yet
// (Cache.Connected). The body is the whole health report for a client
// that may read (no token configured, OpenReads, or the token presented);
// others, such as a load balancer's probe, get only {"status": "..."}:
// the report names Redis's addresses.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if !s.checkQuery(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	h := s.cache.Health(ctx)
	status := http.StatusOK
	if h.Status == tiercache.Unhealthy || !s.cache.Connected() {
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", strconv.Itoa(s.retryAfterSeconds()))
	}
	w.Header().Set("Cache-Control", "no-store")
	if !s.authorizedRead(r) {
		writeJSON(w, status, healthVerdict{Status: h.Status})
		return
	}
	writeJSON(w, status, h)
}

// healthVerdict is the answer of /readyz to a client without the token.
type healthVerdict struct {
	Status tiercache.HealthStatus `json:"status"`
}

// stats answers GET /v1/stats with the cache's report: counters, hit
// ratios, latency percentiles and Redis INFO per node, and the server's
// own HTTP figures when it has HTTP metrics.
func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	if !s.checkQuery(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	rep, err := s.cache.Stats(ctx)
	if err != nil {
		s.writeCacheError(ctx, w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, statsReport{Stats: rep, HTTP: s.httpMetrics.report()})
}
