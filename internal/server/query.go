package server

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// checkQuery applies the API's one rule for query parameters: a parameter
// the endpoint does not take is refused, on every endpoint, so that a
// misspelt parameter never goes unnoticed. It answers 400
// invalid_parameter naming the parameter and the ones the endpoint takes,
// and returns false, when the query holds a parameter not in allowed or
// cannot be parsed. A request without a query costs one comparison.
func (s *Server) checkQuery(w http.ResponseWriter, r *http.Request, allowed ...string) bool {
	if r.URL.RawQuery == "" {
		return true
	}
	msg := queryProblem(r.URL.RawQuery, allowed)
	if msg == "" {
		return true
	}
	s.writeError(w, http.StatusBadRequest, codeInvalidParameter, msg)
	return false
}

// queryProblem describes what is wrong with a raw query for an endpoint
// taking the allowed parameters, or returns "" when nothing is. Of several
// unknown parameters it names the first in sorted order, so that the
// answer does not depend on map iteration.
func queryProblem(raw string, allowed []string) string {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return fmt.Sprintf("the query string cannot be parsed: %v", err)
	}
	var unknown []string
	for name := range q {
		if !slices.Contains(allowed, name) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) == 0 {
		return ""
	}
	slices.Sort(unknown)
	if len(allowed) == 0 {
		return fmt.Sprintf("unknown query parameter %q: this endpoint takes no query parameters", unknown[0])
	}
	return fmt.Sprintf("unknown query parameter %q (allowed: %s)", unknown[0], strings.Join(allowed, ", "))
}

// softParam reads the soft query parameter of the invalidating endpoints
// (DELETE /v1/cache/{key}, POST /v1/mdelete, /v1/invalidate and
// /v1/clear): "true" or "1" asks for a soft invalidation, "false", "0" or
// its absence for a hard one. Anything else answers 400 and returns
// ok false.
func (s *Server) softParam(w http.ResponseWriter, r *http.Request) (soft, ok bool) {
	if r.URL.RawQuery == "" {
		return false, true
	}
	vals := r.URL.Query()["soft"]
	if len(vals) == 0 {
		return false, true
	}
	if len(vals) == 1 {
		switch vals[0] {
		case "true", "1":
			return true, true
		case "false", "0":
			return false, true
		}
	}
	s.writeError(w, http.StatusBadRequest, codeInvalidParameter, `the query parameter "soft" must be given once, as true, false, 1 or 0`)
	return false, false
}

// withQuery wraps a handler that does not check its own query (the
// metrics exporter, the static files) with checkQuery.
func (s *Server) withQuery(next http.Handler, allowed ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.checkQuery(w, r, allowed...) {
			next.ServeHTTP(w, r)
		}
	})
}
