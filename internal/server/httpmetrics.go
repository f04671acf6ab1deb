package server

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// unmatchedRoute is the route label of a request no route matched: an
// unknown path (404), or a known path with another method (405). It keeps
// the label's values to the routes the server registers.
const unmatchedRoute = "unmatched"

// httpDurationBuckets span an L1 hit answered in tens of microseconds to
// a request that waited seconds for Redis.
var httpDurationBuckets = []float64{
	.000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10,
}

// methodNames are the values of the method label; any other method is
// "other", so that a client cannot add label values.
var methodNames = [...]string{"GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "other"}

func methodIndex(m string) int {
	switch m {
	case http.MethodGet:
		return 0
	case http.MethodHead:
		return 1
	case http.MethodPut:
		return 2
	case http.MethodPost:
		return 3
	case http.MethodDelete:
		return 4
	case http.MethodPatch:
		return 5
	case http.MethodOptions:
		return 6
	}
	return len(methodNames) - 1
}

// httpMetrics are the service's own metrics, tiercache_http_*
// (docs/metrics.md). The children of the labelled metrics are resolved
// once per route, method and status code and kept, so that measuring a
// request allocates nothing.
type httpMetrics struct {
	requests      *prometheus.CounterVec   // route, method, code
	duration      *prometheus.HistogramVec // route
	respBytes     *prometheus.CounterVec   // route
	inFlight      prometheus.Gauge
	connsOpen     prometheus.Gauge
	connsAccepted prometheus.Counter

	// routes maps a route to its children. It is replaced, never
	// changed, so that readers need no lock; mu serialises the writers.
	routes atomic.Pointer[map[string]*routeMetrics]
	mu     sync.Mutex
}

// routeMetrics are the children of one route.
type routeMetrics struct {
	route    string
	duration prometheus.Observer
	bytes    prometheus.Counter
	methods  [len(methodNames)]atomic.Pointer[codeCounters]
}

// codeCounters are the request counters of one route and method, by
// status code (index code-100), created on first use.
type codeCounters [500]atomic.Pointer[counterBox]

type counterBox struct{ prometheus.Counter }

// newHTTPMetrics registers the HTTP metrics in reg. Metrics that reg
// already holds (another Server on the same registry) are shared.
func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tiercache_http_requests_total",
			Help: "HTTP requests answered, by route (the matched pattern, or unmatched), method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tiercache_http_request_duration_seconds",
			Help:    "Time in the server's handlers, from the request's headers parsed to its answer handed to the connection, by route.",
			Buckets: httpDurationBuckets,
		}, []string{"route"}),
		respBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tiercache_http_response_bytes_total",
			Help: "Bytes of answer bodies written, by route.",
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tiercache_http_requests_in_flight",
			Help: "HTTP requests being answered.",
		}),
		connsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tiercache_http_connections_open",
			Help: "Client connections open (idle keep-alive ones included).",
		}),
		connsAccepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tiercache_http_connections_accepted_total",
			Help: "Client connections accepted.",
		}),
	}
	var err error
	if m.requests, err = registered(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = registered(reg, m.duration); err != nil {
		return nil, err
	}
	if m.respBytes, err = registered(reg, m.respBytes); err != nil {
		return nil, err
	}
	if m.inFlight, err = registered(reg, m.inFlight); err != nil {
		return nil, err
	}
	if m.connsOpen, err = registered(reg, m.connsOpen); err != nil {
		return nil, err
	}
	if m.connsAccepted, err = registered(reg, m.connsAccepted); err != nil {
		return nil, err
	}
	m.routes.Store(&map[string]*routeMetrics{})
	return m, nil
}

// registered registers c in reg and returns it, or returns the metric
// of the same name reg already holds.
func registered[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

// measure counts and times every request: outside everything but the
// request id, so that what authentication, recovery and the mux answer
// is measured too. The route is the pattern ServeMux matched, which it
// sets on the request it is given (the one measure passes on); a request
// answered before the mux ran, such as a 401, gets the pattern the mux
// would have matched.
func (s *Server) measure(mux *http.ServeMux, next http.Handler) http.Handler {
	m := s.httpMetrics
	if m == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.inFlight.Inc()
		rec := recorder(w)
		defer m.observe(mux, r, rec)
		next.ServeHTTP(rec, r)
	})
}

// observe records a request once answered, or aborted by a panic.
func (m *httpMetrics) observe(mux *http.ServeMux, r *http.Request, rec *statusRecorder) {
	m.inFlight.Dec()
	pattern := r.Pattern
	if pattern == "" {
		_, pattern = mux.Handler(r)
	}
	rm := m.route(pattern)
	rm.duration.Observe(time.Since(rec.start).Seconds())
	if rec.bytes > 0 {
		rm.bytes.Add(float64(rec.bytes))
	}
	m.counter(rm, methodIndex(r.Method), rec.status()).Inc()
}

// route returns the children of a route, "" meaning unmatched.
func (m *httpMetrics) route(pattern string) *routeMetrics {
	if pattern == "" {
		pattern = unmatchedRoute
	}
	if rm := (*m.routes.Load())[pattern]; rm != nil {
		return rm
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.routes.Load()
	if rm := old[pattern]; rm != nil {
		return rm
	}
	rm := &routeMetrics{
		route:    pattern,
		duration: m.duration.WithLabelValues(pattern),
		bytes:    m.respBytes.WithLabelValues(pattern),
	}
	routes := make(map[string]*routeMetrics, len(old)+1)
	for k, v := range old {
		routes[k] = v
	}
	routes[pattern] = rm
	m.routes.Store(&routes)
	return rm
}

// counter returns the request counter of a route, method and code.
func (m *httpMetrics) counter(rm *routeMetrics, method, code int) prometheus.Counter {
	if code < 100 || code > 599 {
		return m.requests.WithLabelValues(rm.route, methodNames[method], strconv.Itoa(code))
	}
	cc := rm.methods[method].Load()
	if cc == nil {
		rm.methods[method].CompareAndSwap(nil, new(codeCounters))
		cc = rm.methods[method].Load()
	}
	b := cc[code-100].Load()
	if b == nil {
		// Racing callers store the same child: WithLabelValues returns
		// the one the vector holds.
		b = &counterBox{m.requests.WithLabelValues(rm.route, methodNames[method], strconv.Itoa(code))}
		cc[code-100].Store(b)
	}
	return b.Counter
}

// ConnState returns the http.Server.ConnState hook that keeps
// tiercache_http_connections_open and _accepted_total, or nil when the
// server has no metrics. Every connection net/http reports as new ends
// closed or hijacked, once.
func (s *Server) ConnState() func(net.Conn, http.ConnState) {
	m := s.httpMetrics
	if m == nil {
		return nil
	}
	return func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			m.connsAccepted.Inc()
			m.connsOpen.Inc()
		case http.StateClosed, http.StateHijacked:
			m.connsOpen.Dec()
		}
	}
}
