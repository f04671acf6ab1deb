package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tiercache/tiercache"
)

// statsView is the part of /v1/stats (and of Cache.Stats in JSON) that
// stats and top print.
type statsView struct {
	Timestamp time.Time `json:"timestamp"`
	Namespace string    `json:"namespace"`
	Topology  string    `json:"topology"`
	Counters  struct {
		HitsL1        uint64  `json:"hits_l1"`
		HitsL2        uint64  `json:"hits_l2"`
		Misses        uint64  `json:"misses"`
		Errors        uint64  `json:"errors"`
		Corrupt       uint64  `json:"corrupt"`
		Invalidations uint64  `json:"invalidations_received"`
		LinkResets    uint64  `json:"link_resets"`
		TagBumps      uint64  `json:"tag_bumps"`
		StaleServed   uint64  `json:"stale_served"`
		Breaker       string  `json:"breaker"`
		BreakerOpen   float64 `json:"breaker_open_seconds"`
		QueueLength   int     `json:"queue_length"`
		QueueOverflow uint64  `json:"queue_overflows"`
		L1Entries     int     `json:"l1_entries"`
		L1Bytes       uint64  `json:"l1_bytes"`
		L1Evictions   uint64  `json:"l1_evictions"`
	} `json:"counters"`
	HitRatio tiercache.HitRatios `json:"hit_ratio"`
	Latency  tiercache.Latencies `json:"latency"`
	L1Max    int64               `json:"l1_max_bytes"`
	Nodes    []struct {
		Addr       string `json:"addr"`
		Role       string `json:"role"`
		Up         bool   `json:"up"`
		UsedMemory int64  `json:"used_memory"`
		MaxMemory  int64  `json:"maxmemory"`
		OpsPerSec  int64  `json:"instantaneous_ops_per_sec"`
		Error      string `json:"error"`
	} `json:"nodes"`
	HTTP *struct {
		Requests uint64 `json:"requests"`
		InFlight int64  `json:"in_flight"`
	} `json:"http"`
}

// reads counts the reads the counters saw.
func (v *statsView) reads() uint64 { return v.Counters.HitsL1 + v.Counters.HitsL2 + v.Counters.Misses }

// write prints the statistics. direct means they come from this
// command's own short-lived cache, whose counters say nothing: only
// Redis's figures are printed.
func (v *statsView) write(w io.Writer, direct bool) {
	tw := table(w)
	c := v.Counters
	row(tw, "namespace", v.Namespace)
	row(tw, "topology", v.Topology)
	if direct {
		row(tw, "counters", "a service's own: ask it with --url")
		v.writeNodes(tw)
		_ = tw.Flush()
		return
	}
	row(tw, "reads", fmt.Sprintf("%d (L1 hits %d, L2 hits %d, misses %d)", v.reads(), c.HitsL1, c.HitsL2, c.Misses))
	row(tw, "hit ratio", fmt.Sprintf("L1 %.1f%%  L2 %.1f%%  overall %.1f%%", 100*v.HitRatio.L1, 100*v.HitRatio.L2, 100*v.HitRatio.Overall))
	row(tw, "latency L1", latencyText(v.Latency.L1))
	row(tw, "latency L2", latencyText(v.Latency.L2))
	row(tw, "L1", fmt.Sprintf("%d entries, %s of %s, %d evictions", c.L1Entries, bytesText(int64(c.L1Bytes)), bytesText(v.L1Max), c.L1Evictions))
	row(tw, "breaker", c.Breaker)
	row(tw, "recovery queue", fmt.Sprintf("%d waiting, %d refused", c.QueueLength, c.QueueOverflow))
	row(tw, "invalidations", fmt.Sprintf("%d received, %d tag bumps, %d link resets", c.Invalidations, c.TagBumps, c.LinkResets))
	row(tw, "errors", fmt.Sprintf("%d L2 errors, %d corrupt values, %d stale answers", c.Errors, c.Corrupt, c.StaleServed))
	if v.HTTP != nil {
		row(tw, "http", fmt.Sprintf("%d requests, %d in flight", v.HTTP.Requests, v.HTTP.InFlight))
	}
	v.writeNodes(tw)
	_ = tw.Flush()
}

func (v *statsView) writeNodes(tw *tabwriter.Writer) {
	for _, n := range v.Nodes {
		state := "up"
		if !n.Up {
			state = "DOWN " + n.Error
		}
		row(tw, "redis "+n.Addr, fmt.Sprintf("%s %s, %s used, %d ops/s", n.Role, state, bytesText(n.UsedMemory), n.OpsPerSec))
	}
}

func latencyText(l tiercache.LatencySummary) string {
	if l.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %v  p99 %v  (%d samples)", l.P50, l.P99, l.Count)
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// topCmd is "tiercache top".
type topCmd struct {
	URLs      []string      `name:"url" sep:"," placeholder:"URL" help:"Services to watch (repeat or separate with commas; default $$TIERCACHE_URL)."`
	TokenFile string        `name:"token-file" placeholder:"FILE" help:"File holding the services' bearer token (default $$TIERCACHE_TOKEN, else the file $$TIERCACHE_TOKEN_FILE names)."`
	Interval  time.Duration `name:"interval" default:"1s" help:"Time between refreshes."`
	Count     int           `name:"count" short:"n" help:"Stop after this many refreshes (default: until interrupted)."`
	Plain     bool          `name:"plain" help:"One line per service per refresh, even on a terminal."`
	Fleet     bool          `name:"fleet" help:"List every instance of the service's namespace (GET /v1/fleet of the first service that answers) instead of the services given, flagging the silent ones and those that disagree."`
	outputFlag
}

func (c *topCmd) Help() string {
	return "Shows each service's reads per second, hit ratio per tier, L2 latency percentiles, breaker, recovery queue, " +
		"invalidations and link resets, refreshed every --interval. On a terminal the view is redrawn in place; " +
		"elsewhere (or with --plain) it prints one line per service per refresh. --output json prints one JSON object per service per refresh. " +
		"With --fleet it lists every instance of the namespace instead, one line (or JSON object) per instance per refresh: state (live, silent, stopped), " +
		"health, version, namespace epoch, L1 keys, queue, link resets, coherence lag p99 and markers missed, last heartbeat, and how it disagrees with the others."
}

// topRow is one service's line.
type topRow struct {
	URL         string  `json:"url"`
	Time        string  `json:"time"`
	Error       string  `json:"error,omitempty"`
	ReadsPerSec float64 `json:"reads_per_sec"`
	HTTPPerSec  float64 `json:"http_requests_per_sec"`
	HitL1       float64 `json:"hit_ratio_l1"`
	HitL2       float64 `json:"hit_ratio_l2"`
	L2P50       float64 `json:"l2_p50_ms"`
	L2P99       float64 `json:"l2_p99_ms"`
	Breaker     string  `json:"breaker"`
	Queue       int     `json:"queue_length"`
	LinkResets  uint64  `json:"link_resets"`
	Invalidated uint64  `json:"invalidations_received"`
	L1Entries   int     `json:"l1_entries"`
}

func (c *topCmd) Run(ctx context.Context, s streams) error {
	if c.Interval < 100*time.Millisecond {
		return usage("--interval must be at least 100ms")
	}
	if c.Count < 0 {
		return usage("--count must not be negative")
	}
	urls := c.URLs
	if len(urls) == 0 {
		if u := strings.TrimSpace(getenv(envURL)); u != "" {
			urls = strings.Split(u, ",")
		}
	}
	if len(urls) == 0 {
		return usage("top watches running services: give --url (or $%s)", envURL)
	}
	var backends []*httpBackend
	for _, u := range urls {
		t := targetFlags{TokenFile: c.TokenFile}
		b, err := t.openHTTP(strings.TrimSpace(u))
		if err != nil {
			return err
		}
		defer b.close()
		backends = append(backends, b.(*httpBackend))
	}
	live := outTerminal(s.out) && !c.Plain && !c.json()
	if c.Fleet {
		return c.runFleet(ctx, s, backends, live)
	}
	prev := make([]*statsView, len(backends))
	prevAt := make([]time.Time, len(backends))
	tick := time.NewTicker(c.Interval)
	defer tick.Stop()
	failures := 0
	for n := 1; ; n++ {
		rows := make([]topRow, len(backends))
		failures = 0
		for i, b := range backends {
			rows[i], prev[i], prevAt[i] = c.sample(ctx, b, prev[i], prevAt[i])
			if rows[i].Error != "" {
				failures++
			}
		}
		c.print(s.out, rows, live, n == 1)
		if c.Count > 0 && n >= c.Count {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
	if failures == len(backends) {
		return fail("no service answered")
	}
	return nil
}

// sample reads one service's statistics and the rates since the last.
func (c *topCmd) sample(ctx context.Context, b *httpBackend, last *statsView, lastAt time.Time) (topRow, *statsView, time.Time) {
	now := time.Now()
	r := topRow{URL: b.base, Time: now.UTC().Format("15:04:05")}
	rctx, cancel := context.WithTimeout(ctx, max(c.Interval, time.Second))
	defer cancel()
	raw, err := b.stats(rctx)
	var v statsView
	if err == nil {
		err = json.Unmarshal(raw, &v)
	}
	if err != nil {
		r.Error = err.Error()
		return r, nil, time.Time{}
	}
	cn := v.Counters
	r.HitL1, r.HitL2 = v.HitRatio.L1, v.HitRatio.L2
	r.L2P50, r.L2P99 = ms(v.Latency.L2.P50), ms(v.Latency.L2.P99)
	r.Breaker, r.Queue, r.LinkResets, r.Invalidated, r.L1Entries = cn.Breaker, cn.QueueLength, cn.LinkResets, cn.Invalidations, cn.L1Entries
	if last != nil {
		dt := now.Sub(lastAt).Seconds()
		r.ReadsPerSec = float64(v.reads()-last.reads()) / dt
		if v.HTTP != nil && last.HTTP != nil {
			r.HTTPPerSec = float64(v.HTTP.Requests-last.HTTP.Requests) / dt
		}
	}
	return r, &v, now
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

const topHeader = "time      reads/s   http/s  hit L1  hit L2  L2 p50ms  L2 p99ms  breaker    queue  inval    resets  L1 keys  service"

func (c *topCmd) print(w io.Writer, rows []topRow, live, first bool) {
	if c.json() {
		for _, r := range rows {
			_ = json.NewEncoder(w).Encode(r)
		}
		return
	}
	var b strings.Builder
	if live {
		b.WriteString("\x1b[H\x1b[2J") // home, clear
		fmt.Fprintf(&b, "tiercache top: %d service(s), every %v; Ctrl-C to quit\n\n", len(rows), c.Interval)
	}
	if live || first {
		b.WriteString(topHeader + "\n")
	}
	for _, r := range rows {
		if r.Error != "" {
			fmt.Fprintf(&b, "%-8s  %-96s  %s\n", r.Time, "ERROR "+r.Error, r.URL)
			continue
		}
		fmt.Fprintf(&b, "%-8s  %7.0f  %7.0f  %5.1f%%  %5.1f%%  %8.3f  %8.3f  %-9s  %5d  %6d  %6d  %7d  %s\n",
			r.Time, r.ReadsPerSec, r.HTTPPerSec, 100*r.HitL1, 100*r.HitL2, r.L2P50, r.L2P99, r.Breaker, r.Queue,
			r.Invalidated, r.LinkResets, r.L1Entries, r.URL)
	}
	_, _ = io.WriteString(w, b.String())
}

var getenv = os.Getenv
