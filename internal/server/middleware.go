package server

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// openPath reports whether a path never needs the token: probes must
// work without secrets. What /readyz shows an unauthenticated client is
// only its verdict (readyz).
func openPath(p string) bool { return p == "/healthz" || p == "/readyz" }

// authenticate requires the bearer token on every request but the probes
// (openPath) and the dashboard's page and static files, which hold no
// data: the page asks for the token and sends it with every call it makes.
// With OpenReads, GET, HEAD and POST /v1/mget need no token either.
func (s *Server) authenticate(next http.Handler) http.Handler {
	if !s.auth {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.readAllowed(r) || openPath(r.URL.Path) || isDashboardFile(r) || s.validToken(authorization(r)) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", "Bearer")
		s.writeError(w, http.StatusUnauthorized, codeUnauthorized,
			"this request needs the header Authorization: Bearer <token>, with the server's token")
	})
}

// readAllowed reports whether r may read without the token: with no token
// configured, or with OpenReads for GET, HEAD and POST /v1/mget (a batch
// of reads that only a POST can carry).
func (s *Server) readAllowed(r *http.Request) bool {
	return !s.auth || (s.openReads && (r.Method == http.MethodGet || r.Method == http.MethodHead ||
		r.Method == http.MethodPost && r.URL.Path == "/v1/mget"))
}

// authorizedRead reports whether r may see what a read shows: reads are
// open, or r carries the token.
func (s *Server) authorizedRead(r *http.Request) bool {
	return s.readAllowed(r) || s.validToken(authorization(r))
}

// authorization is r's Authorization header: Header.Get without the
// canonicalisation of a key that is canonical already.
func authorization(r *http.Request) string {
	if v := r.Header["Authorization"]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// isDashboardFile reports whether r asks for the dashboard's page or one
// of its static files: the same bytes for everyone, compiled in.
func isDashboardFile(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	return r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, "/assets/")
}

// validToken reports whether an Authorization header carries the token.
func (s *Server) validToken(header string) bool {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) == 1
}

// requestIDHeader carries the request id in both directions.
const requestIDHeader = "X-Request-Id"

// maxRequestID bounds an incoming request id.
const maxRequestID = 128

// requestIDs gives every request an id, returned in X-Request-Id and
// written in the log lines about the request. An incoming X-Request-Id is
// kept when it is 1 to 128 letters, digits and "-._:"; any other value is
// replaced, so that a client cannot forge log lines. The id stays in the
// request's own X-Request-Id header, where requestID finds it: carrying
// it in the context cost a copy of the request and a context per request.
func (s *Server) requestIDs(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ids := r.Header[requestIDHeader]
		if len(ids) != 1 || !saneRequestID(ids[0]) {
			ids = s.nextRequestID()
			r.Header[requestIDHeader] = ids
		}
		w.Header()[requestIDHeader] = ids
		next.ServeHTTP(w, r)
	})
}

// Request ids are a random prefix drawn once per process (80 bits, 16
// base32 characters) and a sequence number: unique without drawing
// random bits for every request.
var (
	requestIDPrefix = rand.Text()[:16] + "-"
	requestIDSeq    atomic.Uint64
)

// appendRequestID appends the request id of sequence number seq, such
// as "7KXQ4M2ZP3VJ5TNA-1c".
func appendRequestID(b []byte, seq uint64) []byte {
	return strconv.AppendUint(append(b, requestIDPrefix...), seq, 36)
}

// newRequestID returns the next request id.
func newRequestID() string {
	var b [40]byte
	return string(appendRequestID(b[:0], requestIDSeq.Add(1)))
}

// idBlockSize is how many request ids an idBlock holds.
const idBlockSize = 64

// idBlock is a run of consecutive request ids made at once, each a header
// value of its own (a slice of one string with no spare capacity, which
// Header.Add copies rather than append to): one string and one array for
// 64 requests instead of a string and an array for each. The blocks wait
// in the server's pool, each used by one request at a time.
type idBlock struct {
	vals [idBlockSize]string
	next int
}

// newIDBlock makes the next block. Its buffers are on the heap: a few
// KiB on the stack would grow the stack of the connection's goroutine,
// of which a server may hold 10,000.
func newIDBlock() *idBlock {
	last := requestIDSeq.Add(idBlockSize)
	var ends [idBlockSize]uint16
	b := make([]byte, 0, idBlockSize*32)
	for i := range idBlockSize {
		b = appendRequestID(b, last-idBlockSize+1+uint64(i))
		ends[i] = uint16(len(b))
	}
	all := string(b)
	blk := &idBlock{}
	start := uint16(0)
	for i, end := range ends {
		blk.vals[i], start = all[start:end], end
	}
	return blk
}

// nextRequestID returns a fresh request id as a header value.
func (s *Server) nextRequestID() []string {
	blk, _ := s.idBlocks.Get().(*idBlock)
	if blk == nil {
		blk = newIDBlock()
	}
	i := blk.next
	blk.next++
	if blk.next < idBlockSize {
		s.idBlocks.Put(blk)
	}
	return blk.vals[i : i+1 : i+1]
}

func saneRequestID(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for _, c := range []byte(id) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == ':'
		if !ok {
			return false
		}
	}
	return true
}

// requestID returns the id requestIDs gave r.
func requestID(r *http.Request) string {
	if ids := r.Header[requestIDHeader]; len(ids) == 1 {
		return ids[0]
	}
	return ""
}

// maxLoggedPath bounds the path in a log line, since keys can be long.
const maxLoggedPath = 256

// logRequests logs each request at Debug. Headers are never logged, so
// neither is the token.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.logger.Enabled(r.Context(), slog.LevelDebug) {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		rec := recorder(w)
		next.ServeHTTP(rec, r)
		s.logger.LogAttrs(r.Context(), slog.LevelDebug, "http request",
			slog.String("request_id", requestID(r)),
			slog.String("method", r.Method),
			slog.String("path", loggedPath(r)),
			slog.Int("status", rec.status()),
			slog.Duration("duration", time.Since(start)))
	})
}

// loggedPath is the path of r for a log line, shortened.
func loggedPath(r *http.Request) string {
	p := r.URL.Path
	if len(p) > maxLoggedPath {
		p = p[:maxLoggedPath] + "..."
	}
	return p
}

// recoverPanics turns a panic into a 500 answer and an Error log line. A
// panic after the answer has started aborts the connection instead, so
// that the client cannot take a truncated answer for a whole one.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := recorder(w)
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler { // net/http's own way to abort: pass it on
				panic(v)
			}
			s.logger.Error("tiercache: HTTP handler panicked", "request_id", requestID(r),
				"method", r.Method, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if rec.code != 0 {
				panic(http.ErrAbortHandler)
			}
			s.writeError(w, http.StatusInternalServerError, codeInternal, "internal error")
		}()
		next.ServeHTTP(rec, r)
	})
}

const cachePrefix = "/v1/cache/"

// canonicalCachePaths refuses cache paths that ServeMux would redirect to
// a cleaned path: the redirect would silently address another key
// ("a//b" would become "a/b").
func (s *Server) canonicalCachePaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.EscapedPath(); strings.HasPrefix(p, cachePrefix) && cleanPath(p) != p {
			s.writeError(w, http.StatusBadRequest, codeInvalidKey,
				`the key has an empty, "." or ".." path segment; percent-encode such a key's "/" as %2F`)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// cleanPath is ServeMux's canonical form of a path: path.Clean that keeps
// a trailing slash.
func cleanPath(p string) string {
	np := path.Clean(p)
	if strings.HasSuffix(p, "/") && np != "/" {
		np += "/"
	}
	return np
}

// jsonMuxErrors makes the answers ServeMux writes itself (404 for an
// unknown path, 405 for a known path with another method) JSON, like
// every other error. It matches no route itself: the request's
// statusRecorder replaces such an answer when it is written, for a
// request the mux found no pattern for (it sets Request.Pattern before
// calling the handler).
func (s *Server) jsonMuxErrors(mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := recorder(w)
		rec.muxErrors, rec.req = s, r
		mux.ServeHTTP(rec, r)
	})
}

// writeMuxError writes the JSON form of an error answer ServeMux gave
// r. Headers set before, such as Allow, are kept.
func (s *Server) writeMuxError(w http.ResponseWriter, r *http.Request, code int) {
	switch code {
	case http.StatusNotFound:
		s.writeError(w, code, codeNoSuchEndpoint, "no such endpoint")
	case http.StatusMethodNotAllowed:
		s.writeError(w, code, codeMethodNotAllowed, fmt.Sprintf("method %s is not allowed here; allowed: %s", r.Method, w.Header().Get("Allow")))
	default:
		s.writeError(w, code, codeBadRequest, strings.ToLower(http.StatusText(code)))
	}
}
