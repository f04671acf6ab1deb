package cli

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tiercache/tiercache/config"
	"github.com/tiercache/tiercache/internal/tiercachetest"
)

// The service benchmarks (bench_serve_test.go) run each server under test
// in a process of its own, as a deployment does, so that its memory and
// CPU can be read from /proc and the generator's garbage collections do
// not land on it. The process is this test binary, started again with
// helperEnv naming what it serves.
const (
	helperEnv = "TIERCACHE_BENCH_HELPER" // "serve" or "bare"
	// helperProfileEnv names a file for the helper's CPU profile.
	helperProfileEnv = "TIERCACHE_BENCH_CPUPROFILE"
	// helperHeapEnv names a file the helper writes its heap profile to
	// on SIGUSR1.
	helperHeapEnv = "TIERCACHE_BENCH_HEAPPROFILE"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	os.Exit(m.Run())
}

// bareBody is what the bare handler answers: 100 constant bytes.
var bareBody = bytes.Repeat([]byte("v"), 100)

// runHelper serves until SIGTERM: serve's command with the configuration
// in the environment, or a bare net/http handler with serve's HTTP server
// settings that answers every request with bareBody.
func runHelper(mode string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if path := os.Getenv(helperProfileEnv); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	if path := os.Getenv(helperHeapEnv); path != "" {
		go heapOnSignal(ctx, path)
	}
	switch mode {
	case "serve":
		return Run(ctx, []string{"serve"}, os.Stdout, os.Stderr)
	case "bare":
		return runBare(ctx)
	}
	fmt.Fprintf(os.Stderr, "unknown helper %q\n", mode)
	return 2
}

// heapOnSignal writes a heap profile to path on every SIGUSR1.
func heapOnSignal(ctx context.Context, path string) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	for {
		select {
		case <-ctx.Done():
			return
		case <-sig:
			if f, err := os.Create(path); err == nil {
				_ = pprof.Lookup("heap").WriteTo(f, 0)
				_ = f.Close()
			}
		}
	}
}

func runBare(ctx context.Context) int {
	cfg, err := config.Load(config.Sources{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	hs := newHTTPServer(cfg.HTTP, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(bareBody)
	}), nil, logger)
	logger.Info("tiercache listening", "addr", ln.Addr().String())
	go func() { <-ctx.Done(); _ = hs.Close() }()
	_ = hs.Serve(ln)
	return 0
}

// helper is a running helper process.
type helper struct {
	cmd    *exec.Cmd
	addr   string
	stderr *tiercachetest.Buffer
	done   chan error
}

// startHelper starts a helper serving mode with the environment env (and
// nothing of the benchmark's own but PATH and HOME) and waits until it
// listens.
func startHelper(b *testing.B, mode string, env ...string) *helper {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append([]string{helperEnv + "=" + mode, "PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"TIERCACHE_ADDR=127.0.0.1:0", "STATE_DIRECTORY=" + b.TempDir()}, env...)
	if d := os.Getenv("TIERCACHE_BENCH_HELPER_GODEBUG"); d != "" {
		cmd.Env = append(cmd.Env, "GODEBUG="+d) // such as gctrace=1
	}
	h := &helper{cmd: cmd, stderr: &tiercachetest.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = h.stderr
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { h.done <- cmd.Wait() }()
	b.Cleanup(h.stop)
	deadline := time.Now().Add(runTimeout)
	for {
		if m := listeningLine.FindStringSubmatch(h.stderr.String()); m != nil {
			h.addr = m[1] + m[2]
			if mode == "serve" {
				h.waitReady(b)
			}
			return h
		}
		select {
		case err := <-h.done:
			h.done <- err
			b.Fatalf("%s helper exited before listening: %v\n%s", mode, err, h.stderr)
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s helper: no startup line after %v:\n%s", mode, runTimeout, h.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitReady waits until serve answers /readyz with 200: it listens
// before its first connection to Redis, and a preload sent before that
// would be queued or refused by the breaker, not written.
func (h *helper) waitReady(b *testing.B) {
	b.Helper()
	deadline := time.Now().Add(runTimeout)
	for {
		resp, err := http.Get("http://" + h.addr + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("serve not ready after %v (%v):\n%s", runTimeout, err, h.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the helper with SIGTERM and waits for it (idempotent). With
// TIERCACHE_BENCH_HELPER_LOGS set to a directory, the helper's stderr is
// saved there as <mode>-<pid>.log.
func (h *helper) stop() {
	if h.cmd.Process == nil {
		return
	}
	defer func() {
		if dir := os.Getenv("TIERCACHE_BENCH_HELPER_LOGS"); dir != "" {
			name := fmt.Sprintf("%s-%d.log", strings.TrimPrefix(h.cmd.Env[0], helperEnv+"="), h.cmd.Process.Pid)
			_ = os.WriteFile(filepath.Join(dir, name), []byte(h.stderr.String()), 0o644)
		}
	}()
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-h.done:
		h.done <- err
	case <-time.After(runTimeout):
		_ = h.cmd.Process.Kill()
	}
}

// procStatus returns a field of /proc/<pid>/status in bytes ("VmRSS").
func procStatus(pid int, field string) int64 {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// heapProfile asks the helper for its heap profile (helperHeapEnv) and
// waits up to a second for it to be written.
func (h *helper) heapProfile(path string) {
	_ = os.Remove(path)
	_ = h.cmd.Process.Signal(syscall.SIGUSR1)
	for range 100 {
		if st, err := os.Stat(path); err == nil && st.Size() > 0 {
			time.Sleep(50 * time.Millisecond) // let the writer finish
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rss is the helper's resident memory in bytes.
func (h *helper) rss() int64 { return procStatus(h.cmd.Process.Pid, "VmRSS") }

// fds is the number of the helper's open file descriptors.
func (h *helper) fds() int {
	ents, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(h.cmd.Process.Pid), "fd"))
	return len(ents)
}

// cpu is the helper's CPU time so far (user + system).
func (h *helper) cpu() time.Duration { return procCPU(h.cmd.Process.Pid) }

// procCPU reads a process's user and system time from /proc/<pid>/stat.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}
