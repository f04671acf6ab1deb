// Package server exposes a tiercache.Cache over HTTP: the version 1 API
// that `tiercache serve` runs. docs/http-api.md describes it.
package server

import (
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiercache/tiercache"
)

// Config configures a Server.
type Config struct {
	// Cache is the cache the API serves. It is required; the Server does
	// not close it.
	Cache *tiercache.Cache

	// Token, when not empty, is the bearer token that every request must
	// present in its Authorization header, but GET /healthz, GET /readyz
	// and the dashboard's page and static files (the page asks for the
	// token and sends it with its calls). Empty means no authentication.
	Token string

	// OpenReads lets GET and HEAD requests, and POST /v1/mget, through
	// without the token (cache reads, batch reads, /v1/stats, /v1/warm,
	// /metrics and /readyz's details):
	// the token then guards only changes. It has no effect without a
	// Token.
	OpenReads bool

	// RetryAfter is what the Retry-After header of every 503 answer says,
	// rounded up to whole seconds: how long before Redis may answer again,
	// such as the breaker's open timeout. Zero means DefaultRetryAfter.
	RetryAfter time.Duration

	// Logger receives one Debug line per request and an Error line per
	// recovered panic. Nil means slog.Default().
	Logger *slog.Logger

	// MaxValueSize bounds the body of a PUT, in bytes. Zero means the
	// cache's own limit (Cache.MaxValueSize), which also applies to what is
	// stored.
	MaxValueSize int

	// Timeout bounds the cache operation of each request, so that an
	// unreachable L2 answers 503 instead of holding the request. Zero
	// means DefaultTimeout.
	Timeout time.Duration

	// Metrics is what GET /metrics exports: the registry holding the
	// cache's tiercacheprom recorder. Nil means GET /metrics answers 404.
	// When it is also a prometheus.Registerer, as NewMetrics's registry
	// is, the server adds its own tiercache_http_* metrics to it
	// (docs/metrics.md) and to /v1/stats.
	Metrics prometheus.Gatherer

	// MaxBatchKeys bounds the keys (or items) of one batch request:
	// POST /v1/mget, /v1/mset and /v1/mdelete answer 413 beyond it. Zero
	// means DefaultMaxBatchKeys.
	MaxBatchKeys int

	// MaxBatchBytes bounds the body of a batch request, and the values
	// of an mget answer in base64, in bytes (413 beyond it). Zero means DefaultMaxBatchBytes, or more when one value
	// of MaxValueSize, in base64, needs more.
	MaxBatchBytes int64

	// Warmer serves POST and GET /v1/warm. Nil means warming is disabled:
	// POST answers 503 and GET an empty list.
	Warmer Warmer
}

// DefaultTimeout is the Config.Timeout used when it is zero.
const DefaultTimeout = 5 * time.Second

// DefaultRetryAfter is the Config.RetryAfter used when it is zero.
const DefaultRetryAfter = time.Second

// Server answers the HTTP API. Create it with New; it is safe for
// concurrent use.
type Server struct {
	cache        *tiercache.Cache
	logger       *slog.Logger
	maxValueSize int64
	maxBatchKeys int
	// maxBatchBytes bounds the body of a batch request.
	maxBatchBytes int64
	timeout       time.Duration
	// tokenSum is the SHA-256 of Config.Token. Comparing digests keeps the
	// comparison constant-time whatever the presented token's length.
	tokenSum   [sha256.Size]byte
	auth       bool
	openReads  bool
	retryAfter time.Duration
	handler    http.Handler
	metrics    prometheus.Gatherer
	warmer     Warmer
	// httpMetrics is nil when Config.Metrics cannot register them.
	httpMetrics *httpMetrics

	// recorders, idBlocks and readHeaders spare a GET from L1 its
	// allocations: pooled statusRecorders (recorded), request ids made
	// in blocks (nextRequestID), and the headers of recent answers
	// (readHeaders).
	recorders   sync.Pool
	idBlocks    sync.Pool
	readHeaders readHeaders
}

// New checks cfg and builds a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Cache == nil {
		return nil, errors.New("server: Config.Cache is nil")
	}
	if cfg.MaxValueSize < 0 {
		return nil, fmt.Errorf("server: MaxValueSize %d is negative", cfg.MaxValueSize)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("server: Timeout %v is negative", cfg.Timeout)
	}
	if cfg.MaxBatchKeys < 0 || cfg.MaxBatchBytes < 0 {
		return nil, fmt.Errorf("server: MaxBatchKeys %d or MaxBatchBytes %d is negative", cfg.MaxBatchKeys, cfg.MaxBatchBytes)
	}
	if cfg.RetryAfter < 0 {
		return nil, fmt.Errorf("server: RetryAfter %v is negative", cfg.RetryAfter)
	}
	// A token with spaces or control characters can never arrive intact
	// in a header, so it is a configuration mistake (often a trailing
	// newline from a file). The message never includes the token.
	if strings.IndexFunc(cfg.Token, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return nil, errors.New("server: the token contains whitespace or control characters")
	}
	s := &Server{
		cache:        cfg.Cache,
		logger:       cfg.Logger,
		maxValueSize: int64(cfg.MaxValueSize),
		maxBatchKeys: cmp.Or(cfg.MaxBatchKeys, DefaultMaxBatchKeys),
		timeout:      cfg.Timeout,
		auth:         cfg.Token != "",
		openReads:    cfg.OpenReads,
		retryAfter:   cfg.RetryAfter,
		metrics:      cfg.Metrics,
		warmer:       cfg.Warmer,
	}
	s.recorders.New = func() any { return new(statusRecorder) }
	if s.logger == nil {
		s.logger = slog.Default()
	}
	if s.maxValueSize == 0 {
		s.maxValueSize = int64(cfg.Cache.MaxValueSize())
	}
	s.maxBatchBytes = cmp.Or(cfg.MaxBatchBytes, maxBatchBytes(s.maxValueSize))
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	}
	if s.retryAfter == 0 {
		s.retryAfter = DefaultRetryAfter
	}
	if s.auth {
		s.tokenSum = sha256.Sum256([]byte(cfg.Token))
	}
	if reg, ok := cfg.Metrics.(prometheus.Registerer); ok {
		m, err := newHTTPMetrics(reg)
		if err != nil {
			return nil, fmt.Errorf("server: register the HTTP metrics: %w", err)
		}
		s.httpMetrics = m
	}
	s.handler = s.routes()
	return s, nil
}

// Handler returns the HTTP handler of the API.
func (s *Server) Handler() http.Handler { return s.handler }

// routes builds the handler chain: the request's statusRecorder
// outermost, then the request id so that every answer and log line
// carries it, then the HTTP metrics (measure), which
// must get the request the mux sets its pattern on, then logging so that
// it sees the status a recovered panic produced, then recovery, then authentication, so that
// no handler runs for an unauthenticated request.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/cache/{key...}", s.getValue)
	mux.HandleFunc("PUT /v1/cache/{key...}", s.putValue)
	mux.HandleFunc("DELETE /v1/cache/{key...}", s.deleteValue)
	mux.HandleFunc("POST /v1/invalidate", s.invalidate)
	mux.HandleFunc("POST /v1/clear", s.clear)
	mux.HandleFunc("POST /v1/mget", s.mget)
	mux.HandleFunc("POST /v1/mset", s.mset)
	mux.HandleFunc("POST /v1/mdelete", s.mdelete)
	mux.HandleFunc("POST /v1/warm", s.startWarm)
	mux.HandleFunc("GET /v1/warm", s.listWarm)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /v1/stats", s.stats)
	mux.HandleFunc("GET /v1/fleet", s.fleet)
	mux.Handle("GET /metrics", s.withQuery(s.metricsHandler()))
	mux.HandleFunc("GET /{$}", s.dashboard)
	mux.Handle("GET /assets/", s.assetsHandler())
	return s.recorded(s.requestIDs(s.measure(mux, s.logRequests(s.recoverPanics(s.authenticate(s.canonicalCachePaths(s.jsonMuxErrors(s.cacheReads(mux)))))))))
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if !s.checkQuery(w, r) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}
