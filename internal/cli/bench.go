package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/loadgen"
)

// envToken is the variable holding the token sent by bench --url.
const envToken = "TIERCACHE_TOKEN"

// benchCmd is "tiercache bench".
type benchCmd struct {
	URL       string `name:"url" placeholder:"URL" group:"Target" help:"Load the HTTP service at URL (http://host:port or https://...). Without --url, bench loads the library in process with serve's configuration (--config, the environment, --redis-url, --namespace)."`
	TokenFile string `name:"token-file" placeholder:"FILE" type:"existingfile" group:"Target" help:"File holding the bearer token sent with --url; default $$TIERCACHE_TOKEN."`
	Config    string `name:"config" placeholder:"FILE" group:"Target" help:"Library target: YAML configuration file, as for serve; default $$TIERCACHE_CONFIG."`
	RedisURL  string `name:"redis-url" placeholder:"URL" group:"Target" help:"Library target: the Redis to use, as serve's --redis-url; default $$REDIS_URL or the configuration's."`
	Namespace string `name:"namespace" placeholder:"NAME" group:"Target" help:"Library target: the key namespace, as serve's --namespace."`

	Keys      int     `name:"keys" default:"10000" group:"Workload" help:"Number of distinct keys."`
	KeyPrefix string  `name:"key-prefix" default:"bench:" group:"Workload" help:"Keys are PREFIX0 ... PREFIX<keys-1>; letters, digits and . _ - : / only."`
	Dist      string  `name:"dist" enum:"uniform,zipf" default:"uniform" group:"Workload" help:"Key distribution: uniform or zipf (key 0 the hottest)."`
	ZipfS     float64 `name:"zipf-s" default:"1.01" group:"Workload" help:"Exponent of the zipf distribution, greater than 1; the larger, the more skewed."`
	Mix       string  `name:"mix" default:"90:10:0" group:"Workload" help:"Weights of reads, writes and deletes (R:W:D)."`
	ValueSize int     `name:"value-size" default:"100" group:"Workload" help:"Size in bytes of each value written."`
	Preload   bool    `name:"preload" group:"Workload" help:"Write every key once before the run (reported apart)."`
	Seed      uint64  `name:"seed" default:"1" group:"Workload" help:"Seed of the key and operation choices."`

	Concurrency int           `name:"concurrency" short:"c" default:"16" group:"Load" help:"Workers, each with one operation in flight."`
	Connections int           `name:"connections" placeholder:"N" group:"Load" help:"HTTP keep-alive connections, at most --concurrency; worker i uses connection i mod N. Default: one per worker."`
	Duration    time.Duration `name:"duration" short:"d" placeholder:"DURATION" group:"Load" help:"How long to run (default 10s unless --requests is given)."`
	Requests    int64         `name:"requests" short:"n" placeholder:"N" group:"Load" help:"Stop after N operations (with --duration, whichever comes first)."`
	Rate        float64       `name:"rate" placeholder:"OPS" group:"Load" help:"Offer OPS operations per second at fixed intended times, latency measured from each intended start (open model); default: as fast as answers come back."`
	Timeout     time.Duration `name:"timeout" default:"5s" group:"Load" help:"Bound on each HTTP request (the library target uses the cache's operation timeout)."`
	TimeLimit   time.Duration `name:"time-limit" placeholder:"DURATION" group:"Load" help:"Stop the run however far it got; operations due but not sent are reported as unsent. Default: --duration + 30s."`

	JSON     bool `name:"json" group:"Output" help:"Print the report as JSON on stdout."`
	Progress bool `name:"progress" group:"Output" help:"Print a progress line to stderr every second even when stderr is not a terminal."`
}

// Help is the command's description in its --help.
func (c *benchCmd) Help() string {
	return "Generate load against the HTTP service (--url) or the library in process, and report ops/s, " +
		"latency percentiles (HDR histogram), the hit ratio per tier and errors by kind. The exit code is 0 " +
		"when the run completed, whatever the errors it counted (they are in the report), 1 when it could not " +
		"start and 2 on a usage error. docs/bench.md describes the output."
}

func (c *benchCmd) Run(ctx context.Context, s streams) error {
	return benchCommand(ctx, s, c, isTerminal(s.err))
}

// benchCommand runs the command with the terminal check made by the
// caller.
func benchCommand(ctx context.Context, s streams, c *benchCmd, tty bool) error {
	cfg, err := c.loadConfig(s, tty)
	if err != nil {
		return err
	}
	target, err := c.target(s)
	if err != nil {
		return err
	}
	defer target.Close()
	var loaded *loadgen.Loaded
	if c.Preload {
		pre := cfg
		pre.Progress, pre.TimeLimit = nil, 0
		if loaded, err = loadgen.Preload(ctx, target, pre); err != nil {
			return usage("%v", err)
		}
	}
	rep, err := loadgen.Run(ctx, target, cfg)
	if err != nil {
		return usage("%v", err)
	}
	if tty {
		fmt.Fprintln(s.err) // end the progress line drawn in place
	}
	rep.Preload = loaded
	if c.JSON {
		enc := json.NewEncoder(s.out)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.WriteText(s.out)
	}
	if err != nil {
		return fail("write the report: %v", err)
	}
	return nil
}

// loadConfig checks the flags and turns them into the run's Config.
func (c *benchCmd) loadConfig(s streams, tty bool) (loadgen.Config, error) {
	mix, err := loadgen.ParseMix(c.Mix)
	if err != nil {
		return loadgen.Config{}, usage("--mix: %v", err)
	}
	switch {
	case c.Concurrency < 1:
		return loadgen.Config{}, usage("--concurrency %d: at least 1", c.Concurrency)
	case c.Connections < 0 || c.Connections > c.Concurrency:
		return loadgen.Config{}, usage("--connections %d: between 1 and --concurrency (%d)", c.Connections, c.Concurrency)
	case c.URL == "" && c.Connections > 0:
		return loadgen.Config{}, usage("--connections applies to --url only")
	case c.URL == "" && c.TokenFile != "":
		return loadgen.Config{}, usage("--token-file applies to --url only")
	case c.URL != "" && (c.Config != "" || c.RedisURL != "" || c.Namespace != ""):
		return loadgen.Config{}, usage("--config, --redis-url and --namespace apply to the library target, not to --url")
	case c.Keys < 1, c.ValueSize < 0, c.Duration < 0, c.Requests < 0, c.Rate < 0, c.Timeout <= 0, c.TimeLimit < 0:
		return loadgen.Config{}, usage("--keys must be at least 1, --timeout positive, and --value-size, --duration, --requests, --rate and --time-limit not negative")
	}
	cfg := loadgen.Config{
		Keys: c.Keys, KeyPrefix: c.KeyPrefix, Dist: c.Dist, ZipfS: c.ZipfS, Mix: mix, ValueSize: c.ValueSize,
		Workers: c.Concurrency, Duration: c.Duration, Requests: c.Requests, Rate: c.Rate, TimeLimit: c.TimeLimit, Seed: c.Seed,
	}
	if cfg.Duration == 0 && cfg.Requests == 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.TimeLimit == 0 && cfg.Duration == 0 {
		cfg.TimeLimit = 10 * time.Minute // a count of requests still ends
	}
	if tty || c.Progress {
		cfg.Progress = progressLine(s.err, tty)
	}
	return cfg, nil
}

// progressLine returns the once-a-second report: redrawn in place on a
// terminal, one line each otherwise.
func progressLine(w io.Writer, tty bool) func(loadgen.Progress) {
	return func(p loadgen.Progress) {
		line := fmt.Sprintf("%5.0fs %10.0f ops/s  p99 %8.3f ms  %d ops  %d errors",
			p.Elapsed.Seconds(), p.Rate, float64(p.P99)/float64(time.Millisecond), p.Ops, p.Errors)
		if tty {
			fmt.Fprintf(w, "\r%-70s", line)
			return
		}
		fmt.Fprintln(w, line)
	}
}

// target builds the HTTP target (--url) or the library one.
func (c *benchCmd) target(s streams) (loadgen.Target, error) {
	if c.URL != "" {
		token, err := c.token()
		if err != nil {
			return nil, err
		}
		conns := c.Connections
		if conns == 0 {
			conns = c.Concurrency
		}
		if _, err := loadgen.RaiseFileLimit(uint64(conns) + 256); err != nil {
			fmt.Fprintf(s.err, "tiercache bench: %v; some of the %d connections may fail to open\n", err, conns)
		}
		t, err := loadgen.NewHTTP(loadgen.HTTPOptions{URL: c.URL, Token: token, Connections: conns, Timeout: c.Timeout})
		if err != nil {
			return nil, usage("--url: %v", err)
		}
		return t, nil
	}
	return c.library(s)
}

// token is the --token-file's content, else $TIERCACHE_TOKEN.
func (c *benchCmd) token() (string, error) {
	if c.TokenFile == "" {
		return strings.TrimSpace(os.Getenv(envToken)), nil
	}
	b, err := os.ReadFile(c.TokenFile)
	if err != nil {
		return "", usage("--token-file: %v", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// library opens a cache with serve's configuration, its own logger and
// no recovery journal (that is serve's).
func (c *benchCmd) library(s streams) (loadgen.Target, error) {
	flags := map[string]string{}
	if c.RedisURL != "" {
		flags["redis-url"] = c.RedisURL
	}
	if c.Namespace != "" {
		flags["namespace"] = c.Namespace
	}
	cfg, err := loadConfig(c.Config, flags)
	if err != nil {
		return nil, err
	}
	opts, err := tiercache.OptionsFromConfig(cfg)
	if err != nil {
		return nil, fail("%v", err)
	}
	opts.Logger = slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts.Redis.LazyConnect = false // fail now when Redis cannot be reached
	opts.RecoveryJournalDir = ""
	notInFleet(&opts)
	if opts.Redis.String() == "memory" {
		fmt.Fprintln(s.err, "tiercache bench: no Redis configured: loading an in-memory store private to this process")
	}
	cache, err := tiercache.New(opts)
	if err != nil {
		return nil, fail("%v", err)
	}
	return loadgen.NewLibrary(cache, true), nil
}
