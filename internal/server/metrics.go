package server

import (
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/tiercacheprom"
)

// metricsHandler answers GET /metrics from Config.Metrics, in the
// Prometheus text or OpenMetrics format the scraper asks for. Without a
// gatherer it answers 404: the cache was built without a metrics
// recorder.
func (s *Server) metricsHandler() http.Handler {
	if s.metrics == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			s.writeError(w, http.StatusNotFound, codeMetricsDisabled, "metrics are not enabled on this server")
		})
	}
	return promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelError),
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
	})
}

// NewMetrics returns a Prometheus recorder for the cache's
// Options.Recorder and the registry to pass as Config.Metrics, with the
// Go runtime and process collectors beside it.
func NewMetrics() (tiercache.Recorder, prometheus.Gatherer, error) {
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, nil, err
		}
	}
	rec, err := tiercacheprom.New(reg, tiercacheprom.Options{})
	if err != nil {
		return nil, nil, err
	}
	return rec, reg, nil
}
