package loadgen

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// Report is what a run measured. Its JSON form is `tiercache bench
// --json`'s output (docs/bench.md).
type Report struct {
	Target      string  `json:"target"`            // "http" or "library"
	Elapsed     float64 `json:"elapsed_s"`         // wall time of the run, seconds
	Requests    int64   `json:"requests"`          // operations finished, failed ones included
	OpsPerSec   float64 `json:"ops_per_sec"`       // Requests / Elapsed
	OfferedRate float64 `json:"offered_rate"`      // Config.Rate; 0 for a closed-model run
	Unsent      int64   `json:"unsent"`            // due but not sent before the time limit
	Latency     Latency `json:"latency_ms"`        // every operation, failed ones included
	Ops         counts  `json:"ops"`               // finished operations by kind: get, set, delete
	Reads       counts  `json:"reads"`             // successful reads by tier: hit-l1, hit-l2, loader, stale, miss
	HitRatio    ratios  `json:"hit_ratio"`         // Reads over the successful reads, by tier, and "hit" for all but miss
	Queued      int64   `json:"queued"`            // writes accepted into the recovery queue
	Errors      counts  `json:"errors"`            // failures by kind
	ErrorsTotal int64   `json:"errors_total"`      // sum of Errors
	Config      Summary `json:"config"`            // what was asked
	Preload     *Loaded `json:"preload,omitempty"` // the preload pass, when there was one
}

// Latency holds percentiles and the maximum, in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Summary echoes a run's Config.
type Summary struct {
	Keys      int     `json:"keys"`
	KeyPrefix string  `json:"key_prefix"`
	Dist      string  `json:"distribution"`
	ZipfS     float64 `json:"zipf_s,omitempty"`
	Mix       string  `json:"mix"`
	ValueSize int     `json:"value_size"`
	Workers   int     `json:"workers"`
	Duration  float64 `json:"duration_s,omitempty"`
	Requests  int64   `json:"requests,omitempty"`
}

// Loaded is what Preload did.
type Loaded struct {
	Keys        int     `json:"keys"`
	Elapsed     float64 `json:"elapsed_s"`
	ErrorsTotal int64   `json:"errors_total"`
	Errors      counts  `json:"errors"`
}

type (
	counts map[string]int64
	ratios map[string]float64
)

func (r *runner) report(elapsed time.Duration) *Report {
	c := r.cfg
	rep := &Report{
		Target: r.target.Name(), Elapsed: elapsed.Seconds(), OfferedRate: c.Rate, Unsent: r.unsent.Load(),
		Ops: counts{}, Reads: counts{}, HitRatio: ratios{}, Errors: counts{},
		Config: Summary{
			Keys: c.Keys, KeyPrefix: c.KeyPrefix, Dist: c.Dist, Mix: c.Mix.String(), ValueSize: c.ValueSize,
			Workers: c.Workers, Duration: c.Duration.Seconds(), Requests: c.Requests,
		},
	}
	if c.Dist == Zipf {
		rep.Config.ZipfS = c.ZipfS
	}
	h := r.stats.merge(rep)
	rep.Requests = h.TotalCount()
	if elapsed > 0 {
		rep.OpsPerSec = float64(rep.Requests) / elapsed.Seconds()
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	rep.Latency = Latency{
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()), Mean: math.Round(h.Mean()) / 1000,
	}
	var reads, miss int64
	for tier, n := range rep.Reads {
		reads += n
		if tier == "miss" {
			miss = n
		}
	}
	if reads > 0 {
		for tier, n := range rep.Reads {
			rep.HitRatio[tier] = float64(n) / float64(reads)
		}
		rep.HitRatio["hit"] = float64(reads-miss) / float64(reads)
	}
	return rep
}

// WriteText writes the report for a person to read.
func (rep *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	c := rep.Config
	fmt.Fprintf(&b, "target      %s, %d workers, %d keys (%s", rep.Target, c.Workers, c.Keys, c.Dist)
	if c.Dist == Zipf {
		fmt.Fprintf(&b, " s=%g", c.ZipfS)
	}
	fmt.Fprintf(&b, "), mix %s, values of %d bytes\n", c.Mix, c.ValueSize)
	if p := rep.Preload; p != nil {
		fmt.Fprintf(&b, "preload     %d keys in %.2fs, %d errors%s\n", p.Keys, p.Elapsed, p.ErrorsTotal, list(p.Errors))
	}
	fmt.Fprintf(&b, "requests    %d in %.2fs: %.0f ops/s", rep.Requests, rep.Elapsed, rep.OpsPerSec)
	if rep.OfferedRate > 0 {
		fmt.Fprintf(&b, " (offered %.0f ops/s", rep.OfferedRate)
		if rep.Unsent > 0 {
			fmt.Fprintf(&b, ", %d not sent before the time limit", rep.Unsent)
		}
		b.WriteString(")")
	}
	b.WriteString("\n")
	l := rep.Latency
	fmt.Fprintf(&b, "latency ms  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n", l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean)
	fmt.Fprintf(&b, "operations  %s\n", list(rep.Ops)[2:])
	if len(rep.Reads) > 0 {
		fmt.Fprintf(&b, "reads       %s\n", ratioList(rep.Reads, rep.HitRatio))
	}
	if rep.Queued > 0 {
		fmt.Fprintf(&b, "queued      %d writes accepted into the recovery queue\n", rep.Queued)
	}
	fmt.Fprintf(&b, "errors      %d%s\n", rep.ErrorsTotal, list(rep.Errors))
	_, err := io.WriteString(w, b.String())
	return err
}

// list is ": a 1, b 2" in key order, or "" for no counts.
func list(c counts) string {
	if len(c) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, c[k]))
	}
	return ": " + strings.Join(parts, ", ")
}

// ratioList is "hit 95.0% (hit-l1 80.0%, hit-l2 15.0%, miss 5.0%)".
func ratioList(reads counts, r ratios) string {
	var parts []string
	for _, t := range append(tiers[:], "other") {
		if reads[t] > 0 {
			parts = append(parts, fmt.Sprintf("%s %.1f%% (%d)", t, 100*r[t], reads[t]))
		}
	}
	return fmt.Sprintf("hit %.1f%%: %s", 100*r["hit"], strings.Join(parts, ", "))
}
