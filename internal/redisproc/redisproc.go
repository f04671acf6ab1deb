// Package redisproc starts and stops local redis-server and redis-sentinel
// processes, and polls them until they are ready. It is the piece that
// internal/redistest (real Redis for tests) and internal/lab (`tiercache
// lab`) share. It does not import testing, so the binary may link it.
package redisproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// BusOffset is the distance from a cluster node's port to its bus port.
const BusOffset = 10000

var (
	// ErrGiveUp, wrapped into a condition's error, ends Poll at once, for
	// failures that waiting cannot cure, such as a process that exited.
	ErrGiveUp = errors.New("will not recover")
	// ErrExited marks a process that exited while it was expected to run.
	ErrExited = errors.New("process exited")
	// ErrPortInUse marks a start that failed because another process
	// bound the port first; the caller retries on another port.
	ErrPortInUse = errors.New("port already in use")
	// ErrNoFreePort marks a start that found every port it tried taken.
	ErrNoFreePort = errors.New("no free port")
)

// FreePort returns a loopback port that was free a moment ago. With bus
// set, port+BusOffset (a cluster node's bus port) was free as well.
// Another process may still take it before Redis binds; callers retry on
// ErrPortInUse.
func FreePort(bus bool) (int, error) {
	var lastErr error
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if !bus {
			l.Close()
			return port, nil
		}
		if port+BusOffset > 65535 {
			l.Close()
			lastErr = fmt.Errorf("bus port of %d out of range", port)
			continue
		}
		bl, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+BusOffset)))
		l.Close()
		if err != nil {
			lastErr = err
			continue
		}
		bl.Close()
		return port, nil
	}
	return 0, fmt.Errorf("find a free port pair: %w", lastErr)
}

// Poll calls cond every interval until it returns nil, ctx ends or cond's
// error wraps ErrGiveUp, and then returns cond's last error. A positive
// probe bounds each call's context, so that one unresponsive node does
// not eat the whole deadline.
func Poll(ctx context.Context, interval, probe time.Duration, cond func(ctx context.Context) error) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if probe > 0 {
			pctx, cancel = context.WithTimeout(ctx, probe)
		}
		err := cond(pctx)
		cancel()
		if err == nil || errors.Is(err, ErrGiveUp) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// ParseInfo turns the text of an INFO or CLUSTER INFO reply into a map
// from field to value. Section headers and blank lines are skipped. Over
// RESP3 the text comes as a verbatim string, with a "txt:" prefix.
func ParseInfo(text string) map[string]string {
	text = strings.TrimPrefix(text, "txt:")
	m := make(map[string]string)
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// Process is a started redis-server or redis-sentinel.
type Process struct {
	// Pid is the process id; the process leads its own process group.
	Pid int
	// Log is the file that receives its standard output and error.
	Log string

	done chan struct{}
}

// Start runs bin with args in dir, appending its output to logPath (which
// truncate empties first). The process leads its own process group, so
// that a terminal's Ctrl-C does not reach it and Kill reaches the
// children Redis forks for saves and replication, and it is killed when
// the calling process dies.
func Start(bin string, args []string, dir, logPath string, truncate bool) (*Process, error) {
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if truncate {
		flags |= os.O_TRUNC
	}
	logf, err := os.OpenFile(logPath, flags, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child keeps its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &Process{Pid: cmd.Process.Pid, Log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Done is closed once the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Signal sends sig to the process's group.
func (p *Process) Signal(sig syscall.Signal) error {
	if err := syscall.Kill(-p.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// Kill sends SIGKILL to the process's group (a paused process is
// continued first, so that it can die) and waits up to timeout until the
// process has been reaped.
func (p *Process) Kill(timeout time.Duration) error {
	_ = p.Signal(syscall.SIGCONT)
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("still running after %v", timeout)
	}
}

// Exited returns nil while the process runs. Once it has exited, it
// returns an error wrapping ErrGiveUp and ErrExited, and ErrPortInUse when
// the log says that the port was taken, with the log's last lines.
func (p *Process) Exited() error {
	select {
	case <-p.done:
	default:
		return nil
	}
	tail := LogTail(p.Log)
	if strings.Contains(tail, "Address already in use") {
		return fmt.Errorf("%w: %w, %w; log:\n%s", ErrGiveUp, ErrPortInUse, ErrExited, tail)
	}
	return fmt.Errorf("%w: %w; log:\n%s", ErrGiveUp, ErrExited, tail)
}

// LogTail returns the last 20 lines of a log file, for error messages.
func LogTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// StartOnFreePort calls start with a port from freePort until start
// returns nil or an error that does not wrap ErrPortInUse, at most
// attempts times: another process may take a free port before Redis
// binds it. start cleans up after its own failure. When the attempts run
// out, the error wraps ErrNoFreePort.
func StartOnFreePort(attempts int, freePort func() (int, error), start func(port int) error) error {
	for range attempts {
		port, err := freePort()
		if err != nil {
			return err
		}
		if err := start(port); !errors.Is(err, ErrPortInUse) {
			return err
		}
	}
	return fmt.Errorf("%w after %d attempts", ErrNoFreePort, attempts)
}

// AgreedMaster returns the master address that every running sentinel
// reports through masterAddr, or an error while they disagree. With no
// sentinel running, the error wraps ErrGiveUp.
func AgreedMaster[S any](ctx context.Context, sentinels []S, running func(S) bool,
	masterAddr func(ctx context.Context, sn S) (string, error)) (string, error) {
	agreed := ""
	for _, sn := range sentinels {
		if !running(sn) {
			continue
		}
		addr, err := masterAddr(ctx, sn)
		if err != nil {
			return "", err
		}
		if agreed != "" && addr != agreed {
			return "", fmt.Errorf("sentinels disagree: %s and %s", agreed, addr)
		}
		agreed = addr
	}
	if agreed == "" {
		return "", fmt.Errorf("%w: no sentinel is running", ErrGiveUp)
	}
	return agreed, nil
}
