package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// faultTimeout bounds a request that a fault is expected to stall, and
// the wait for a connection to fail.
const faultTimeout = 300 * time.Millisecond

// TestProxy is not parallel: its final check counts every goroutine that
// runs toxiproxy code, so no other proxy may run meanwhile.
func TestProxy(t *testing.T) {
	s := NewStandalone(t)

	t.Run("Forward", func(t *testing.T) {
		p := NewProxy(t, s.Addr)
		if p.Upstream != s.Addr || !strings.HasPrefix(p.Addr, "127.0.0.1:") || p.Addr == s.Addr {
			t.Fatalf("Addr = %s, Upstream = %s, server on %s", p.Addr, p.Upstream, s.Addr)
		}
		mustProxyDo(t, p, "PONG", "PING")
		mustProxyDo(t, p, "OK", "SET", "proxied", "v")
		mustDo(t, s, "v", "GET", "proxied")
	})

	t.Run("Latency", func(t *testing.T) {
		p := NewProxy(t, s.Addr)
		c := dialConn(t, p.Addr)
		const d = 100 * time.Millisecond
		if err := p.Latency(d); err != nil {
			t.Fatal(err)
		}
		// Each direction is delayed, on open and new connections alike.
		if rtt := c.timedPing(t); rtt < 2*d {
			t.Errorf("PING on an open connection took %v with latency %v, want at least %v", rtt, d, 2*d)
		}
		if rtt := timedPing(t, p.Addr); rtt < 2*d {
			t.Errorf("PING on a new connection took %v with latency %v, want at least %v", rtt, d, 2*d)
		}
		// A second call replaces the latency; stacked, the round trip
		// would take at least 2*(d + d/2).
		if err := p.Latency(d / 2); err != nil {
			t.Fatal(err)
		}
		if rtt := timedPing(t, p.Addr); rtt < d || rtt >= 3*d {
			t.Errorf("PING took %v after Latency(%v), want at least %v and less than %v", rtt, d/2, d, 3*d)
		}
		if err := p.Heal(); err != nil {
			t.Fatal(err)
		}
		if rtt := c.timedPing(t); rtt >= d {
			t.Errorf("PING took %v after Heal, want less than the %v it took with latency", rtt, d)
		}
		if err := p.Latency(-time.Second); err == nil {
			t.Error("Latency(-1s) succeeded")
		}
	})

	t.Run("ResetPeer", func(t *testing.T) {
		p := NewProxy(t, s.Addr)
		c := dialConn(t, p.Addr)
		c.mustPing(t)
		if err := p.ResetPeer(); err != nil {
			t.Fatal(err)
		}
		c.assertReset(t)
		// The proxy accepts again as soon as ResetPeer returns, and the
		// new connection lasts.
		c = dialConn(t, p.Addr)
		c.mustPing(t)
		c.mustPing(t)
	})

	t.Run("Blackhole", func(t *testing.T) {
		p := NewProxy(t, s.Addr)
		c := dialConn(t, p.Addr)
		c.mustPing(t)
		if err := p.Blackhole(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.do(faultTimeout, "PING"); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("PING on an open connection in a black hole: err = %v, want a timeout", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
		defer cancel()
		if _, err := roundTrip(ctx, p.Addr, "", []string{"PING"}); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("PING on a new connection in a black hole: err = %v, want a deadline error", err)
		}
		if err := p.Heal(); err != nil {
			t.Fatal(err)
		}
		// The open connection lost its PING, so Heal closes it.
		c.assertReset(t)
		mustProxyDo(t, p, "PONG", "PING")
	})

	t.Run("DisableEnable", func(t *testing.T) {
		p := NewProxy(t, s.Addr)
		addr := p.Addr
		c := dialConn(t, p.Addr)
		c.mustPing(t)
		for range 2 {
			if err := p.Disable(); err != nil {
				t.Fatal(err)
			}
		}
		c.assertReset(t)
		assertConnRefused(t, p.Addr)
		// ResetPeer must not enable a disabled proxy.
		if err := p.ResetPeer(); err != nil {
			t.Fatal(err)
		}
		assertConnRefused(t, p.Addr)
		for range 2 {
			if err := p.Enable(); err != nil {
				t.Fatal(err)
			}
		}
		if p.Addr != addr {
			t.Errorf("Addr after Enable = %s, want %s", p.Addr, addr)
		}
		mustProxyDo(t, p, "PONG", "PING")
	})

	t.Run("Close", func(t *testing.T) {
		p, err := StartProxy(s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		c := dialConn(t, p.Addr)
		c.mustPing(t)
		p.Close()
		p.Close()
		c.assertReset(t)
		assertConnRefused(t, p.Addr)
		for name, op := range map[string]func() error{
			"Enable": p.Enable, "ResetPeer": p.ResetPeer, "Heal": p.Heal, "Blackhole": p.Blackhole,
		} {
			if err := op(); err == nil {
				t.Errorf("%s after Close succeeded", name)
			}
		}
	})

	t.Run("BadUpstream", func(t *testing.T) {
		// Nothing listens on the upstream port: the proxy accepts and
		// closes the connection at once, since it cannot dial upstream.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		upstream := l.Addr().String()
		l.Close()
		p := NewProxy(t, upstream)
		ctx, cancel := context.WithTimeout(context.Background(), doTimeout)
		defer cancel()
		if _, err := roundTrip(ctx, p.Addr, "", []string{"PING"}); err == nil || ctx.Err() != nil {
			t.Errorf("PING through a proxy to a closed port: err = %v, want the connection closed at once", err)
		}
	})

	// Every subtest has closed its proxy; the goroutines that served its
	// connections must all end.
	err := poll(5*time.Second, "wait for the proxy goroutines to end", func() error {
		if n := proxyGoroutines(); n > 0 {
			return fmt.Errorf("%d goroutines still run toxiproxy code", n)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// proxyGoroutines counts the goroutines running toxiproxy code.
func proxyGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/Shopify/toxiproxy/") {
			count++
		}
	}
	return count
}

func mustProxyDo(t *testing.T, p *Proxy, want any, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), doTimeout)
	defer cancel()
	got, err := roundTrip(ctx, p.Addr, "", args)
	if err != nil {
		t.Fatalf("%s through %s: %v", strings.Join(args, " "), p.Addr, err)
	}
	if !equal(got, want) {
		t.Fatalf("%s through %s = %#v, want %#v", strings.Join(args, " "), p.Addr, got, want)
	}
}

// timedPing sends PING on a fresh connection and returns how long the
// round trip took, dial included.
func timedPing(t *testing.T, addr string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), doTimeout)
	defer cancel()
	start := time.Now()
	reply, err := roundTrip(ctx, addr, "", []string{"PING"})
	if err != nil || reply != "PONG" {
		t.Fatalf("PING through %s = %v, %v", addr, reply, err)
	}
	return time.Since(start)
}

func assertConnRefused(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		conn.Close()
		t.Fatalf("%s accepts connections", addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s: err = %v, want ECONNREFUSED", addr, err)
	}
}

// conn is one RESP connection kept open across calls, which roundTrip
// does not do, to watch what a fault does to a connection that exists.
type conn struct {
	net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func dialConn(t *testing.T, addr string) *conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &conn{Conn: c, r: bufio.NewReader(c), w: bufio.NewWriter(c)}
}

// do sends one command and reads its reply within timeout.
func (c *conn) do(timeout time.Duration, args ...string) (any, error) {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	writeCommand(c.w, args)
	if err := c.w.Flush(); err != nil {
		return nil, err
	}
	return readReply(c.r)
}

func (c *conn) mustPing(t *testing.T) {
	t.Helper()
	if reply, err := c.do(doTimeout, "PING"); err != nil || reply != "PONG" {
		t.Fatalf("PING on an open connection = %v, %v", reply, err)
	}
}

func (c *conn) timedPing(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	c.mustPing(t)
	return time.Since(start)
}

// assertReset checks that the proxy reset the connection: a read fails
// with ECONNRESET instead of waiting.
func (c *conn) assertReset(t *testing.T) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(faultTimeout)); err != nil {
		t.Fatal(err)
	}
	_, err := c.r.ReadByte()
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read on an open connection: err = %v, want ECONNRESET", err)
	}
}
