package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/server"
)

const (
	defaultAddr = ":8080"
	// shutdownTimeout bounds the wait for in-flight requests on shutdown.
	shutdownTimeout = 10 * time.Second
)

// serveConfig is serve's configuration once flags and environment are
// merged.
type serveConfig struct {
	addr  string
	token string
	level slog.Level
	// tlsCert and tlsKey are the listener's certificate and key files;
	// empty means plain HTTP.
	tlsCert, tlsKey string
	timeouts        httpTimeouts
	// warmConfig is the warming configuration file; warming switches it
	// on (CACHE_WARMING_ENABLED).
	warmConfig string
	warming    bool
}

func runServe(ctx context.Context, s streams, args []string) int {
	fs := newFlagSet("serve", "tiercache serve [flags]",
		"run the HTTP cache service until interrupted. The L2 comes from the environment "+
			"(REDIS_URL, REDIS_SENTINEL_HOSTS, ...); without REDIS_URL it is an in-memory store")
	var (
		cfg   serveConfig
		level string
	)
	fs.StringVar(&cfg.addr, "addr", "", "listen `address` (default $TIERCACHE_ADDR, else "+defaultAddr+")")
	fs.StringVar(&cfg.token, "token", "", "bearer `token` that PUT, DELETE and POST requests must present\n(default $TIERCACHE_TOKEN, or the content of the file $TIERCACHE_TOKEN_FILE, which keep it out of\nthe process list; empty: no authentication)")
	fs.StringVar(&level, "log-level", "", "log `level`: debug, info, warn or error (default $TIERCACHE_LOG_LEVEL, else info)")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "serve HTTPS with this certificate `file` (PEM, chain included; default $TIERCACHE_TLS_CERT)")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "private key `file` of --tls-cert (PEM; default $TIERCACHE_TLS_KEY)")
	fs.StringVar(&cfg.warmConfig, "config", "", "warming configuration `file` (YAML, docs/warming.md; default $TIERCACHE_CONFIG);\nCACHE_WARMING_ENABLED=false loads it but runs nothing")
	if code, done := parseFlags(fs, args, s); done {
		return code
	}
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var err error
	if set["log-level"] {
		if cfg.level, err = parseLevel(level); err != nil {
			fmt.Fprintf(s.err, "tiercache serve: --log-level: %v\n", err)
			return exitUsage
		}
	} else if v := os.Getenv("TIERCACHE_LOG_LEVEL"); v != "" {
		if cfg.level, err = parseLevel(v); err != nil {
			fmt.Fprintf(s.err, "tiercache serve: TIERCACHE_LOG_LEVEL: %v\n", err)
			return exitError
		}
	}
	if !set["addr"] {
		cfg.addr = envOr("TIERCACHE_ADDR", defaultAddr)
	}
	if !set["token"] {
		if cfg.token, err = tokenFromEnv(); err != nil {
			fmt.Fprintf(s.err, "tiercache serve: %v\n", err)
			return exitError
		}
	}
	if !set["tls-cert"] && !set["tls-key"] {
		cfg.tlsCert, cfg.tlsKey = os.Getenv("TIERCACHE_TLS_CERT"), os.Getenv("TIERCACHE_TLS_KEY")
	}

	if !set["config"] {
		cfg.warmConfig = os.Getenv("TIERCACHE_CONFIG")
	}
	if cfg.warming, err = warmingEnabled(); err != nil {
		fmt.Fprintf(s.err, "tiercache serve: %v\n", err)
		return exitError
	}

	logger := slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: cfg.level}))
	if err := serve(ctx, cfg, logger); err != nil {
		fmt.Fprintf(s.err, "tiercache serve: %v\n", err)
		return exitError
	}
	return exitOK
}

// serve runs the service until ctx is cancelled, then shuts it down.
func serve(ctx context.Context, cfg serveConfig, logger *slog.Logger) error {
	opts, err := tiercache.OptionsFromEnv()
	if err != nil {
		return fmt.Errorf("configuration from the environment: %w", err)
	}
	opts.Logger = logger
	rec, metrics, err := server.NewMetrics()
	if err != nil {
		return err
	}
	opts.Recorder = rec
	c, err := tiercache.New(opts)
	if err != nil {
		return err
	}
	defer c.Close() // on early returns; Close is idempotent
	w, err := startWarming(c, cfg.warmConfig, cfg.warming, logger)
	if err != nil {
		return err
	}
	defer w.close()
	srv, err := server.New(server.Config{Cache: c, Token: cfg.token, Logger: logger, Metrics: metrics, Warmer: w.warmer()})
	if err != nil {
		return err
	}
	tlsConf, err := serverTLS(cfg.tlsCert, cfg.tlsKey)
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.addr)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:   srv.Handler(),
		TLSConfig: tlsConf,
		ErrorLog:  slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	cfg.timeouts.apply(hs)
	// Redis.String redacts credentials; the token is only reported as set.
	logger.Info("tiercache listening", "addr", ln.Addr().String(), "l2", opts.Redis.String(),
		"namespace", c.Namespace(), "auth", cfg.token != "", "tls", tlsConf != nil)

	served := make(chan error, 1)
	go func() {
		if tlsConf != nil {
			served <- hs.ServeTLS(ln, "", "")
			return
		}
		served <- hs.Serve(ln)
	}()
	select {
	case err := <-served:
		return fmt.Errorf("serve HTTP: %w", err)
	case <-ctx.Done():
	}

	logger.Info("tiercache shutting down", "timeout", shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve HTTP: %w", err)
	}
	w.close()
	if err := c.Close(); err != nil {
		return fmt.Errorf("close the cache: %w", err)
	}
	logger.Info("tiercache stopped")
	return nil
}

func parseLevel(v string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not one of debug, info, warn, error", v)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
