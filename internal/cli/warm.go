package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/config"
	"github.com/tiercache/tiercache/internal/server"
	"github.com/tiercache/tiercache/internal/warmconfig"
	"github.com/tiercache/tiercache/warm"
)

// warmCmd is "tiercache warm".
type warmCmd struct {
	Config   string   `name:"config" placeholder:"FILE" help:"Configuration file (YAML, docs/configuration.md) whose warming section holds the strategies; default $$TIERCACHE_CONFIG."`
	Strategy []string `name:"strategy" placeholder:"NAME" sep:"," help:"Run only the strategy called NAME; repeat it or separate names with commas."`
}

// Help is the command's description in its --help.
func (c *warmCmd) Help() string {
	return "Run warming strategies once, in priority order: the named ones, or every enabled one whose " +
		"warm_on_demand is true. The cache settings (Redis, namespace...) come from the same file and the " +
		"environment, as for serve. Progress goes to stderr (a bar on a terminal), a summary to stdout; the " +
		"exit code is 1 when a strategy failed or a key could not be written."
}

func (c *warmCmd) Run(ctx context.Context, s streams) error {
	return warmCommand(ctx, s, c, isTerminal(s.err))
}

// warmCommand runs the command with the terminal check made by the
// caller, so that tests can ask for the progress bar.
func warmCommand(ctx context.Context, s streams, c *warmCmd, tty bool) error {
	if c.Config == "" && strings.TrimSpace(os.Getenv(envConfig)) == "" {
		return usage("--config is required")
	}
	cfg, err := loadConfig(c.Config, nil)
	if err != nil {
		return err
	}
	names := slices.DeleteFunc(slices.Clone(c.Strategy), func(n string) bool { return strings.TrimSpace(n) == "" })
	failed, err := warmOnce(ctx, s, cfg, names, tty)
	if err != nil {
		return fail("%v", err)
	}
	if failed {
		return code(exitError)
	}
	return nil
}

// warmOnce runs the strategies and prints the summary. failed reports a
// run error or a key not written.
func warmOnce(ctx context.Context, s streams, cfg *config.Config, names []string, tty bool) (failed bool, err error) {
	wcfg, err := warmconfig.FromConfig(cfg, warmconfig.Options{})
	if err != nil {
		return false, err
	}
	if len(wcfg.Strategies) == 0 {
		return false, fmt.Errorf("%s has no warming.strategies", cfg.Path)
	}
	total, err := selected(wcfg.Strategies, names)
	if err != nil {
		return false, err
	}
	opts, err := tiercache.OptionsFromConfig(cfg)
	if err != nil {
		return false, err
	}
	opts.Logger = slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts.Redis.LazyConnect = false // a one-off run needs Redis now
	opts.RecoveryJournalDir = ""   // nor does it take over serve's journal
	notInFleet(&opts)
	c, err := tiercache.New(opts)
	if err != nil {
		return false, err
	}
	defer c.Close()
	p := &progress{w: s.err, tty: tty, total: total}
	r, err := warm.NewRunner(warm.Options{
		Cache:      c,
		Logger:     slog.New(slog.DiscardHandler), // progress and the summary say it all
		OnProgress: p.batch,
		OnResult:   p.done,
	}, wcfg.Strategies...)
	if err != nil {
		return false, err
	}
	defer r.Close()
	results, err := r.Warm(ctx, names...)
	p.finish()
	if len(results) == 0 && err != nil {
		return false, err // nothing ran: a strategy not runnable on demand
	}
	return printSummary(s.out, results), nil
}

// selected counts the strategies Warm will run, and checks the names.
func selected(strategies []warm.Strategy, names []string) (int, error) {
	if len(names) == 0 {
		n := 0
		for _, st := range strategies {
			if st.Enabled && st.WarmOnDemand {
				n++
			}
		}
		if n == 0 {
			return 0, fmt.Errorf("no strategy is enabled with warm_on_demand: true")
		}
		return n, nil
	}
	known := make([]string, len(strategies))
	for i, st := range strategies {
		known[i] = st.Name
	}
	for _, n := range names {
		if !slices.Contains(known, n) {
			return 0, fmt.Errorf("unknown strategy %q (the configuration has: %s)", n, strings.Join(known, ", "))
		}
	}
	uniq := slices.Clone(names)
	slices.Sort(uniq)
	return len(slices.Compact(uniq)), nil
}

// progress shows runs as they go: a bar redrawn in place on a terminal,
// one line per finished strategy otherwise. The Runner calls it from the
// goroutine that runs the strategies, one at a time.
type progress struct {
	w     io.Writer
	tty   bool
	total int

	mu       sync.Mutex
	finished int
	drawn    bool
}

func (p *progress) batch(pr warm.Progress) {
	if !p.tty {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draw(pr.Strategy, pr.Written, pr.Failed)
}

func (p *progress) done(res warm.Result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finished++
	if p.tty {
		p.draw(res.Strategy, res.Written, res.Failed)
		return
	}
	fmt.Fprintf(p.w, "warm: [%d/%d] %s: %s\n", p.finished, p.total, res.Strategy, outcome(res))
}

// barWidth is the number of cells of the bar.
const barWidth = 24

// draw rewrites the bar line: strategies finished out of the total, and
// the current strategy's keys.
func (p *progress) draw(name string, written, failed int64) {
	filled := barWidth * p.finished / max(p.total, 1)
	line := fmt.Sprintf("\r[%s%s] %d/%d %s: %s keys", strings.Repeat("#", filled), strings.Repeat(".", barWidth-filled),
		p.finished, p.total, name, thousands(written))
	if failed > 0 {
		line += fmt.Sprintf(", %s failed", thousands(failed))
	}
	fmt.Fprintf(p.w, "%s\x1b[K", line) // clear what a longer line left
	p.drawn = true
}

// finish ends the bar's line.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

// outcome describes a run in a few words.
func outcome(res warm.Result) string {
	s := fmt.Sprintf("%s written", thousands(res.Written))
	if res.Failed > 0 {
		s += fmt.Sprintf(", %s failed", thousands(res.Failed))
	}
	s += " in " + res.Duration.Round(time.Millisecond).String()
	switch {
	case res.Err != nil:
		s += "; stopped: " + res.Err.Error()
	case res.KeyErr != nil:
		s += "; last failure: " + res.KeyErr.Error()
	}
	return s
}

// printSummary writes one row per run and a total, and reports whether
// any run failed or lost keys.
func printSummary(w io.Writer, results []warm.Result) (failed bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "strategy\twritten\tfailed\tbatches\tduration\t")
	var written, lost int64
	var took time.Duration
	var notes []string
	for _, res := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%v\t\n", res.Strategy, thousands(res.Written), thousands(res.Failed),
			res.Batches, res.Duration.Round(time.Millisecond))
		written, lost, took = written+res.Written, lost+res.Failed, took+res.Duration
		switch {
		case res.Err != nil:
			notes = append(notes, res.Err.Error())
		case res.KeyErr != nil:
			notes = append(notes, fmt.Sprintf("warm: strategy %q: last failed key: %v", res.Strategy, res.KeyErr))
		}
		failed = failed || res.Err != nil || res.Failed > 0
	}
	fmt.Fprintf(tw, "total\t%s\t%s\t\t%v\t\n", thousands(written), thousands(lost), took.Round(time.Millisecond))
	_ = tw.Flush()
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
	return failed
}

// thousands formats n with comma separators.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return "-" + thousands(-n)
	}
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// warming is the serve command's warming: a Runner, its Scheduler and the
// start-up run. Its zero value is warming switched off.
type warming struct {
	runner  *warm.Runner
	sched   *warm.Scheduler
	startup chan struct{} // closed when the start-up run returns
	once    sync.Once
}

// startWarming reads the warming section of cfg, and unless
// warming.enabled is false starts the scheduler and, in the background,
// the WarmOnStartup strategies. A bad section is an error even when
// warming is switched off, so that it is found before it is switched on.
func startWarming(c *tiercache.Cache, cfg *config.Config, logger *slog.Logger) (*warming, error) {
	w := &warming{}
	wcfg, err := warmconfig.FromConfig(cfg, warmconfig.Options{})
	if err != nil {
		return nil, err
	}
	if len(wcfg.Strategies) == 0 {
		return w, nil
	}
	if !cfg.Warming.Enabled {
		logger.Info("warming disabled", "by", cfg.Origin("warming.enabled").String(), "config", cfg.Path)
		return w, nil
	}
	if w.runner, err = warm.NewRunner(warm.Options{Cache: c, Logger: logger}, wcfg.Strategies...); err != nil {
		return nil, err
	}
	w.sched, err = warm.NewScheduler(w.runner, warm.SchedulerOptions{LockTTL: wcfg.LockTTL, Logger: logger})
	if err != nil {
		_ = w.runner.Close()
		return nil, err
	}
	w.sched.Start()
	w.startup = make(chan struct{})
	go func() {
		defer close(w.startup)
		_, _ = w.runner.Startup(context.Background()) // Close cancels it
	}()
	var scheduled []string
	for _, st := range wcfg.Strategies {
		if st.Enabled && st.Schedule != "" {
			scheduled = append(scheduled, st.Name)
		}
	}
	logger.Info("warming", "config", cfg.Path, "strategies", len(wcfg.Strategies),
		"scheduled", cmp.Or(strings.Join(scheduled, ","), "none"))
	return w, nil
}

// warmer is what the server's /v1/warm endpoints use; nil when off.
func (w *warming) warmer() server.Warmer {
	if w.runner == nil {
		return nil
	}
	return w.runner
}

// close stops scheduling and cancels runs in progress; call it before
// closing the cache. It is idempotent.
func (w *warming) close() {
	w.once.Do(func() {
		if w.sched != nil {
			_ = w.sched.Close()
		}
		if w.runner != nil {
			_ = w.runner.Close()
			<-w.startup
		}
	})
}
