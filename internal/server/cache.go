package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/config"
)

// getValue answers GET /v1/cache/{key...} with the stored bytes as they
// are, whatever the codec that wrote them. A fail-safe stale value (Redis
// unreachable, the value held in L1) answers 200 with X-Cache: stale and
// the staleness headers of cacheHeaders.
func (s *Server) getValue(w http.ResponseWriter, r *http.Request) {
	if !s.checkQuery(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	var raw tiercache.Raw
	res, err := s.cache.Lookup(ctx, r.PathValue("key"), &raw)
	if err != nil {
		if errors.Is(err, tiercache.ErrNotFound) {
			w.Header().Set("X-Cache", tiercache.SourceNone.String())
		}
		s.writeCacheError(ctx, w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", contentType(raw.Codec))
	h.Set("Content-Length", strconv.Itoa(len(raw.Data)))
	h.Set("X-Content-Type-Options", "nosniff")
	cacheHeaders(h, res, time.Now())
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(raw.Data)
}

// cacheHeaders describes where an answer came from and how old it is:
//
//   - X-Cache: hit-l1, hit-l2, loader or stale.
//   - Age: whole seconds since the value was written (RFC 9111 section
//     5.1), when the value records it.
//   - Cache-Status (RFC 9211): "tiercache; hit", with ttl= the seconds of
//     freshness left (negative once expired) when the value has a TTL.
//     A stale answer adds detail=stale.
//   - Warning: 110 - "Response is Stale" on a stale answer, for clients
//     that look for the older signal (RFC 7234 section 5.5.1).
func cacheHeaders(h http.Header, res tiercache.Result, now time.Time) {
	h.Set("X-Cache", res.Source.String())
	if !res.CreatedAt.IsZero() {
		h.Set("Age", strconv.FormatInt(max(0, int64(now.Sub(res.CreatedAt)/time.Second)), 10))
	}
	status := "tiercache; hit"
	if !res.ExpiresAt.IsZero() {
		left := res.ExpiresAt.Sub(now)
		secs := int64(left / time.Second)
		if left < 0 && left%time.Second != 0 {
			secs-- // an expired value is at least one second past
		}
		status += "; ttl=" + strconv.FormatInt(secs, 10)
	}
	if res.Stale {
		status += "; detail=stale"
		h.Set("Warning", `110 - "Response is Stale"`)
	}
	h.Set("Cache-Status", status)
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
	if !s.checkQuery(w, r, "ttl", "tags") {
		return
	}
	opts, err := setOptions(r.URL.Query())
	if err != nil {
		s.writeError(w, http.StatusBadRequest, codeInvalidParameter, err.Error())
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxValueSize))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			s.writeError(w, http.StatusRequestEntityTooLarge, codeValueTooLarge, fmt.Sprintf("the body is larger than %d bytes", s.maxValueSize))
			return
		}
		s.logCause(r, slog.LevelDebug, codeInvalidBody, err)
		s.writeError(w, http.StatusBadRequest, codeInvalidBody, "the body could not be read")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	if err := s.cache.Set(ctx, r.PathValue("key"), body, opts...); err != nil {
		s.writeCacheError(ctx, w, r, err)
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

// parseTTL accepts a positive duration as config.ParseDuration reads it:
// a Go duration ("90s", "1h30m") or a number of seconds ("90", "1.5").
func parseTTL(v string) (time.Duration, error) {
	d, err := config.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("ttl=%q is not a positive duration such as 30s or 1h, or a number of seconds", v)
	}
	return d, nil
}

// deleteValue answers DELETE /v1/cache/{key...}. Deleting a missing key
// succeeds.
func (s *Server) deleteValue(w http.ResponseWriter, r *http.Request) {
	if !s.checkQuery(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	if err := s.cache.Delete(ctx, r.PathValue("key")); err != nil {
		s.writeCacheError(ctx, w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
