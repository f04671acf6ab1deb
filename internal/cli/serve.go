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
	fs.StringVar(&cfg.token, "token", "", "bearer `token` that PUT, DELETE and POST requests must present\n(default $TIERCACHE_TOKEN, which keeps it out of the process list; empty: no authentication)")
	fs.StringVar(&level, "log-level", "", "log `level`: debug, info, warn or error (default $TIERCACHE_LOG_LEVEL, else info)")
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
		cfg.token = os.Getenv("TIERCACHE_TOKEN")
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
	c, err := tiercache.New(opts)
	if err != nil {
		return err
	}
	defer c.Close() // on early returns; Close is idempotent
	srv, err := server.New(server.Config{Cache: c, Token: cfg.token, Logger: logger})
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.addr)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	// Redis.String redacts credentials; the token is only reported as set.
	logger.Info("tiercache listening", "addr", ln.Addr().String(), "l2", opts.Redis.String(),
		"namespace", c.Namespace(), "auth", cfg.token != "")

	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
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
