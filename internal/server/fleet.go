package server

import (
	"context"
	"errors"
	"net/http"

	"github.com/tiercache/tiercache"
)

// fleet answers GET /v1/fleet with the namespace's fleet registry as this
// instance reads it (tiercache.Cache.Fleet): every instance that
// publishes heartbeats, live, silent or stopped, and how each disagrees
// with most of them.
func (s *Server) fleet(w http.ResponseWriter, r *http.Request) {
	if !s.checkQuery(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	f, err := s.cache.Fleet(ctx)
	if errors.Is(err, tiercache.ErrFleetDisabled) {
		s.writeError(w, http.StatusNotFound, codeFleetDisabled, "this instance does not publish heartbeats: set cache.fleet.enabled")
		return
	}
	if err != nil {
		s.writeCacheError(ctx, w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, f)
}
