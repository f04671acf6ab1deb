package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/config"
)

// getValue answers GET (and HEAD) /v1/cache/{key...} with the stored
// bytes as they are, whatever the codec that wrote them, under the
// Content-Type they were stored with (else the codec's media type). A
// fail-safe stale value (Redis unreachable, the value held in L1) answers
// 200 with X-Cache: stale and the staleness headers of cacheHeaders.
// If-None-Match naming the value's ETag answers 304 without a body;
// If-Match naming another answers 412.
func (s *Server) getValue(w http.ResponseWriter, r *http.Request) {
	s.getKey(w, r, r.PathValue("key"))
}

// getKey is getValue of key.
func (s *Server) getKey(w http.ResponseWriter, r *http.Request, key string) {
	if !s.checkQuery(w, r) {
		return
	}
	ctx := withLazyTimeout(r.Context(), s.timeout)
	defer ctx.stop()
	raw := readDestination(w)
	res, err := s.cache.Lookup(ctx, key, raw)
	if err != nil {
		if errors.Is(err, tiercache.ErrNotFound) && !errors.Is(err, tiercache.ErrNotTiercache) {
			w.Header().Set("X-Cache", tiercache.SourceNone.String())
		}
		s.writeCacheError(ctx, w, r, err)
		return
	}
	etag := res.QuotedETag()
	ct := raw.ContentType
	if ct == "" {
		ct = contentType(raw.Codec)
	}
	hs := s.readHeaders.get(res, etag, ct, time.Now())
	h := w.Header()
	hs.setCache(h)
	if im := r.Header["If-Match"]; len(im) > 0 && !etagMatches(im, etag, false) {
		s.writeError(w, http.StatusPreconditionFailed, codePreconditionFailed, "the key's current value does not match If-Match")
		return
	}
	if inm := r.Header["If-None-Match"]; len(inm) > 0 && etagMatches(inm, etag, true) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h["Content-Type"] = hs.contentType
	if n := len(raw.Data); n == 0 || n > autoContentLength {
		h["Content-Length"] = []string{strconv.Itoa(n)}
	}
	h["X-Content-Type-Options"] = nosniff
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(raw.Data)
}

// nosniff is the value of X-Content-Type-Options on the answers of GET,
// shared by all of them as the values of readHeaders are.
var nosniff = []string{"nosniff"}

// autoContentLength is the largest body for which net/http writes the
// Content-Length itself, GET and HEAD alike: one the handler writes whole
// before returning that fits the response buffer (2048 bytes), but an
// empty one, which HEAD would answer without. Leaving
// it to net/http keeps a GET's header map within the 8 entries of a
// small Go map; a ninth made the map grow into a table, and made the
// copy net/http takes of it a table too (about 5% of the CPU of a GET
// from L1).
const autoContentLength = 2048

// headerValues sets the headers of an answer from one backing array of
// values: one allocation for all of them instead of one each, and no
// canonicalisation of the keys, which must be given canonical.
type headerValues struct {
	h    http.Header
	vals []string
}

func (hv *headerValues) set(key, value string) {
	if hv.vals == nil {
		hv.vals = make([]string, 0, 10)
	}
	hv.vals = append(hv.vals, value)
	n := len(hv.vals)
	hv.h[key] = hv.vals[n-1 : n : n]
}

// cacheHeaders describes the value an answer carries (or, for 304,
// would carry), where it came from and how old it is:
//
//   - ETag: the stored value's entity tag (Result.ETag, quoted), the same
//     on every instance.
//   - Cache-Control: see cacheControl.
//   - X-Cache: hit-l1, hit-l2, loader or stale.
//   - Age: whole seconds since the value was written (RFC 9111 section
//     5.1), when the value records it.
//   - Cache-Status (RFC 9211): "tiercache; hit", with ttl= the seconds of
//     freshness left (negative once expired) when the value has a TTL.
//     A stale answer adds detail=stale.
//   - Warning: 110 - "Response is Stale" on a stale answer, for clients
//     that look for the older signal (RFC 7234 section 5.5.1).
func cacheHeaders(hdr http.Header, res tiercache.Result, etag string, now time.Time) {
	h := headerValues{h: hdr}
	h.cacheHeaders(res, etag, now)
}

// cacheHeaders is the function cacheHeaders, into hv's values.
func (h *headerValues) cacheHeaders(res tiercache.Result, etag string, now time.Time) {
	h.set("Etag", etag)
	h.set("X-Cache", res.Source.String())
	age := ageSeconds(res, now)
	if age >= 0 {
		h.set("Age", strconv.FormatInt(age, 10))
	}
	h.set("Cache-Control", cacheControl(res, max(age, 0), now))
	status := "tiercache; hit"
	if !res.ExpiresAt.IsZero() {
		status += "; ttl=" + strconv.FormatInt(floorSeconds(res.ExpiresAt.Sub(now)), 10)
	}
	if res.Stale {
		status += "; detail=stale"
		h.set("Warning", `110 - "Response is Stale"`)
	}
	h.set("Cache-Status", status)
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
// body with its Content-Type (see bodyCodec), conditionally with If-Match
// or "If-None-Match: *".
func (s *Server) putValue(w http.ResponseWriter, r *http.Request) {
	if !s.checkQuery(w, r, "ttl", "tags") {
		return
	}
	opts, err := setOptions(r.URL.Query())
	if err != nil {
		s.writeError(w, http.StatusBadRequest, codeInvalidParameter, err.Error())
		return
	}
	ct := r.Header.Get("Content-Type")
	if err := tiercache.CheckContentType(ct); err != nil {
		s.writeError(w, http.StatusBadRequest, codeInvalidContentType, "Content-Type: "+causeText(err))
		return
	}
	cond, ok := s.precondition(w, r, true)
	if !ok {
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
	if ct == "application/octet-stream" {
		// What GET answers for raw bytes anyway: not stored, so that
		// the value stays a version 1 envelope, readable by older
		// instances during an upgrade, and 25 bytes shorter.
		ct = ""
	}
	value := tiercache.Raw{Codec: bodyCodec(ct), ContentType: ct, Data: body}
	var etag string
	opts = append(append(opts, cond.options()...), tiercache.ReportETag(&etag))
	if err := s.cache.Set(ctx, r.PathValue("key"), value, opts...); err != nil {
		if errors.Is(err, tiercache.ErrInvalidValue) {
			s.writeError(w, http.StatusBadRequest, codeInvalidBody, "the body does not match its Content-Type: "+causeText(err))
			return
		}
		s.writeCacheError(ctx, w, r, err)
		return
	}
	// The stored representation is the body as sent (RFC 9110 section
	// 8.8.3): its ETag lets the client's next write use If-Match.
	w.Header().Set("ETag", `"`+etag+`"`)
	w.WriteHeader(http.StatusNoContent)
}

// bodyCodec picks the codec a PUT body is stored with: json for JSON media
// types (application/json and any +json type), msgpack for MessagePack
// ones, raw for everything else. Go programs can then read JSON and
// MessagePack bodies into their own types; the library checks that such
// a body parses.
func bodyCodec(ct string) string {
	if ct == "" {
		return "raw"
	}
	mt, _, err := mime.ParseMediaType(ct)
	switch {
	case err != nil:
		return "raw"
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return "json"
	case mt == "application/msgpack" || mt == "application/x-msgpack" || mt == "application/vnd.msgpack":
		return "msgpack"
	}
	return "raw"
}

// setOptions turns the query of a PUT into write options. checkQuery has
// refused unknown parameters, so that a misspelt ttl does not silently
// store with the default lifetime.
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
// succeeds, unless If-Match asks for a current value.
func (s *Server) deleteValue(w http.ResponseWriter, r *http.Request) {
	if !s.checkQuery(w, r, "soft") {
		return
	}
	soft, ok := s.softParam(w, r)
	if !ok {
		return
	}
	cond, ok := s.precondition(w, r, false)
	if !ok {
		return
	}
	if soft && cond.match != nil {
		s.writeError(w, http.StatusBadRequest, codeInvalidParameter, "a soft delete cannot be conditional: send If-Match or soft=true, not both")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	var err error
	switch {
	case soft:
		err = s.cache.DeleteSoft(ctx, r.PathValue("key"))
	case cond.match != nil:
		err = s.cache.DeleteIfMatch(ctx, r.PathValue("key"), cond.match...)
	default:
		err = s.cache.Delete(ctx, r.PathValue("key"))
	}
	if err != nil {
		s.writeCacheError(ctx, w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
