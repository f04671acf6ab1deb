package lab

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
	"time"

	"github.com/redis/rueidis"
	"github.com/tiercache/tiercache/internal/redisproc"
)

const (
	// startTimeout bounds the wait for a fresh process to answer PING.
	startTimeout = 15 * time.Second
	// stopTimeout bounds a graceful stop (SIGTERM: Redis saves and exits)
	// before the process is killed.
	stopTimeout = 10 * time.Second
	// killTimeout bounds the wait for a killed process to be reaped.
	killTimeout = 10 * time.Second
	// probeTimeout bounds one command sent while polling.
	probeTimeout = 2 * time.Second
	// pollInterval is the pause between two probes of a condition.
	pollInterval = 50 * time.Millisecond
	// bindAttempts is how many ports a start tries when another process
	// takes the chosen port first.
	bindAttempts = 5
)

// Node is one redis-server or redis-sentinel process of a lab. Its methods
// are safe for concurrent use.
type Node struct {
	// Name says what the node is: "master", "replica-1", "sentinel-2",
	// "node-3".
	Name string
	// Addr is "127.0.0.1:<Port>"; it stays the same across Start.
	Addr string
	// Port is the TCP port the node listens on.
	Port int
	// Dir is the node's working directory: its configuration file, data
	// files and log (redis.log).
	Dir string

	bin            string
	conf           string // path of the configuration file
	user, password string // credentials of Do

	mu   sync.Mutex
	proc *redisproc.Process // nil while not running
}

// PID returns the process id of the running process, or 0.
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return 0
	}
	return n.proc.Pid
}

// Running reports whether the node's process runs.
func (n *Node) Running() bool { return n.PID() != 0 }

func (n *Node) logPath() string { return filepath.Join(n.Dir, "redis.log") }

// spawn starts the process, appending its output to redis.log. The
// process leads its own group, which keeps a terminal's Ctrl-C away from
// Redis so that the lab stops the nodes in order.
func (n *Node) spawn() error {
	p, err := redisproc.Start(n.bin, []string{n.conf}, n.Dir, n.logPath(), false)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	n.mu.Lock()
	n.proc = p
	n.mu.Unlock()
	return nil
}

// Start starts the node's process if it is not running and waits until it
// answers PING.
func (n *Node) Start(ctx context.Context) error {
	if n.Running() {
		return nil
	}
	if err := n.spawn(); err != nil {
		return err
	}
	return n.waitPing(ctx)
}

// waitPing waits until the node answers PING, and stops early when the
// process exits.
func (n *Node) waitPing(ctx context.Context) error {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	return poll(ctx, n.Name+" "+n.Addr+": wait for PING", func(ctx context.Context) error {
		if err := p.Exited(); err != nil {
			return err
		}
		return n.Do(ctx, "PING").Error()
	})
}

// LogTail returns the last lines of the node's log.
func (n *Node) LogTail() string { return redisproc.LogTail(n.logPath()) }

// Stop ends the process gracefully (SIGTERM: Redis writes its snapshot and
// exits) and kills it if it has not exited after a while. Stopping a node
// that is not running does nothing.
func (n *Node) Stop() error {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil {
		return nil
	}
	// The signal is repeated: one that arrives while Redis finishes a
	// background rewrite can go unnoticed.
	resend := time.NewTicker(time.Second)
	defer resend.Stop()
	deadline := time.After(stopTimeout)
	for p.Signal(syscall.SIGTERM) == nil {
		select {
		case <-p.Done():
			n.forget(p)
			// A child forked for a save or a rewrite may outlive it.
			_ = p.Signal(syscall.SIGKILL)
			return nil
		case <-resend.C:
			continue
		case <-deadline:
		}
		break
	}
	return n.Kill()
}

// Kill sends SIGKILL to the process and any child it forked, and waits
// until it has exited: the crash of a drill. Killing a node that is not
// running does nothing.
func (n *Node) Kill() error {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil {
		return nil
	}
	if err := p.Kill(killTimeout); err != nil {
		return fmt.Errorf("lab: kill %s %s: %w", n.Name, n.Addr, err)
	}
	n.forget(p)
	return nil
}

// forget clears proc once it has exited, unless a restart replaced it.
func (n *Node) forget(proc *redisproc.Process) {
	n.mu.Lock()
	if n.proc == proc {
		n.proc = nil
	}
	n.mu.Unlock()
}

// Do sends one command to the node on a fresh connection, authenticated as
// the lab's administrator (the "admin" ACL user on data nodes, the
// sentinels' password on sentinels).
func (n *Node) Do(ctx context.Context, args ...string) rueidis.RedisResult {
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       []string{n.Addr},
		Username:          n.user,
		Password:          n.password,
		DisableCache:      true,
		DisableRetry:      true,
		ForceSingleClient: true,
		ClientSetInfo:     rueidis.DisableClientSetInfo,
		Dialer:            net.Dialer{Timeout: probeTimeout},
		ConnWriteTimeout:  probeTimeout,
	})
	if err != nil {
		return rueidis.NewErrorResult(err)
	}
	defer c.Close()
	return c.Do(ctx, c.B().Arbitrary(args...).Build())
}

// Info returns an INFO section of the node as a map from field to value.
func (n *Node) Info(ctx context.Context, section string) (map[string]string, error) {
	text, err := n.Do(ctx, "INFO", section).ToString()
	if err != nil {
		return nil, err
	}
	return parseInfo(text), nil
}

// parseInfo turns the text of an INFO or CLUSTER INFO reply into a map.
func parseInfo(text string) map[string]string { return redisproc.ParseInfo(text) }

// startNode creates the node's directory under parent and starts the
// process on a free port, trying another port when the chosen one was
// taken before the process bound it. conf renders the configuration file
// for the node's directory and port; user and password are the
// credentials of Do.
func startNode(ctx context.Context, parent, name, bin string, bus bool, user, password string, conf func(dir string, port int) string) (*Node, error) {
	dir := filepath.Join(parent, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	n := &Node{Name: name, Dir: dir, bin: bin, conf: filepath.Join(dir, confName(bin)), user: user, password: password}
	err := redisproc.StartOnFreePort(bindAttempts, func() (int, error) { return redisproc.FreePort(bus) }, func(port int) error {
		n.Port, n.Addr = port, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err := os.WriteFile(n.conf, []byte(conf(dir, port)), 0o600); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		err := n.Start(ctx)
		if err != nil {
			_ = n.Kill()
			if errors.Is(err, redisproc.ErrPortInUse) {
				_ = os.Remove(n.logPath())
			}
		}
		return err
	})
	if errors.Is(err, redisproc.ErrNoFreePort) {
		return nil, fmt.Errorf("lab: start %s: %w", name, err)
	}
	if err != nil {
		return nil, err
	}
	return n, nil
}

func confName(bin string) string {
	if bin == "redis-sentinel" {
		return "sentinel.conf"
	}
	return "redis.conf"
}

// errGiveUp, wrapped into a condition's error, ends poll at once.
var errGiveUp = redisproc.ErrGiveUp

// poll calls cond, each time with a context bounded by probeTimeout, until
// it returns nil, ctx ends or cond gives up; it then returns cond's last
// error.
func poll(ctx context.Context, what string, cond func(ctx context.Context) error) error {
	if err := redisproc.Poll(ctx, pollInterval, probeTimeout, cond); err != nil {
		return fmt.Errorf("lab: %s: %w", what, err)
	}
	return nil
}
