package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/verify"
)

// verifyCmd is "tiercache verify".
type verifyCmd struct {
	URLs      []string      `name:"url" sep:"," placeholder:"URL" help:"Running services to verify, at least two (repeat or separate with commas). Without it, --instances library caches on Redis, configured as serve is."`
	TokenFile string        `name:"token-file" placeholder:"FILE" help:"File holding the services' bearer token (default $$TIERCACHE_TOKEN, else the file $$TIERCACHE_TOKEN_FILE names)."`
	Config    string        `name:"config" placeholder:"FILE" help:"Without --url: serve's YAML configuration file (default $$TIERCACHE_CONFIG)."`
	RedisURL  *string       `name:"redis-url" placeholder:"URL" help:"Without --url: the Redis to verify (default $$REDIS_URL or the configuration's)."`
	Namespace *string       `name:"namespace" placeholder:"NAME" help:"Without --url: the namespace the run's own is derived from (NAME-verify-<random>)."`
	Instances int           `name:"instances" default:"3" help:"Without --url: library caches to run, each with its own L1 and connections."`
	Duration  time.Duration `name:"duration" default:"10s" help:"How long the workload runs (at most 10m)."`
	Keys      int           `name:"keys" default:"64" help:"Keys the run uses."`
	Tags      int           `name:"tags" default:"8" help:"Tags the keys are spread over; each has one writer."`
	Readers   int           `name:"readers" default:"2" help:"Reading goroutines per instance."`
	Grace     time.Duration `name:"grace" default:"100ms" help:"How long after an acknowledgement another instance may still read the older state."`
	MaxOps    int           `name:"max-ops" default:"200000" help:"Bound on the run's operations, reads included (the final reads and the cleanup add keys × instances + keys)."`
	Failover  time.Duration `name:"failover-at" placeholder:"DURATION" help:"Without --url, on Sentinel: this long into the run, ask the sentinels to fail the master over (SENTINEL FAILOVER), and report the write outage. Failed operations are then expected; stale reads and lost writes still fail the run."`
	PauseAt   time.Duration `name:"pause-link-at" placeholder:"DURATION" help:"Without --url: this long into the run, hold the first instance's connections to Redis still (nothing sent or received, nothing closed) for --pause-link-for, and report the outage it caused. Its reads within its liveness bound of the pause may lag by that much; failed operations are expected; stale reads beyond that and lost writes still fail the run."`
	PauseFor  time.Duration `name:"pause-link-for" default:"2s" placeholder:"DURATION" help:"How long --pause-link-at holds the link still."`
	JSON      bool          `name:"json" help:"Print the report as JSON (as --output json)."`
	outputFlag
}

func (c *verifyCmd) Help() string {
	return "Each tag has one writer, on one instance, that writes, deletes and invalidates its keys while every instance " +
		"reads them; every operation is recorded with its time and outcome. Afterwards every read is checked: none may " +
		"return a state older than the last write, delete or invalidation acknowledged before it began, by more than --grace. " +
		"Then the writers stop and every instance must read every key's final state (an invalidation never lost). " +
		"The report gives the operations, the lag percentiles and each violation. The run uses keys and tags of its own " +
		"(prefix tiercache-verify/<random>/) and deletes its keys afterwards; without --url it also runs in a namespace " +
		"of its own and clears it. It stops at --duration or --max-ops, and is cut off at --duration + 20s whatever happens. " +
		"Exit status 0 when coherent, 1 on any violation or when it cannot run, 2 on a usage error."
}

func (c *verifyCmd) Run(ctx context.Context, s streams) error {
	switch {
	case c.Duration <= 0 || c.Duration > verify.MaxDuration:
		return usage("--duration must be in (0, %v]", verify.MaxDuration)
	case c.Keys < 1 || c.Keys > 100_000:
		return usage("--keys must be in [1, 100000]")
	case c.Tags < 1 || c.Tags > c.Keys:
		return usage("--tags must be in [1, --keys]")
	case c.Readers < 1 || c.Readers > 64:
		return usage("--readers must be in [1, 64]")
	case c.Grace < 0:
		return usage("--grace must not be negative")
	case c.MaxOps < 1 || c.MaxOps > 10_000_000:
		return usage("--max-ops must be in [1, 10000000]")
	}
	if c.JSON {
		c.Output = "json"
	}
	cfg := verify.Config{Duration: c.Duration, Keys: c.Keys, Groups: c.Tags, Readers: c.Readers, Grace: c.Grace, MaxOps: c.MaxOps}
	if c.Grace == 0 {
		cfg.Grace = time.Nanosecond // zero means the default to the package
	}
	urls := c.URLs
	if len(urls) == 0 {
		if u := strings.TrimSpace(getenv(envURL)); u != "" {
			urls = strings.Split(u, ",")
		}
	}
	if len(urls) > 0 {
		if c.RedisURL != nil || c.Namespace != nil || c.Config != "" {
			return usage("--url verifies services: --redis-url, --namespace and --config apply only without it")
		}
		if c.Failover != 0 {
			return usage("--failover-at applies to library caches on Sentinel, not to --url")
		}
		if c.PauseAt != 0 {
			return usage("--pause-link-at applies to library caches, not to --url (a service's link cannot be reached from here)")
		}
		if len(urls) < 2 {
			return usage("coherence needs at least two services: give --url twice (or comma-separated)")
		}
		t := targetFlags{TokenFile: c.TokenFile}
		tok, err := t.token()
		if err != nil {
			return err
		}
		client := &http.Client{Timeout: 5 * time.Second}
		defer client.CloseIdleConnections()
		for _, u := range urls {
			b, err := t.openHTTP(strings.TrimSpace(u))
			if err != nil {
				return err
			}
			cfg.Instances = append(cfg.Instances, verify.HTTPInstance{Base: b.(*httpBackend).base, Token: tok, Client: client})
		}
		cfg.Cleanup = verify.DeleteKeys(cfg.Instances[0])
	} else {
		if c.TokenFile != "" {
			return usage("--token-file needs --url")
		}
		if c.Instances < 2 || c.Instances > 64 {
			return usage("--instances must be in [2, 64]")
		}
		opts, err := c.libraryOptions()
		if err != nil {
			return err
		}
		if c.Failover != 0 {
			if c.Failover < 0 || c.Failover >= c.Duration {
				return usage("--failover-at must be within --duration")
			}
			if len(opts.Redis.SentinelAddrs) == 0 {
				return usage("--failover-at needs Sentinel ($REDIS_SENTINEL_HOSTS or redis.sentinel.hosts)")
			}
			f := verify.SentinelFailover(opts.Redis.SentinelAddrs, opts.Redis.SentinelUsername, opts.Redis.SentinelPassword, opts.Redis.SentinelMaster)
			f.At = c.Failover
			cfg.Faults = []verify.Fault{f}
		}
		var link *verify.Link
		if c.PauseAt != 0 {
			if c.PauseAt < 0 || c.PauseAt >= c.Duration {
				return usage("--pause-link-at must be within --duration")
			}
			if c.PauseFor <= 0 {
				return usage("--pause-link-for must be positive")
			}
			link = &verify.Link{}
		}
		insts, cleanup, closeAll, err := verify.OpenCaches(opts, c.Instances, link)
		if err != nil {
			return fail("%v", err)
		}
		defer closeAll()
		cfg.Instances, cfg.Cleanup = insts, cleanup
		if link != nil {
			f := verify.LinkPause(insts[0], link, c.PauseFor, insts[0].(verify.CacheInstance).Cache.LivenessBound())
			f.At = c.PauseAt
			cfg.Faults = append(cfg.Faults, f)
		}
	}
	fmt.Fprintf(s.err, "tiercache verify: %d instances for %v...\n", len(cfg.Instances), c.Duration)
	rep, err := verify.Run(ctx, cfg)
	if err != nil {
		return fail("%v", err)
	}
	if c.json() {
		if err := writeJSON(s.out, rep); err != nil {
			return fail("%v", err)
		}
	} else if err := rep.WriteText(s.out); err != nil {
		return fail("%v", err)
	}
	if !rep.Pass {
		return code(exitError)
	}
	return nil
}

// libraryOptions are serve's options for the verify caches.
func (c *verifyCmd) libraryOptions() (tiercache.Options, error) {
	flags := map[string]string{}
	if c.RedisURL != nil {
		flags["redis-url"] = *c.RedisURL
	}
	if c.Namespace != nil {
		flags["namespace"] = *c.Namespace
	}
	cfg, err := loadConfig(c.Config, flags)
	if err != nil {
		return tiercache.Options{}, err
	}
	opts, err := tiercache.OptionsFromConfig(cfg)
	if err != nil {
		return opts, fail("%v", err)
	}
	if opts.Redis.URL == "" && len(opts.Redis.Addrs) == 0 && len(opts.Redis.SentinelAddrs) == 0 {
		return opts, usage("nothing to verify: give --url for running services, or --redis-url (or $REDIS_URL, or a configuration file)")
	}
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.LivenessInterval = 0
	notInFleet(&opts)
	return opts, nil
}
