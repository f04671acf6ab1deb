package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/tiercache/tiercache/internal/redisproc"
)

// Server is one redis-server or redis-sentinel process. Its methods are
// safe for concurrent use.
type Server struct {
	// Addr is "127.0.0.1:<Port>". It stays the same across Restart.
	Addr string
	// Port is the TCP port the process listens on.
	Port int
	// Dir is the process's own temporary directory: its working
	// directory, its Redis dir, its log (redis.log) and any config file.
	// Close removes it.
	Dir string

	bin      string   // "redis-server" or "redis-sentinel"
	args     []string // arguments of every start, Restart included
	username string   // ACL user of Do's AUTH; blank for requirepass
	password string   // from --requirepass or launch, sent as AUTH by Do

	mu     sync.Mutex
	proc   *redisproc.Process // nil while not running
	pid    int                // last process id, kept after exit for checks
	paused bool
	closed bool
}

// launch says how to start a process once its directory and port are
// known.
type launch struct {
	bin  string
	bus  bool // the cluster bus port (port+10000) must be free as well
	args func(dir string, port int) ([]string, error)
	// port picks the port of each attempt; nil means freePort. Tests
	// set it to hand out a taken port.
	port func(bus bool) (int, error)
	// username and password are what Do authenticates with. A blank
	// password means the one of --requirepass, if any.
	username, password string
}

// StartStandalone starts a redis-server with persistence off and returns
// once it answers PING. The defaults are --save "" --appendonly no --bind
// 127.0.0.1 --dir <Dir>; args come after them, so they may override any of
// them but --port. The caller must Close the server.
func StartStandalone(args ...string) (*Server, error) {
	return start(launch{bin: "redis-server", args: func(dir string, port int) ([]string, error) {
		return serverArgs(dir, port, args...), nil
	}})
}

// NewStandalone is StartStandalone for a test: it calls Require, fails the
// test when the server does not start, and closes it in t.Cleanup.
func NewStandalone(t testing.TB, args ...string) *Server {
	t.Helper()
	Require(t)
	s, err := StartStandalone(args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// serverArgs returns the redis-server command line for a node: defaults,
// then extra, then the port, which the harness owns.
func serverArgs(dir string, port int, extra ...string) []string {
	args := []string{
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		// Start a replica's full sync at once instead of after the
		// default 5 s wait for more replicas.
		"--repl-diskless-sync-delay", "0",
	}
	args = append(args, extra...)
	return append(args, "--port", strconv.Itoa(port))
}

// start creates the directory, picks a port and starts the process,
// picking a new port when the chosen one was taken before Redis bound it.
func start(l launch) (*Server, error) {
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	s := &Server{Dir: dir, bin: l.bin}
	if l.port == nil {
		l.port = freePort
	}
	err = redisproc.StartOnFreePort(bindAttempts, func() (int, error) { return l.port(l.bus) }, func(port int) error {
		args, err := l.args(dir, port)
		if err != nil {
			return fmt.Errorf("redistest: %w", err)
		}
		s.Port, s.Addr, s.args = port, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), args
		s.username, s.password = l.username, l.password
		if s.password == "" {
			s.password = flagValue(args, "--requirepass")
		}
		return s.spawnAndWait(func() error { return s.waitPing() })
	})
	if err != nil {
		os.RemoveAll(dir)
		if errors.Is(err, redisproc.ErrNoFreePort) {
			return nil, fmt.Errorf("redistest: start %s: %w", l.bin, err)
		}
		return nil, err
	}
	return s, nil
}

// spawnAndWait starts the process and waits until ready says it serves,
// killing it when it does not.
func (s *Server) spawnAndWait(ready func() error) error {
	err := s.spawn(true)
	if err == nil {
		err = ready()
	}
	if err != nil {
		_ = s.Kill()
	}
	return err
}

// flagValue returns the value after the last occurrence of name in args.
func flagValue(args []string, name string) string {
	v := ""
	for i := 0; i+1 < len(args); i++ {
		if args[i] == name {
			v = args[i+1]
		}
	}
	return v
}

func (s *Server) logPath() string { return filepath.Join(s.Dir, "redis.log") }

// spawn starts the process with its output in redis.log, which a first
// start truncates and a restart appends to.
func (s *Server) spawn(truncate bool) error {
	p, err := redisproc.Start(s.bin, s.args, s.Dir, s.logPath(), truncate)
	if err != nil {
		return fmt.Errorf("redistest: %w", err)
	}
	s.mu.Lock()
	s.proc, s.pid, s.paused = p, p.Pid, false
	s.mu.Unlock()
	return nil
}

// waitPing waits until the process answers PING. It stops early when the
// process exits, with redisproc.ErrPortInUse when the log says why.
func (s *Server) waitPing() error {
	return s.waitAnswer("PING", func(ctx context.Context) (any, error) { return s.DoContext(ctx, "PING") })
}

// waitAnswer polls ping until it answers PONG, and stops early when the
// process exits. If the port belongs to another process, a probe may hang
// there while ours exits, so its exit ends the probe.
func (s *Server) waitAnswer(what string, ping func(ctx context.Context) (any, error)) error {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	return poll(startTimeout, fmt.Sprintf("%s on %s: wait for %s", s.bin, s.Addr, what), func() error {
		if err := p.Exited(); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), pollTimeout)
		defer cancel()
		go func() {
			select {
			case <-p.Done():
				cancel()
			case <-ctx.Done():
			}
		}()
		reply, err := ping(ctx)
		if err != nil {
			return err
		}
		if reply != "PONG" {
			return fmt.Errorf("PING answered %v", reply)
		}
		return nil
	})
}

// Kill sends SIGKILL to the process (and any child it forked) and waits
// until it has exited. Killing a server that is not running does nothing.
func (s *Server) Kill() error {
	s.mu.Lock()
	p := s.proc
	s.proc, s.paused = nil, false
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	if err := p.Kill(killTimeout); err != nil {
		return fmt.Errorf("redistest: kill %s on %s: %w", s.bin, s.Addr, err)
	}
	return nil
}

// Restart kills the process if it runs and starts it again on the same
// port, with the same arguments and directory. It returns once the server
// answers PING and, for a cluster node, reports cluster_state:ok and names
// the same masters as its peers (a master that was failed over while down
// must first learn that it is now a replica) and, for a replica, reports
// master_link_status:up. Restarting a replica whose master is down
// therefore fails after a timeout.
//
// Persistence is off by default, so a restarted server comes back empty.
func (s *Server) Restart() error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return fmt.Errorf("redistest: restart %s on %s: server is closed", s.bin, s.Addr)
	}
	if err := s.Kill(); err != nil {
		return err
	}
	if err := s.spawn(false); err != nil {
		return err
	}
	if err := s.waitPing(); err != nil {
		return err
	}
	if s.bin != "redis-server" {
		return nil
	}
	return s.waitRejoined()
}

// waitRejoined waits until a restarted cluster node sees a healthy
// cluster and a restarted replica has synced with its master.
func (s *Server) waitRejoined() error {
	return poll(topologyTimeout, s.Addr+": wait to rejoin", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), pollTimeout)
		defer cancel()
		info, err := s.InfoContext(ctx, "")
		if err != nil {
			return err
		}
		if info["cluster_enabled"] == "1" {
			if err := checkClusterState(ctx, s); err != nil {
				return err
			}
			if err := checkClusterAgrees(ctx, s); err != nil {
				return err
			}
		}
		if info["role"] == "slave" && info["master_link_status"] != "up" {
			return fmt.Errorf("master_link_status:%s", info["master_link_status"])
		}
		return nil
	})
}

// Pause stops the process with SIGSTOP: it keeps its port but answers
// nothing until Resume.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP, true) }

// Resume continues a paused process with SIGCONT.
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT, false) }

func (s *Server) signal(sig syscall.Signal, paused bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return fmt.Errorf("redistest: signal %s on %s: not running", s.bin, s.Addr)
	}
	if err := s.proc.Signal(sig); err != nil {
		return fmt.Errorf("redistest: signal %s on %s: %w", s.bin, s.Addr, err)
	}
	s.paused = paused
	return nil
}

// live reports whether the process runs and is not paused.
func (s *Server) live() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.paused
}

// Close kills the process, waits for it and removes Dir. Calling it again
// does nothing.
func (s *Server) Close() {
	s.mu.Lock()
	closed := s.closed
	s.closed = true
	s.mu.Unlock()
	if closed {
		return
	}
	_ = s.Kill()
	os.RemoveAll(s.Dir)
}

// Do sends one command on a fresh connection and returns the reply: a
// string, an int64, a []any, or nil for a null reply. An error reply is
// returned as a ReplyError. When the server was started with
// --requirepass, or with an ACL user (StartProduction: the admin), Do
// authenticates first. A call gives up after 10 s.
func (s *Server) Do(args ...string) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), doTimeout)
	defer cancel()
	return s.DoContext(ctx, args...)
}

// DoContext is Do bounded by ctx instead of the default timeout.
func (s *Server) DoContext(ctx context.Context, args ...string) (any, error) {
	return roundTripAs(ctx, s.Addr, s.username, s.password, args)
}

// Info returns the given INFO section as a map from field to value. An empty
// section means the default sections.
func (s *Server) Info(section string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), doTimeout)
	defer cancel()
	return s.InfoContext(ctx, section)
}

// InfoContext is Info bounded by ctx instead of the default timeout.
func (s *Server) InfoContext(ctx context.Context, section string) (map[string]string, error) {
	args := []string{"INFO"}
	if section != "" {
		args = append(args, section)
	}
	reply, err := s.DoContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	text, ok := reply.(string)
	if !ok {
		return nil, fmt.Errorf("redistest: INFO on %s answered %T", s.Addr, reply)
	}
	return parseInfo(text), nil
}
