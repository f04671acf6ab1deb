package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/config"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/internal/warmconfig"
	"github.com/tiercache/tiercache/warm"
)

// TestRun_HitRatio runs the example against the in-memory L2 and a real
// redis-server: the warmed cache must reach the seed's hit ratio, and the
// backing store must see a small fraction of the reads.
func TestRun_HitRatio(t *testing.T) {
	for _, topo := range []string{"memory", "standalone"} {
		t.Run(topo, func(t *testing.T) {
			opts := tiercache.Options{Namespace: "example-" + topo, Logger: slog.New(slog.DiscardHandler)}
			if topo == "standalone" {
				redistest.Require(t)
				opts.Redis = tiercache.RedisOptions{Addrs: []string{redistest.NewStandalone(t).Addr}}
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			const reads = 60_000
			rep, err := Run(ctx, Config{Cache: opts, Reads: reads, Workers: 8, Latency: 200 * time.Microsecond, Warm: true, Seed: 42})
			if err != nil {
				t.Fatal(err)
			}
			var order []string
			for i, res := range rep.Warmed {
				order = append(order, fmt.Sprintf("%s:%d", res.Strategy, res.Written))
				if res.Err != nil || res.Failed != 0 || res.Written != int64(seedKinds[i].warm) {
					t.Errorf("strategy %s: %+v", res.Strategy, res)
				}
			}
			want := "critical-app-data:50 detector-models:200 popular-datasets:1000 api-responses:1000 user-sessions:2000"
			if got := strings.Join(order, " "); got != want {
				t.Fatalf("start-up ran %q, want %q in priority order", got, want)
			}
			t.Logf("%s: hit ratio %.3f, %d loads for %d reads, warmed in %v, reads in %v",
				topo, rep.HitRatio, rep.Loads, rep.Reads, rep.WarmTime.Round(time.Millisecond), rep.ReadsTime.Round(time.Millisecond))
			if rep.Reads != reads || rep.HitRatio < 0.85 {
				t.Fatalf("hit ratio %.3f over %d reads, want at least 0.85", rep.HitRatio, rep.Reads)
			}
			if rep.Loads <= 0 || rep.Loads > reads/8 {
				t.Fatalf("the backing store served %d of %d reads, want some but at most an eighth", rep.Loads, reads)
			}
		})
	}
}

// TestRun_Cold: without warming, the same reads miss more: warming is
// what the hit ratio owes its first reads to.
func TestRun_Cold(t *testing.T) {
	opts := tiercache.Options{Namespace: "example-cold", Logger: slog.New(slog.DiscardHandler)}
	cfg := Config{Cache: opts, Reads: 10_000, Workers: 8, Seed: 42}
	cold, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Warm, cfg.Cache.Namespace = true, "example-warm"
	warmed, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first 10,000 reads: hit ratio cold %.3f, warmed %.3f", cold.HitRatio, warmed.HitRatio)
	if len(cold.Warmed) != 0 || warmed.HitRatio < cold.HitRatio+0.05 {
		t.Fatalf("hit ratio cold %.3f, warmed %.3f: warming should add at least 5 points", cold.HitRatio, warmed.HitRatio)
	}
}

// TestMain_Output: the command prints the strategies and the verdict.
func TestMain_Output(t *testing.T) {
	t.Setenv("REDIS_URL", "")
	var out bytes.Buffer
	if err := run(t.Context(), &out, 5_000, 4, 0, true); err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{
		`(?m)^cold cache: hit ratio \d+\.\d%`,
		`(?m)^\s+1\s+critical-app-data\s+2h0m0s\s+50\s`,
		`(?m)^\s+5\s+user-sessions\s+30m0s\s+2000\s`,
		`(?m)^warmed 4250 keys with 10 bulk queries in `,
		`(?m)^hit ratio \d+\.\d%, (above|BELOW) the 85% target: \d+ of 5000 reads reached the backing store$`,
	} {
		if !regexp.MustCompile(re).MatchString(out.String()) {
			t.Errorf("output does not match %s:\n%s", re, out.String())
		}
	}
}

// TestDeploySample_SeedStrategies checks that deploy/tiercache.yaml
// configures the service with the same five strategies as this example:
// names, priorities, TTLs and schedules, and that their sources exist.
func TestDeploySample_SeedStrategies(t *testing.T) {
	cfg, err := config.Load(config.Sources{File: "../../deploy/tiercache.yaml", LookupEnv: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	wcfg, err := warmconfig.FromConfig(cfg, warmconfig.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(wcfg.Strategies) != len(seedKinds) {
		t.Fatalf("%d strategies in the sample, %d in the example", len(wcfg.Strategies), len(seedKinds))
	}
	for i, st := range wcfg.Strategies {
		k := seedKinds[i]
		if st.Name != k.strategy || st.Priority != k.priority || st.TTL != k.ttl || st.Schedule != k.schedule {
			t.Errorf("sample %q priority %d ttl %v schedule %q; example %q %d %v %q",
				st.Name, st.Priority, st.TTL, st.Schedule, k.strategy, k.priority, k.ttl, k.schedule)
		}
		n := 0
		if err := st.Generator(t.Context(), func(it warm.Item) error {
			if it.Err != nil {
				return it.Err
			}
			n++
			return nil
		}); err != nil || n == 0 {
			t.Errorf("%s: source gave %d items, %v", st.Name, n, err)
		}
	}
}
