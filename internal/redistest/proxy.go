package redistest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Toxic names. Each fault has one toxic per direction, so that Heal can
// remove exactly what the methods added.
const (
	latencyUp     = "latency_upstream"
	latencyDown   = "latency_downstream"
	blackholeUp   = "blackhole_upstream"
	blackholeDown = "blackhole_downstream"
	// lingerToxic is a reset_peer toxic that never fires (toxicity 0).
	// toxiproxy sets SO_LINGER 0 on both sockets of every connection
	// that starts while a reset_peer toxic is in the chain, so with it in
	// place every close by the proxy sends a TCP RST. Adding a reset_peer
	// toxic later does not change connections that are already open.
	lingerToxic = "linger"
)

// healed lists the toxics that Heal removes: all but lingerToxic.
var healed = [...]string{latencyUp, latencyDown, blackholeUp, blackholeDown}

// Proxy is a TCP proxy, run in-process by toxiproxy, that sits between a
// client and a Redis server and injects network faults on demand: latency,
// reset connections, a black hole and a closed port. Its methods are safe
// for concurrent use.
//
// Every connection the proxy closes, whatever the reason, is closed with a
// TCP RST, so the client sees ECONNRESET rather than EOF, even when the
// server is the side that closed (after any reply it sent first, such as
// the +OK to QUIT).
type Proxy struct {
	// Addr is "127.0.0.1:<port>", the address clients dial. It stays the
	// same across Disable and Enable.
	Addr string
	// Upstream is the address the proxy forwards each connection to.
	Upstream string

	mu     sync.Mutex
	tp     *toxiproxy.Proxy
	closed bool
}

// StartProxy starts a proxy on a free loopback port that forwards to
// upstream, which it dials once per accepted connection. A connection
// whose upstream dial fails is closed at once. The caller must Close the
// proxy.
func StartProxy(upstream string) (*Proxy, error) {
	// The metrics container must not be nil: the links read it. With no
	// collectors in it, they record nothing.
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	tp := toxiproxy.NewProxy(srv, "redistest", "127.0.0.1:0", upstream)
	p := &Proxy{Upstream: upstream, tp: tp}
	if err := p.addToxic(lingerToxic, "reset_peer", "upstream", 0, map[string]int64{"timeout": 0}); err != nil {
		return nil, err
	}
	if err := tp.Start(); err != nil {
		return nil, fmt.Errorf("redistest: start proxy to %s: %w", upstream, err)
	}
	// Start resolved the port; Enable listens on it again.
	p.Addr = tp.Listen
	return p, nil
}

// NewProxy is StartProxy for a test: it fails the test when the proxy does
// not start, and closes it in t.Cleanup.
func NewProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	p, err := StartProxy(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Latency delays the data in each direction by d, rounded up to a whole
// millisecond, so that a request and its reply take at least 2*d longer.
// It replaces the latency of an earlier call; zero removes it. It applies
// to open connections as well as new ones.
func (p *Proxy) Latency(d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("redistest: proxy latency %v is negative", d)
	}
	ms := int64((d + time.Millisecond - 1) / time.Millisecond)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.usable(); err != nil {
		return err
	}
	for _, name := range []string{latencyUp, latencyDown} {
		if err := p.removeToxic(name); err != nil {
			return err
		}
	}
	if ms == 0 {
		return nil
	}
	attrs := map[string]int64{"latency": ms}
	if err := p.addToxic(latencyUp, "latency", "upstream", 1, attrs); err != nil {
		return err
	}
	return p.addToxic(latencyDown, "latency", "downstream", 1, attrs)
}

// ResetPeer closes every open connection with a TCP RST, on both the
// client's and the server's side, and returns once the proxy accepts
// again. A dial made while it runs may be refused. On a disabled proxy it
// does nothing. Toxics stay in place.
func (p *Proxy) ResetPeer() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.usable(); err != nil {
		return err
	}
	// toxiproxy exports no list of connections, and its reset_peer toxic
	// acts only when data flows, so idle connections would survive it.
	// Stopping the proxy closes them all, and lingerToxic makes each
	// close a reset.
	if !p.tp.Enabled {
		return nil
	}
	p.tp.Stop()
	return p.start()
}

// Blackhole drops all data in both directions without closing any
// connection, so requests time out. It applies to open connections as well
// as new ones, which the proxy still accepts. Heal undoes it.
func (p *Proxy) Blackhole() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.usable(); err != nil {
		return err
	}
	// A timeout toxic with timeout 0 swallows data and never closes.
	attrs := map[string]int64{"timeout": 0}
	if err := p.addToxic(blackholeUp, "timeout", "upstream", 1, attrs); err != nil {
		return err
	}
	return p.addToxic(blackholeDown, "timeout", "downstream", 1, attrs)
}

// Heal removes the latency and the black hole. Connections that were open
// during a Blackhole are closed with a TCP RST, since the data they lost
// leaves the client and the server out of step; other connections carry
// on. Heal does not enable a disabled proxy.
func (p *Proxy) Heal() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.usable(); err != nil {
		return err
	}
	for _, name := range healed {
		if err := p.removeToxic(name); err != nil {
			return err
		}
	}
	return nil
}

// Disable closes the listener, so that dials are refused, and closes every
// open connection with a TCP RST. Disabling a disabled proxy does nothing.
func (p *Proxy) Disable() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.usable(); err != nil {
		return err
	}
	p.tp.Stop()
	return nil
}

// Enable listens again on Addr after Disable. It fails if another process
// took the port in between. Enabling an enabled proxy does nothing.
func (p *Proxy) Enable() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.usable(); err != nil {
		return err
	}
	if p.tp.Enabled {
		return nil
	}
	return p.start()
}

// Close stops the proxy and closes every open connection with a TCP RST.
// The goroutines that served them end shortly after it returns. Calling
// it again does nothing; any other method of a closed proxy fails.
func (p *Proxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.tp.Stop()
}

// usable fails once the proxy is closed. The caller holds p.mu.
func (p *Proxy) usable() error {
	if p.closed {
		return fmt.Errorf("redistest: proxy %s is closed", p.Addr)
	}
	return nil
}

// start listens on Addr. The caller holds p.mu.
func (p *Proxy) start() error {
	if err := p.tp.Start(); err != nil {
		return fmt.Errorf("redistest: proxy %s: listen again: %w", p.Addr, err)
	}
	return nil
}

// addToxic adds a toxic unless one of that name is already in place.
// toxiproxy takes new toxics only as JSON: the function that adds a
// toxics.ToxicWrapper directly is unexported, and a wrapper built by hand
// would need its buffer size and index set the way the JSON path does.
func (p *Proxy) addToxic(name, typ, stream string, toxicity float32, attrs any) error {
	body, err := json.Marshal(struct {
		Name       string  `json:"name"`
		Type       string  `json:"type"`
		Stream     string  `json:"stream"`
		Toxicity   float32 `json:"toxicity"`
		Attributes any     `json:"attributes"`
	}{name, typ, stream, toxicity, attrs})
	if err != nil {
		return fmt.Errorf("redistest: proxy toxic %s: %w", name, err)
	}
	_, err = p.tp.Toxics.AddToxicJson(bytes.NewReader(body))
	if err != nil && !errors.Is(err, toxiproxy.ErrToxicAlreadyExists) {
		return fmt.Errorf("redistest: proxy %s: add toxic %s: %w", p.Addr, name, err)
	}
	return nil
}

// removeToxic removes a toxic if it is in place.
func (p *Proxy) removeToxic(name string) error {
	err := p.tp.Toxics.RemoveToxic(context.Background(), name)
	if err != nil && !errors.Is(err, toxiproxy.ErrToxicNotFound) {
		return fmt.Errorf("redistest: proxy %s: remove toxic %s: %w", p.Addr, name, err)
	}
	return nil
}
