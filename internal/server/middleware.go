package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"runtime/debug"
	"strings"
	"time"
)

// authenticate requires the bearer token on every method but GET and HEAD.
// Reads stay open: the token guards the cache's contents, not their
// confidentiality.
func (s *Server) authenticate(next http.Handler) http.Handler {
	if !s.auth {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead || s.validToken(r.Header.Get("Authorization")) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeError(w, http.StatusUnauthorized, "this request needs the header Authorization: Bearer <token>, with the server's token")
	})
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
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		p := r.URL.Path
		if len(p) > maxLoggedPath {
			p = p[:maxLoggedPath] + "..."
		}
		s.logger.LogAttrs(r.Context(), slog.LevelDebug, "http request",
			slog.String("method", r.Method),
			slog.String("path", p),
			slog.Int("status", rec.status()),
			slog.Duration("duration", time.Since(start)))
	})
}

// recoverPanics turns a panic into a 500 answer and an Error log line. A
// panic after the answer has started aborts the connection instead, so
// that the client cannot take a truncated answer for a whole one.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler { // net/http's own way to abort: pass it on
				panic(v)
			}
			s.logger.Error("tiercache: HTTP handler panicked",
				"method", r.Method, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if rec.code != 0 {
				panic(http.ErrAbortHandler)
			}
			writeError(w, http.StatusInternalServerError, "internal error")
		}()
		next.ServeHTTP(rec, r)
	})
}

// statusRecorder remembers the status a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	code int // zero until the header is written
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 && code >= 200 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

const cachePrefix = "/v1/cache/"

// canonicalCachePaths refuses cache paths that ServeMux would redirect to
// a cleaned path: the redirect would silently address another key
// ("a//b" would become "a/b").
func canonicalCachePaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.EscapedPath(); strings.HasPrefix(p, cachePrefix) && cleanPath(p) != p {
			writeError(w, http.StatusBadRequest,
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
// every other error.
func jsonMuxErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			w = &muxErrorWriter{ResponseWriter: w, method: r.Method}
		}
		mux.ServeHTTP(w, r)
	})
}

// muxErrorWriter replaces a plain-text error answer with a JSON one and
// drops the plain text. Headers set before, such as Allow, are kept.
type muxErrorWriter struct {
	http.ResponseWriter
	method   string
	replaced bool
}

func (w *muxErrorWriter) WriteHeader(code int) {
	switch code {
	case http.StatusNotFound:
		writeError(w.ResponseWriter, code, "no such endpoint")
	case http.StatusMethodNotAllowed:
		writeError(w.ResponseWriter, code, fmt.Sprintf("method %s is not allowed here; allowed: %s", w.method, w.Header().Get("Allow")))
	default:
		if code < 400 {
			w.ResponseWriter.WriteHeader(code)
			return
		}
		writeError(w.ResponseWriter, code, strings.ToLower(http.StatusText(code)))
	}
	w.replaced = true
}

func (w *muxErrorWriter) Write(b []byte) (int, error) {
	if w.replaced {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}
