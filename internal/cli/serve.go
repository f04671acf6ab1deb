package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/config"
	"github.com/tiercache/tiercache/internal/server"
)

// envConfig names the configuration file when --config does not.
const envConfig = "TIERCACHE_CONFIG"

// serveCmd is "tiercache serve". Its flags are the settings of package
// config that have a flag tag (TestServeFlags_MatchConfig checks both
// lists); a flag given beats the environment and the file.
type serveCmd struct {
	Config    string  `name:"config" placeholder:"FILE" help:"YAML configuration file (docs/configuration.md); default $$TIERCACHE_CONFIG, else none."`
	Addr      *string `name:"addr" placeholder:"ADDRESS" help:"${flag_addr}"`
	Token     *string `name:"token" placeholder:"TOKEN" help:"${flag_token}"`
	TokenFile *string `name:"token-file" placeholder:"FILE" help:"${flag_token_file}"`
	TLSCert   *string `name:"tls-cert" placeholder:"FILE" help:"${flag_tls_cert}"`
	TLSKey    *string `name:"tls-key" placeholder:"FILE" help:"${flag_tls_key}"`
	LogLevel  *string `name:"log-level" placeholder:"LEVEL" help:"${flag_log_level}"`
	LogFormat *string `name:"log-format" placeholder:"FORMAT" help:"${flag_log_format}"`
	Namespace *string `name:"namespace" placeholder:"NAME" help:"${flag_namespace}"`
	RedisURL  *string `name:"redis-url" placeholder:"URL" help:"${flag_redis_url}"`
}

// flags returns the flags given, by name.
func (c *serveCmd) flags() map[string]string {
	m := map[string]string{}
	for name, p := range map[string]*string{
		"addr": c.Addr, "token": c.Token, "token-file": c.TokenFile, "tls-cert": c.TLSCert, "tls-key": c.TLSKey,
		"log-level": c.LogLevel, "log-format": c.LogFormat, "namespace": c.Namespace, "redis-url": c.RedisURL,
	} {
		if p != nil {
			m[name] = *p
		}
	}
	return m
}

// flagHelp returns the help of serve's flags, from the configuration's
// table, as kong variables flag_<name>.
func flagHelp() map[string]string {
	vars := map[string]string{}
	for _, f := range config.Fields() {
		if f.Flag == "" {
			continue
		}
		h := f.Help
		if !strings.Contains(strings.Fields(h)[0], ":") {
			h = strings.ToUpper(h[:1]) + h[1:]
		}
		h += " (" + f.Key
		if f.Env != "" {
			h += ", $$" + f.Env
		}
		if f.Default != "" {
			h += "; default " + f.Default
		}
		vars["flag_"+strings.ReplaceAll(f.Flag, "-", "_")] = h + ")."
	}
	return vars
}

func (c *serveCmd) Run(ctx context.Context, s streams) error {
	cfg, err := loadConfig(c.Config, c.flags())
	if err != nil {
		return err
	}
	logger := newLogger(s.err, cfg.Log)
	if err := serveTo(ctx, cfg, logger, s.out); err != nil {
		return fail("%v", err)
	}
	return nil
}

// loadConfig loads the configuration: the file (the flag, else
// $TIERCACHE_CONFIG), the environment and flags. An error caused by a
// flag is a usage error (exit 2).
func loadConfig(file string, flags map[string]string) (*config.Config, error) {
	if file == "" {
		file = strings.TrimSpace(os.Getenv(envConfig))
	}
	cfg, err := config.Load(config.Sources{File: file, Flags: flags})
	if err != nil {
		if fromFlag(err) {
			return nil, usage("%v", err)
		}
		return nil, fail("%v", err)
	}
	return cfg, nil
}

// newLogger returns the service's logger on w, in the configured format.
func newLogger(w io.Writer, l config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(l.Level)) // checked by package config
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve is serveTo with the process's standard output.
func serve(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	return serveTo(ctx, cfg, logger, os.Stdout)
}

// serveTo runs the service until ctx is cancelled, then shuts it down.
// The stdout span exporter writes to out.
func serveTo(ctx context.Context, cfg *config.Config, logger *slog.Logger, out io.Writer) error {
	opts, tp, metrics, err := cacheOptions(ctx, cfg, logger, out)
	if err != nil {
		return err
	}
	if tp != nil {
		defer stopTracing(ctx, tp, logger) // after the cache's Close below
	}
	// Listen before the cache starts, so that its fleet heartbeat
	// carries the address actually bound (a port 0 resolved).
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.HTTP.Addr)
	if err != nil {
		return err
	}
	defer ln.Close() // on early returns; Serve closes it otherwise
	opts.Fleet.Version = version()
	if opts.Fleet.Address == "" {
		opts.Fleet.Address = advertised(ln.Addr())
	}
	c, err := tiercache.New(opts)
	if err != nil {
		return err
	}
	defer c.Close() // on early returns; Close is idempotent
	w, err := startWarming(c, cfg, logger)
	if err != nil {
		return err
	}
	defer w.close()
	srv, err := server.New(server.Config{
		Cache: c, Token: cfg.HTTP.Token, OpenReads: cfg.HTTP.OpenReads, RetryAfter: retryAfter(cfg), Timeout: cfg.HTTP.RequestTimeout,
		Logger: logger, Metrics: metrics, Warmer: w.warmer(),
		MaxBatchKeys: cfg.HTTP.MaxBatchKeys, MaxBatchBytes: int64(cfg.HTTP.MaxBatchBytes),
	})
	if err != nil {
		return err
	}
	tlsConf, err := serverTLS(cfg.HTTP.TLSCert, cfg.HTTP.TLSKey)
	if err != nil {
		return err
	}
	handler := srv.Handler()
	if tp != nil {
		handler = traceRequests(handler, tp)
	}
	hs := newHTTPServer(cfg.HTTP, handler, tlsConf, logger)
	hs.ConnState = srv.ConnState() // nil without metrics
	// Redis.String redacts credentials; the token is only reported as set.
	logger.Info("tiercache listening", "addr", ln.Addr().String(), "l2", opts.Redis.String(),
		"namespace", c.Namespace(), "auth", cfg.HTTP.Token != "", "open_reads", cfg.HTTP.OpenReads,
		"tls", tlsConf != nil, "metrics", cfg.Monitoring.Enabled, "tracing", tracingSummary(cfg.Tracing),
		"journal", cmpOr(opts.RecoveryJournalDir, "none"),
		"config", cmpOr(cfg.Path, "none"))

	served := make(chan error, 1)
	go func() {
		if tlsConf != nil {
			served <- hs.ServeTLS(ln, "", "")
			return
		}
		served <- hs.Serve(server.Listener(ln)) // JSON errors for unparseable requests too
	}()
	select {
	case err := <-served:
		return fmt.Errorf("serve HTTP: %w", err)
	case <-ctx.Done():
	}
	return shutdown(ctx, cfg, logger, hs, served, c, w)
}

// cacheOptions returns the cache's options with serve's logger, its
// Prometheus recorder and registry (nil when monitoring is off) and its
// tracer provider (nil when tracing is off).
func cacheOptions(ctx context.Context, cfg *config.Config, logger *slog.Logger, out io.Writer) (tiercache.Options, *sdktrace.TracerProvider, prometheus.Gatherer, error) {
	opts, err := tiercache.OptionsFromConfig(cfg)
	if err != nil {
		return opts, nil, nil, err
	}
	opts.Logger = logger
	var metrics prometheus.Gatherer
	if cfg.Monitoring.Enabled {
		rec, m, err := server.NewMetrics()
		if err != nil {
			return opts, nil, nil, err
		}
		opts.Recorder, metrics = rec, m
	}
	tp, err := newTracerProvider(ctx, cfg.Tracing, out, logger)
	if err != nil {
		return opts, nil, nil, err
	}
	if tp != nil {
		opts.TracerProvider = tp
	}
	return opts, tp, metrics, nil
}

// newHTTPServer returns the server of h with its timeouts; its own errors
// (TLS handshakes, panics) go to logger.
func newHTTPServer(h config.HTTP, handler http.Handler, tlsConf *tls.Config, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           handler,
		TLSConfig:         tlsConf,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		ReadHeaderTimeout: h.ReadHeaderTimeout,
		ReadTimeout:       h.ReadTimeout,
		WriteTimeout:      h.WriteTimeout,
		IdleTimeout:       h.IdleTimeout,
	}
}

// shutdown stops accepting, lets the requests in flight finish, stops
// warming, tries to apply the recovery queue for http.drain_timeout and
// closes the cache.
func shutdown(ctx context.Context, cfg *config.Config, logger *slog.Logger, hs *http.Server, served chan error, c *tiercache.Cache, w *warming) error {
	logger.Info("tiercache shutting down", "timeout", cfg.HTTP.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.HTTP.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve HTTP: %w", err)
	}
	w.close()
	drain(ctx, cfg.HTTP.DrainTimeout, cfg.Cache.Recovery.JournalDir, logger, c)
	if err := c.Close(); err != nil {
		return fmt.Errorf("close the cache: %w", err)
	}
	logger.Info("tiercache stopped")
	return nil
}

// drain tries to apply the recovery queue for up to timeout, and logs
// what was applied and what was kept: in the journal in journalDir for
// the next start, or, without a journal, lost.
func drain(ctx context.Context, timeout time.Duration, journalDir string, logger *slog.Logger, c *tiercache.Cache) {
	if c.QueueLength() == 0 {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	start := time.Now()
	rep, err := c.Drain(dctx)
	attrs := []any{"applied", rep.Applied, "kept", rep.Kept, "took", time.Since(start).Round(time.Millisecond).String()}
	switch {
	case rep.Kept == 0:
	case journalDir == "":
		attrs = append(attrs, "kept_in", "memory only: lost at exit")
	case rep.Journaled == rep.Kept:
		attrs = append(attrs, "kept_in", "the journal in "+journalDir+", applied at the next start")
	default:
		// A journal write failed (logged at ERROR when it happened):
		// only part of what is kept survives the exit.
		attrs = append(attrs, "journaled", rep.Journaled, "lost_at_exit", rep.Kept-rep.Journaled,
			"kept_in", "the journal in "+journalDir+" (journaled part only)")
	}
	switch {
	case err != nil && rep.Kept > 0:
		logger.Warn("recovery queue not fully applied before stopping", append(attrs, "err", err)...)
	case rep.Kept > 0:
		logger.Warn("recovery queue not fully applied before stopping", attrs...)
	default:
		logger.Info("recovery queue applied before stopping", attrs...)
	}
}

// retryAfter is http.retry_after, else the breaker's open timeout.
func retryAfter(cfg *config.Config) time.Duration {
	if cfg.HTTP.RetryAfter > 0 {
		return cfg.HTTP.RetryAfter
	}
	d := cfg.Cache.Breaker.OpenTimeout
	if d <= 0 {
		d = tiercache.DefaultBreakerOpenTimeout
	}
	return time.Duration(math.Ceil(d.Seconds())) * time.Second
}

// serverTLS loads the listener's certificate and key. Both empty means
// plain HTTP (nil); package config refuses one without the other.
func serverTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load the TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// notInFleet keeps a command's short-lived cache out of the fleet: only
// serve publishes heartbeats and runs the canary.
func notInFleet(o *tiercache.Options) {
	o.Fleet, o.Canary = tiercache.FleetOptions{}, tiercache.CanaryOptions{}
}

// advertised is the address the fleet view shows for a listener: its own,
// with this host's name in place of an unspecified IP (":8080", "[::]:8080").
func advertised(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil && h != "" {
			host = h
		}
	}
	return net.JoinHostPort(host, port)
}

func cmpOr(s, def string) string {
	if s != "" {
		return s
	}
	return def
}
