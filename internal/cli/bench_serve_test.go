package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/loadgen"
	"github.com/tiercache/tiercache/internal/redistest"
)

// The service at the seed's scale, each figure a ratio to a baseline
// measured in the same run (docs/benchmarks.md has the figures and the
// commands). The servers run in helper processes (benchproc_test.go); the
// generator is internal/loadgen, the engine of `tiercache bench`. Each
// benchmark does its rounds once, whatever b.N: run them with
// -benchtime 1x.

// benchEnv reads a setting of the benchmarks: TIERCACHE_BENCH_<name>.
func benchEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv("TIERCACHE_BENCH_" + name)); err == nil && v > 0 {
		return v
	}
	return def
}

// serveEnv is the environment of a serve helper on srv with the token:
// serve's defaults otherwise (monitoring on, info logs, L1 on).
// TIERCACHE_BENCH_SERVE_PROFILE names a file for serve's CPU profile.
func serveEnv(srv *redistest.Server, extra ...string) []string {
	env := []string{"REDIS_URL=redis://" + srv.Addr + "/0", "TIERCACHE_TOKEN=" + testToken, "CACHE_NAMESPACE=bench"}
	if p := os.Getenv("TIERCACHE_BENCH_SERVE_PROFILE"); p != "" {
		env = append(env, helperProfileEnv+"="+p)
	}
	return append(env, extra...)
}

// httpTarget is a generator target on h with one connection per worker.
func httpTarget(b *testing.B, h *helper, conns int, timeout time.Duration) *loadgen.HTTPTarget {
	b.Helper()
	t, err := loadgen.NewHTTP(loadgen.HTTPOptions{URL: "http://" + h.addr, Token: testToken, Connections: conns, Timeout: timeout})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = t.Close() })
	return t
}

// run is loadgen.Run that fails the benchmark on a bad configuration.
func run(b *testing.B, t loadgen.Target, cfg loadgen.Config) *loadgen.Report {
	b.Helper()
	rep, err := loadgen.Run(context.Background(), t, cfg)
	if err != nil {
		b.Fatal(err)
	}
	return rep
}

// preload writes the keys of cfg through t and fails on any error.
func preload(b *testing.B, t loadgen.Target, cfg loadgen.Config) {
	b.Helper()
	p, err := loadgen.Preload(context.Background(), t, cfg)
	if err != nil || p.ErrorsTotal > 0 {
		b.Fatalf("preload: %+v, %v", p, err)
	}
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// readLoad is the GET workload of the throughput rounds: 64 workers on
// 64 keep-alive connections reading 1000 preloaded 100-byte values.
func readLoad(d time.Duration) loadgen.Config {
	return loadgen.Config{Keys: 1000, Mix: loadgen.Mix{Get: 1}, ValueSize: 100, Workers: 64, Duration: d}
}

// BenchmarkServe_GetL1 compares GET answered from L1 by serve (auth,
// request ids, metrics, ETag and the cache headers included) with a bare
// net/http handler returning a constant 100-byte body: same generator,
// alternating rounds, the median of the per-round ratios.
func BenchmarkServe_GetL1(b *testing.B) {
	redistest.Require(b)
	srv := redistest.NewStandalone(b)
	rounds, secs := benchEnv("ROUNDS", 5), benchEnv("ROUND_SECONDS", 4)
	serve := startHelper(b, "serve", serveEnv(srv)...)
	var bareEnv []string
	if p := os.Getenv("TIERCACHE_BENCH_BARE_PROFILE"); p != "" {
		bareEnv = append(bareEnv, helperProfileEnv+"="+p)
	}
	bare := startHelper(b, "bare", bareEnv...)
	st, bt := httpTarget(b, serve, 64, 5*time.Second), httpTarget(b, bare, 64, 5*time.Second)
	load := readLoad(time.Duration(secs) * time.Second)
	preload(b, st, load)
	warm := load
	warm.Duration = time.Second // reads from L2 fill L1
	run(b, st, warm)

	// leg runs the load on one server and returns its report and the
	// server's CPU time per request.
	var sGen, bGen []float64 // the generator's CPU per request
	leg := func(h *helper, t loadgen.Target, gen *[]float64) (*loadgen.Report, float64) {
		c0, g0 := h.cpu(), selfCPU()
		rep := run(b, t, load)
		perReq := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / float64(rep.Requests) }
		*gen = append(*gen, perReq(selfCPU()-g0))
		return rep, perReq(h.cpu() - c0)
	}
	var ratios, sRates, bRates, l1, sCPU, bCPU []float64
	for r := range rounds {
		var s, bb *loadgen.Report
		var sc, bc float64
		if r%2 == 0 {
			bb, bc = leg(bare, bt, &bGen)
			s, sc = leg(serve, st, &sGen)
		} else {
			s, sc = leg(serve, st, &sGen)
			bb, bc = leg(bare, bt, &bGen)
		}
		if s.ErrorsTotal+bb.ErrorsTotal > 0 {
			b.Fatalf("round %d: errors serve %v, bare %v", r, s.Errors, bb.Errors)
		}
		ratios = append(ratios, s.OpsPerSec/bb.OpsPerSec)
		sRates, bRates = append(sRates, s.OpsPerSec), append(bRates, bb.OpsPerSec)
		sCPU, bCPU = append(sCPU, sc), append(bCPU, bc)
		l1 = append(l1, s.HitRatio["hit-l1"])
		b.Logf("round %d: serve %.0f req/s (p99 %.2f ms, hit-l1 %.3f, %.1f µs CPU/req), bare %.0f req/s (p99 %.2f ms, %.1f µs CPU/req): %.3f×",
			r+1, s.OpsPerSec, s.Latency.P99, s.HitRatio["hit-l1"], sc, bb.OpsPerSec, bb.Latency.P99, bc, s.OpsPerSec/bb.OpsPerSec)
	}
	b.ReportMetric(median(sRates), "serve-req/s")
	b.ReportMetric(median(bRates), "bare-req/s")
	b.ReportMetric(median(sCPU), "serve-µs-CPU/req")
	b.ReportMetric(median(bCPU), "bare-µs-CPU/req")
	b.ReportMetric(median(sGen), "generator-µs-CPU/serve-req")
	b.ReportMetric(median(bGen), "generator-µs-CPU/bare-req")
	b.ReportMetric(median(l1), "hit-l1")
	b.ReportMetric(median(ratios), "serve/bare")
}

// BenchmarkServe_GetL2 compares GET with L1 off, every read going to
// Redis, with redis-benchmark GET against the same redis-server at the
// same concurrency (64, one command in flight on each connection), in
// alternating rounds: through serve, and through the library in process.
func BenchmarkServe_GetL2(b *testing.B) {
	redistest.Require(b)
	rb, err := exec.LookPath("redis-benchmark")
	if err != nil {
		b.Fatal("redis-benchmark not found on PATH (Debian's redis-tools)")
	}
	srv := redistest.NewStandalone(b)
	rounds, secs := benchEnv("ROUNDS", 5), benchEnv("ROUND_SECONDS", 4)
	serve := startHelper(b, "serve", serveEnv(srv, "CACHE_L1_ENABLED=false")...)
	st := httpTarget(b, serve, 64, 5*time.Second)
	load := readLoad(time.Duration(secs) * time.Second)
	preload(b, st, load)
	lib := libraryTarget(b, srv)
	if _, err := srv.Do("SET", "key:__rand_int__", string(bareBody)); err != nil {
		b.Fatal(err)
	}

	var sRatios, lRatios, sRates, lRates, rRates []float64
	for r := range rounds {
		rbRate := redisBenchmark(b, rb, srv.Addr, 64)
		s := run(b, st, load)
		l := run(b, lib, load)
		if s.ErrorsTotal+l.ErrorsTotal > 0 || s.HitRatio["hit-l2"] != 1 || l.HitRatio["hit-l2"] != 1 {
			b.Fatalf("round %d: serve errors %v reads %v; library errors %v reads %v", r, s.Errors, s.Reads, l.Errors, l.Reads)
		}
		sRatios, lRatios = append(sRatios, s.OpsPerSec/rbRate), append(lRatios, l.OpsPerSec/rbRate)
		sRates, lRates, rRates = append(sRates, s.OpsPerSec), append(lRates, l.OpsPerSec), append(rRates, rbRate)
		b.Logf("round %d: redis-benchmark %.0f GET/s; serve %.0f req/s (p99 %.2f ms) %.3f×; library %.0f ops/s (p99 %.2f ms) %.3f×",
			r+1, rbRate, s.OpsPerSec, s.Latency.P99, s.OpsPerSec/rbRate, l.OpsPerSec, l.Latency.P99, l.OpsPerSec/rbRate)
	}
	b.ReportMetric(median(rRates), "redis-benchmark-GET/s")
	b.ReportMetric(median(sRates), "serve-req/s")
	b.ReportMetric(median(lRates), "library-ops/s")
	b.ReportMetric(median(sRatios), "serve/redis-benchmark")
	b.ReportMetric(median(lRatios), "library/redis-benchmark")
}

// libraryTarget is a cache on srv with L1 off, as the generator's target.
func libraryTarget(b *testing.B, srv *redistest.Server) loadgen.Target {
	b.Helper()
	c, err := tiercache.New(tiercache.Options{
		Namespace: "bench", L1: tiercache.L1Options{Disabled: true},
		Redis: tiercache.RedisOptions{URL: "redis://" + srv.Addr + "/0"},
	})
	if err != nil {
		b.Fatal(err)
	}
	t := loadgen.NewLibrary(c, true)
	b.Cleanup(func() { _ = t.Close() })
	return t
}

// redisBenchmark runs redis-benchmark GET with conns connections and
// returns its requests per second.
func redisBenchmark(b *testing.B, bin, addr string, conns int) float64 {
	b.Helper()
	host, port, _ := strings.Cut(addr, ":")
	out, err := exec.Command(bin, "-h", host, "-p", port, "-c", strconv.Itoa(conns), "-n", "300000",
		"-t", "get", "--csv").CombinedOutput()
	if err != nil {
		b.Fatalf("redis-benchmark: %v\n%s", err, out)
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		if f := strings.Split(line, ","); len(f) > 1 && f[0] == `"GET"` {
			rate, err := strconv.ParseFloat(strings.Trim(f[1], `"`), 64)
			if err == nil {
				return rate
			}
		}
	}
	b.Fatalf("redis-benchmark printed no GET rate:\n%s", out)
	return 0
}

// BenchmarkServe_10kConnections holds 10,000 keep-alive connections, each
// sending one GET a second (an open-model rate of 10,000/s) for 30 s, to
// serve and to the bare handler in alternating rounds: errors, the median
// of the rounds' p99 ratios, and resident memory per connection (the
// server's RSS with the connections open less its RSS before).
func BenchmarkServe_10kConnections(b *testing.B) {
	redistest.Require(b)
	conns, secs := benchEnv("CONNS", 10_000), benchEnv("HOLD_SECONDS", 30)
	limit, err := loadgen.RaiseFileLimit(uint64(conns) + 1024)
	if err != nil {
		b.Logf("could not raise the open-file limit enough: %v", err)
	} else {
		b.Logf("open-file limit %d (the servers inherit it)", limit)
	}
	srv := redistest.NewStandalone(b)
	load := loadgen.Config{Keys: 1000, Mix: loadgen.Mix{Get: 1}, Workers: conns, Rate: float64(conns), Duration: time.Duration(secs) * time.Second}
	// Rounds alternate the order (serve, bare; bare, serve; ...) so that
	// a change in the machine's load falls on both.
	var errs float64
	var ratios, sP99, bP99, sKiB, bKiB, sMiB, bMiB []float64
	for round := range benchEnv("CONN_ROUNDS", 3) {
		modes := []string{"serve", "bare"}
		if round%2 == 1 {
			modes = []string{"bare", "serve"}
		}
		got := map[string]*holdResult{}
		for _, mode := range modes {
			r := hold(b, mode, srv, load)
			got[mode] = r
			rep := r.rep
			errs += float64(rep.ErrorsTotal + rep.Unsent)
			b.Logf("round %d, %s: %d requests, %.0f/s, errors %v, unsent %d, p50 %.2f ms, p99 %.2f ms, max %.1f ms; RSS %.0f → %.0f MiB with %d fds open: %.1f KiB per connection",
				round+1, mode, rep.Requests, rep.OpsPerSec, rep.Errors, rep.Unsent, rep.Latency.P50, rep.Latency.P99, rep.Latency.Max,
				float64(r.idleRSS)/(1<<20), float64(r.heldRSS)/(1<<20), r.fds, r.kibPerConn(conns))
		}
		s, bb := got["serve"], got["bare"]
		ratios = append(ratios, s.rep.Latency.P99/bb.rep.Latency.P99)
		sP99, bP99 = append(sP99, s.rep.Latency.P99), append(bP99, bb.rep.Latency.P99)
		sKiB, bKiB = append(sKiB, s.kibPerConn(conns)), append(bKiB, bb.kibPerConn(conns))
		sMiB, bMiB = append(sMiB, float64(s.heldRSS)/(1<<20)), append(bMiB, float64(bb.heldRSS)/(1<<20))
	}
	b.ReportMetric(errs, "errors")
	b.ReportMetric(median(sP99), "serve-p99-ms")
	b.ReportMetric(median(bP99), "bare-p99-ms")
	b.ReportMetric(median(ratios), "p99-serve/bare")
	b.ReportMetric(median(sKiB), "serve-KiB/conn")
	b.ReportMetric(median(bKiB), "bare-KiB/conn")
	b.ReportMetric(median(sMiB), "serve-MiB")
	b.ReportMetric(median(bMiB), "bare-MiB")
}

type holdResult struct {
	mode             string
	rep              *loadgen.Report
	idleRSS, heldRSS int64
	fds              int
}

func (r *holdResult) kibPerConn(conns int) float64 {
	return float64(r.heldRSS-r.idleRSS) / 1024 / float64(conns)
}

// hold starts a helper, preloads and reads the keys once through a few
// connections, notes its RSS, opens load.Workers connections, runs load
// on them and notes its RSS and open descriptors with them still open.
func hold(b *testing.B, mode string, srv *redistest.Server, load loadgen.Config) *holdResult {
	var env []string
	heap := os.Getenv("TIERCACHE_BENCH_HEAP_PREFIX") // heap profiles <prefix><mode>.prof with the connections open
	if heap != "" {
		env = append(env, helperHeapEnv+"="+heap+mode+".prof")
	}
	var h *helper
	if mode == "serve" {
		h = startHelper(b, "serve", serveEnv(srv, env...)...)
	} else {
		h = startHelper(b, "bare", env...)
	}
	defer h.stop()
	warm := httpTarget(b, h, 8, 5*time.Second)
	pre := load
	pre.Workers, pre.Rate, pre.Duration, pre.Requests = 8, 0, 0, int64(2*load.Keys)
	preload(b, warm, pre)
	run(b, warm, pre) // L1 filled
	_ = warm.Close()
	res := &holdResult{mode: mode, idleRSS: h.rss()}
	t := httpTarget(b, h, load.Workers, 10*time.Second)
	// Open the connections first, one request each over 5 s, so that
	// the hold measures requests on open connections, not a burst of
	// handshakes in its first second.
	connect := load
	connect.Rate, connect.Duration, connect.Requests = float64(load.Workers)/5, 0, int64(load.Workers)
	if c := run(b, t, connect); c.ErrorsTotal > 0 || c.Requests != int64(load.Workers) {
		b.Fatalf("%s: opening %d connections: %d requests, errors %v", mode, load.Workers, c.Requests, c.Errors)
	}
	res.rep = run(b, t, load)
	res.heldRSS, res.fds = h.rss(), h.fds()
	if heap != "" {
		h.heapProfile(heap + mode + ".prof")
	}
	_ = t.Close()
	return res
}

// BenchmarkServe_ZipfRate offers a 90/10 read/write zipf workload to
// serve at rates rising by 2,500/s, each for TIERCACHE_BENCH_STEP_SECONDS
// (default 10), until two steps in a row fail, and reports the highest
// rate sustained with p99 under 10 ms, no error and the whole offered
// rate answered, with the CPU each process used there.
func BenchmarkServe_ZipfRate(b *testing.B) {
	redistest.Require(b)
	srv := redistest.NewStandalone(b)
	secs := benchEnv("STEP_SECONDS", 10)
	serve := startHelper(b, "serve", serveEnv(srv)...)
	t := httpTarget(b, serve, 256, 5*time.Second)
	load := loadgen.Config{Keys: 100_000, Dist: loadgen.Zipf, ZipfS: 1.01, Mix: loadgen.Mix{Get: 90, Set: 10}, ValueSize: 100, Workers: 256}
	preload(b, t, load)
	redisPID := redisPid(b, srv)
	best, bestServeCPU, bestGenCPU, bestRedisCPU := 0.0, 0.0, 0.0, 0.0
	failed := 0 // consecutive steps not sustained; two end the run
	for rate := 2500.0; rate <= 50000 && failed < 2; rate += 2500 {
		step := load
		step.Rate, step.Duration = rate, time.Duration(secs)*time.Second
		s0, g0, r0, start := serve.cpu(), selfCPU(), procCPU(redisPID), time.Now()
		rep := run(b, t, step)
		el := time.Since(start).Seconds()
		sc, gc, rc := (serve.cpu()-s0).Seconds()/el, (selfCPU()-g0).Seconds()/el, (procCPU(redisPID)-r0).Seconds()/el
		ok := rep.Latency.P99 < 10 && rep.ErrorsTotal == 0 && rep.Unsent == 0 && rep.OpsPerSec >= 0.97*rate
		b.Logf("offered %.0f/s: answered %.0f/s, p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, errors %d, hit %.3f; CPU cores: serve %.2f, generator %.2f, redis %.2f; %s",
			rate, rep.OpsPerSec, rep.Latency.P50, rep.Latency.P99, rep.Latency.P999, rep.ErrorsTotal, rep.HitRatio["hit"], sc, gc, rc, verdict(ok))
		if !ok {
			failed++
			continue
		}
		failed = 0
		best, bestServeCPU, bestGenCPU, bestRedisCPU = rate, sc, gc, rc
	}
	b.ReportMetric(best, "sustained-ops/s")
	b.ReportMetric(best/50000, "of-50k")
	b.ReportMetric(bestServeCPU, "serve-cores")
	b.ReportMetric(bestGenCPU, "generator-cores")
	b.ReportMetric(bestRedisCPU, "redis-cores")
}

func verdict(ok bool) string {
	if ok {
		return "sustained"
	}
	return "not sustained"
}

// selfCPU is this process's CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisPid asks the server its process id.
func redisPid(b *testing.B, srv *redistest.Server) int {
	info, err := srv.Info("server")
	if err != nil {
		b.Fatal(err)
	}
	pid, err := strconv.Atoi(info["process_id"])
	if err != nil {
		b.Fatal(fmt.Errorf("process_id %q: %w", info["process_id"], err))
	}
	return pid
}
