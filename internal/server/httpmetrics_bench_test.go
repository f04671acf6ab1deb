package server

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiercache/tiercache"
)

// discardWriter is a ResponseWriter that keeps nothing but its header
// map, so that a benchmark measures the handler, not the writer.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkHandler_GetL1 measures GET /v1/cache/{key} answered from L1
// (a 100-byte value), through the whole handler chain, with and without
// the HTTP metrics, beside a bare handler writing a constant 100-byte
// body: the in-process cost of the middleware, without network or
// parsing. allocs/op is the figure to watch.
func BenchmarkHandler_GetL1(b *testing.B) {
	body := strings.Repeat("v", 100)
	bare := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write([]byte(body))
	})
	for _, bc := range []struct {
		name    string
		handler func(b *testing.B) http.Handler
	}{
		{"bare", func(*testing.B) http.Handler { return bare }},
		{"metrics=off", func(b *testing.B) http.Handler { return benchServer(b, body, nil) }},
		{"metrics=on", func(b *testing.B) http.Handler { return benchServer(b, body, prometheus.NewRegistry()) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := bc.handler(b)
			req, err := http.NewRequest(http.MethodGet, "/v1/cache/bench-key", nil)
			if err != nil {
				b.Fatal(err)
			}
			if rec := (&statusRecorder{ResponseWriter: &discardWriter{h: http.Header{}}}); true {
				h.ServeHTTP(rec, req)
				if rec.status() != http.StatusOK || rec.bytes != int64(len(body)) {
					b.Fatalf("GET: %d, %d bytes", rec.status(), rec.bytes)
				}
			}
			b.Run("serial", func(b *testing.B) {
				b.ReportAllocs()
				w := &discardWriter{h: http.Header{}}
				for b.Loop() {
					h.ServeHTTP(w, req)
				}
			})
			b.Run("parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					w := &discardWriter{h: http.Header{}}
					r := req.Clone(req.Context()) // the mux writes the request's pattern
					for pb.Next() {
						h.ServeHTTP(w, r)
					}
				})
			})
		})
	}
}

// benchServer returns the handler of a Server on an in-memory cache
// holding bench-key in L1, with the HTTP metrics in reg when not nil.
func benchServer(b *testing.B, value string, reg *prometheus.Registry) http.Handler {
	b.Helper()
	c, err := tiercache.New(tiercache.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	cfg := Config{Cache: c, Logger: slog.New(slog.DiscardHandler)}
	if reg != nil {
		cfg.Metrics = reg
	}
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if reg != nil && s.httpMetrics == nil {
		b.Fatal("no HTTP metrics with a registry")
	}
	put, err := http.NewRequest(http.MethodPut, "/v1/cache/bench-key", strings.NewReader(value))
	if err != nil {
		b.Fatal(err)
	}
	w := &statusRecorder{ResponseWriter: &discardWriter{h: http.Header{}}}
	s.Handler().ServeHTTP(w, put)
	if w.status() != http.StatusNoContent {
		b.Fatalf("PUT: %d", w.status())
	}
	return s.Handler()
}

// BenchmarkHandler_GetL1MetricsOverhead times two identical servers, one
// with the HTTP metrics and one without, in alternating blocks of GETs
// from L1 within one run, so that the machine's noise falls on both
// alike. It reports ns/op of each and their ratio on/off.
func BenchmarkHandler_GetL1MetricsOverhead(b *testing.B) {
	body := strings.Repeat("v", 100)
	on, off := benchServer(b, body, prometheus.NewRegistry()), benchServer(b, body, nil)
	req, err := http.NewRequest(http.MethodGet, "/v1/cache/bench-key", nil)
	if err != nil {
		b.Fatal(err)
	}
	w := &discardWriter{h: http.Header{}}
	const block = 2000
	var tOn, tOff time.Duration
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		h, t := on, &tOn
		if n%(2*block) >= block {
			h, t = off, &tOff
		}
		if n%block == 0 {
			start := time.Now()
			for range block {
				h.ServeHTTP(w, req)
			}
			*t += time.Since(start)
		}
		n++
	}
	blocks := n / block
	if blocks < 2 {
		return
	}
	perOn := float64(tOn.Nanoseconds()) / float64((blocks+1)/2*block)
	perOff := float64(tOff.Nanoseconds()) / float64(blocks/2*block)
	b.ReportMetric(perOn, "ns/get-on")
	b.ReportMetric(perOff, "ns/get-off")
	b.ReportMetric(perOn/perOff, "ratio-on/off")
}
