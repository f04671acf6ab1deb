package server

import (
	"cmp"
	"math"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tiercache/tiercache"
)

// statsReport is the answer of GET /v1/stats: the cache's report, and
// the server's HTTP figures when it has HTTP metrics.
type statsReport struct {
	tiercache.Stats
	HTTP *httpReport `json:"http,omitempty"`
}

// httpReport is the "http" section of /v1/stats: the HTTP metrics'
// figures since the server started. The dashboard turns the difference
// between two polls into rates and percentiles.
type httpReport struct {
	Requests            uint64            `json:"requests"`
	InFlight            int64             `json:"in_flight"`
	ConnectionsOpen     int64             `json:"connections_open"`
	ConnectionsAccepted uint64            `json:"connections_accepted"`
	Codes               map[string]uint64 `json:"codes"`
	Duration            histogramReport   `json:"duration"`
	Routes              []routeReport     `json:"routes"`
}

// routeReport is the figures of one route.
type routeReport struct {
	Route         string            `json:"route"`
	Requests      uint64            `json:"requests"`
	Codes         map[string]uint64 `json:"codes"`
	ResponseBytes uint64            `json:"response_bytes"`
	Duration      histogramReport   `json:"duration"`
}

// histogramReport is a duration histogram: Buckets counts the requests
// that took at most LE seconds (cumulative), for the finite bounds;
// Count is all of them.
type histogramReport struct {
	Count      uint64         `json:"count"`
	SumSeconds float64        `json:"sum_seconds"`
	Buckets    []bucketReport `json:"buckets"`
}

type bucketReport struct {
	LE    float64 `json:"le"`
	Count uint64  `json:"count"`
}

// report returns the HTTP section of /v1/stats, nil without metrics.
func (m *httpMetrics) report() *httpReport {
	if m == nil {
		return nil
	}
	rep := &httpReport{
		InFlight:            int64(gaugeValue(m.inFlight)),
		ConnectionsOpen:     int64(gaugeValue(m.connsOpen)),
		ConnectionsAccepted: uint64(counterValue(m.connsAccepted)),
		Codes:               map[string]uint64{},
		Routes:              []routeReport{},
	}
	rep.Duration.Buckets = make([]bucketReport, len(httpDurationBuckets))
	for i, le := range httpDurationBuckets {
		rep.Duration.Buckets[i].LE = le
	}
	routes := map[string]*routeReport{}
	route := func(name string) *routeReport {
		r := routes[name]
		if r == nil {
			r = &routeReport{Route: name, Codes: map[string]uint64{}, Duration: histogramReport{Buckets: []bucketReport{}}}
			routes[name] = r
		}
		return r
	}
	for _, mt := range collect(m.requests) {
		n := uint64(mt.GetCounter().GetValue())
		code := label(mt, "code")
		r := route(label(mt, "route"))
		r.Requests += n
		r.Codes[code] += n
		rep.Requests += n
		rep.Codes[code] += n
	}
	for _, mt := range collect(m.respBytes) {
		route(label(mt, "route")).ResponseBytes = uint64(mt.GetCounter().GetValue())
	}
	for _, mt := range collect(m.duration) {
		h := histogram(mt.GetHistogram())
		route(label(mt, "route")).Duration = h
		rep.Duration.Count += h.Count
		rep.Duration.SumSeconds += h.SumSeconds
		for i := range min(len(h.Buckets), len(rep.Duration.Buckets)) {
			rep.Duration.Buckets[i].Count += h.Buckets[i].Count
		}
	}
	for _, r := range routes {
		rep.Routes = append(rep.Routes, *r)
	}
	slices.SortFunc(rep.Routes, func(a, b routeReport) int { return cmp.Compare(a.Route, b.Route) })
	return rep
}

// histogram converts a gathered histogram, leaving out the +Inf bucket
// (JSON has no infinity; Count is that bucket).
func histogram(h *dto.Histogram) histogramReport {
	out := histogramReport{Count: h.GetSampleCount(), SumSeconds: h.GetSampleSum(), Buckets: []bucketReport{}}
	for _, b := range h.GetBucket() {
		if !math.IsInf(b.GetUpperBound(), 1) {
			out.Buckets = append(out.Buckets, bucketReport{LE: b.GetUpperBound(), Count: b.GetCumulativeCount()})
		}
	}
	return out
}

// collect returns what c exports, as gathered metrics.
func collect(c prometheus.Collector) []*dto.Metric {
	ch := make(chan prometheus.Metric)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	var out []*dto.Metric
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) == nil {
			out = append(out, &d)
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func gaugeValue(g prometheus.Gauge) float64 {
	ms := collect(g)
	if len(ms) == 0 {
		return 0
	}
	return ms[0].GetGauge().GetValue()
}

func counterValue(c prometheus.Counter) float64 {
	ms := collect(c)
	if len(ms) == 0 {
		return 0
	}
	return ms[0].GetCounter().GetValue()
}
