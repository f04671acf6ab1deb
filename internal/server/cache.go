package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tiercache/tiercache"
)

// getValue answers GET /v1/cache/{key...} with the stored bytes as they
// are, whatever the codec that wrote them.
func (s *Server) getValue(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	var raw tiercache.Raw
	res, err := s.cache.Lookup(ctx, r.PathValue("key"), &raw)
	if err != nil {
		if errors.Is(err, tiercache.ErrNotFound) {
			w.Header().Set("X-Cache", tiercache.SourceNone.String())
		}
		s.writeCacheError(w, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", contentType(raw.Codec))
	h.Set("Content-Length", strconv.Itoa(len(raw.Data)))
	h.Set("X-Cache", res.Source.String())
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(raw.Data)
}

// contentType maps a codec name to the media type of its payload.
func contentType(codec string) string {
	switch codec {
	case "json":
		return "application/json"
	case "msgpack":
		return "application/msgpack"
	}
	return "application/octet-stream"
}

// putValue answers PUT /v1/cache/{key...}?ttl=30s&tags=a,b by storing the
// body as raw bytes.
func (s *Server) putValue(w http.ResponseWriter, r *http.Request) {
	opts, err := setOptions(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxValueSize))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", s.maxValueSize))
			return
		}
		writeError(w, http.StatusBadRequest, "reading the body: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	if err := s.cache.Set(ctx, r.PathValue("key"), body, opts...); err != nil {
		s.writeCacheError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// setOptions turns the query of a PUT into write options. Unknown
// parameters are rejected so that a misspelt ttl does not silently store
// with the default lifetime.
func setOptions(q url.Values) ([]tiercache.SetOption, error) {
	var opts []tiercache.SetOption
	for name, vals := range q {
		switch name {
		case "ttl":
			if len(vals) != 1 {
				return nil, errors.New("ttl is given more than once")
			}
			ttl, err := parseTTL(vals[0])
			if err != nil {
				return nil, err
			}
			opts = append(opts, tiercache.WithTTL(ttl))
		case "tags":
			var tags []string
			for _, v := range vals {
				for t := range strings.SplitSeq(v, ",") {
					if t == "" {
						return nil, fmt.Errorf("tags=%q contains an empty tag", v)
					}
					tags = append(tags, t)
				}
			}
			opts = append(opts, tiercache.WithTags(tags...))
		default:
			return nil, fmt.Errorf("unknown query parameter %q (known: ttl, tags)", name)
		}
	}
	return opts, nil
}

// parseTTL accepts a positive Go duration ("90s", "1h30m") or a positive
// number of seconds ("90", "1.5").
func parseTTL(v string) (time.Duration, error) {
	bad := fmt.Errorf("ttl=%q is not a positive duration such as 30s or 1h, or a number of seconds", v)
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		ns := secs * float64(time.Second)
		if !(ns >= 1) || ns > math.MaxInt64 { // also rejects NaN
			return 0, bad
		}
		return time.Duration(ns), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, bad
	}
	return d, nil
}

// deleteValue answers DELETE /v1/cache/{key...}. Deleting a missing key
// succeeds.
func (s *Server) deleteValue(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	if err := s.cache.Delete(ctx, r.PathValue("key")); err != nil {
		s.writeCacheError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// writeCacheError maps an error from the cache to a status. What is left
// once the caller's mistakes are sorted out is the L2 (or a closed cache)
// failing, which a client may retry later.
func (s *Server) writeCacheError(w http.ResponseWriter, err error) {
	if errors.Is(err, tiercache.ErrQueued) {
		// Redis is unreachable and the operation waits in the recovery
		// queue: accepted, not yet applied.
		writeJSON(w, http.StatusAccepted, queuedBody{Status: "queued", Detail: err.Error()})
		return
	}
	status := http.StatusServiceUnavailable
	switch {
	case errors.Is(err, tiercache.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, tiercache.ErrInvalidKey), errors.Is(err, tiercache.ErrInvalidTag):
		status = http.StatusBadRequest
	case errors.Is(err, tiercache.ErrValueTooLarge):
		status = http.StatusRequestEntityTooLarge
	}
	msg := err.Error()
	if errors.Is(err, context.DeadlineExceeded) {
		msg = fmt.Sprintf("the cache did not answer within %v: %s", s.timeout, msg)
	}
	writeError(w, status, msg)
}

// queuedBody answers an operation accepted into the recovery queue.
type queuedBody struct {
	Status string `json:"status"`
	Detail string `json:"detail"`
}

// errorBody is the JSON body of every error answer.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // messages are read by people and never embedded in HTML
	if err := enc.Encode(v); err != nil {
		// Unreachable for the package's own types; answer rather than panic.
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":"internal error"}` + "\n")
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
