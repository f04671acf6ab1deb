package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// maxInvalidateBody bounds the JSON body of POST /v1/invalidate.
const maxInvalidateBody = 1 << 20

// invalidateRequest is the body of POST /v1/invalidate.
type invalidateRequest struct {
	Tags []string `json:"tags"`
}

// invalidate answers POST /v1/invalidate with body {"tags":[...]}: 204 once
// every tag's version was incremented in L2; with ?soft=true the entries
// become stale instead (Cache.InvalidateTagsSoft).
func (s *Server) invalidate(w http.ResponseWriter, r *http.Request) {
	if !s.checkQuery(w, r, "soft") {
		return
	}
	soft, ok := s.softParam(w, r)
	if !ok {
		return
	}
	var req invalidateRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxInvalidateBody+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("empty body")
		}
		s.writeError(w, http.StatusBadRequest, codeInvalidBody, fmt.Sprintf(`the body must be {"tags":["a","b"]}: %v`, err))
		return
	}
	if dec.More() {
		s.writeError(w, http.StatusBadRequest, codeInvalidBody, "the body must hold one JSON object")
		return
	}
	if len(req.Tags) == 0 {
		s.writeError(w, http.StatusBadRequest, codeInvalidBody, `"tags" must list at least one tag`)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	invalidate := s.cache.InvalidateTags
	if soft {
		invalidate = s.cache.InvalidateTagsSoft
	}
	if err := invalidate(ctx, req.Tags...); err != nil {
		s.writeCacheError(ctx, w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// clear answers POST /v1/clear: 204 once the namespace version was
// incremented in L2; with ?soft=true the entries become stale instead
// (Cache.ClearSoft). Other namespaces are untouched.
func (s *Server) clear(w http.ResponseWriter, r *http.Request) {
	if !s.checkQuery(w, r, "soft") {
		return
	}
	soft, ok := s.softParam(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	clear := s.cache.Clear
	if soft {
		clear = s.cache.ClearSoft
	}
	if err := clear(ctx); err != nil {
		s.writeCacheError(ctx, w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
