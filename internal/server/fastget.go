package server

import (
	"net/http"
	"strings"
)

// getPattern is the route of cache reads.
const getPattern = "GET /v1/cache/{key...}"

// cacheReads answers GET and HEAD of a cache key whose path needs no
// unescaping without going through ServeMux, as the mux would (same
// handler, same Request.Pattern for the metrics and the logs): on the
// busiest route, the mux's pattern matching cost four allocations and a
// tenth of the handler chain's time. Every other request, and a cache
// path with escapes, goes to mux.
func (s *Server) cacheReads(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			if key, ok := strings.CutPrefix(r.URL.Path, cachePrefix); ok && key != "" && r.URL.RawPath == "" {
				r.Pattern = getPattern
				s.getKey(w, r, key)
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}
