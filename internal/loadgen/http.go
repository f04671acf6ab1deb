package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// HTTPOptions configures NewHTTP.
type HTTPOptions struct {
	// URL is the service's base URL, such as http://127.0.0.1:8080; keys
	// are read and written at URL/v1/cache/<key>.
	URL string
	// Token is the bearer token sent with every request; empty sends
	// none.
	Token string
	// Connections is the number of keep-alive connections. Worker i uses
	// connection i mod Connections, so with as many workers as
	// connections each worker keeps its own. Zero means 1.
	Connections int
	// Timeout bounds each request, the wait for a busy connection
	// included. Zero means 5s.
	Timeout time.Duration
	// TLS configures https:// URLs; nil means the system's roots.
	TLS *tls.Config
}

// HTTPTarget sends the operations to the service's /v1/cache API. It
// uses github.com/valyala/fasthttp's client, which reuses its request
// and response buffers and needs no goroutine per connection: on a small
// machine shared with the server under test, the generator's own CPU
// cost is what limits the load it can offer.
type HTTPTarget struct {
	base    []byte // URL + "/v1/cache/"
	auth    string
	timeout time.Duration
	clients []*fasthttp.HostClient
}

// NewHTTP returns a target for the service at o.URL.
func NewHTTP(o HTTPOptions) (*HTTPTarget, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("url %q: want http://host:port or https://host:port", o.URL)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("url %q: give the base URL only, without user, query or fragment", u.Redacted())
	}
	if o.Connections < 0 || o.Timeout < 0 {
		return nil, errors.New("connections and timeout must not be negative")
	}
	if o.Connections == 0 {
		o.Connections = 1
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	t := &HTTPTarget{
		base:    []byte(strings.TrimSuffix(u.String(), "/") + "/v1/cache/"),
		timeout: o.Timeout,
		clients: make([]*fasthttp.HostClient, o.Connections),
	}
	if o.Token != "" {
		t.auth = "Bearer " + o.Token
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
	}
	for i := range t.clients {
		t.clients[i] = &fasthttp.HostClient{
			Addr: addr, IsTLS: u.Scheme == "https", TLSConfig: o.TLS,
			MaxConns: 1, MaxConnWaitTimeout: o.Timeout,
			MaxIdleConnDuration: time.Minute,
			// A request that failed is reported as failed, not retried.
			RetryIfErr: func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		}
	}
	return t, nil
}

// Name is "http".
func (t *HTTPTarget) Name() string { return "http" }

// Close closes the idle connections.
func (t *HTTPTarget) Close() error {
	for _, c := range t.clients {
		c.CloseIdleConnections()
	}
	return nil
}

// Worker returns worker i's operations, on connection i mod Connections.
func (t *HTTPTarget) Worker(i int) Worker {
	req := fasthttp.AcquireRequest()
	if t.auth != "" {
		req.Header.Set("Authorization", t.auth)
	}
	return &httpWorker{t: t, client: t.clients[i%len(t.clients)], req: req, resp: fasthttp.AcquireResponse()}
}

type httpWorker struct {
	t      *HTTPTarget
	client *fasthttp.HostClient
	req    *fasthttp.Request
	resp   *fasthttp.Response
	uri    []byte
}

func (w *httpWorker) Do(_ context.Context, op Op, key string, value []byte) Outcome {
	w.uri = append(append(w.uri[:0], w.t.base...), key...)
	w.req.SetRequestURIBytes(w.uri)
	switch op {
	case OpGet:
		w.req.Header.SetMethod(fasthttp.MethodGet)
		w.req.ResetBody()
	case OpSet:
		w.req.Header.SetMethod(fasthttp.MethodPut)
		w.req.SetBodyRaw(value)
	case OpDelete:
		w.req.Header.SetMethod(fasthttp.MethodDelete)
		w.req.ResetBody()
	}
	if err := w.client.DoTimeout(w.req, w.resp, w.t.timeout); err != nil {
		return Outcome{Err: httpErrorKind(err)}
	}
	return httpOutcome(op, w.resp.StatusCode(), w.resp.Header.Peek("X-Cache"))
}

// httpOutcome reads an answer: a 200 read's tier from X-Cache, a 404 read
// as a miss, 204 and 202 (queued) writes as successes.
func httpOutcome(op Op, status int, xcache []byte) Outcome {
	switch {
	case op == OpGet && status == fasthttp.StatusOK:
		switch string(xcache) {
		case "hit-l1":
			return Outcome{Tier: "hit-l1"}
		case "hit-l2":
			return Outcome{Tier: "hit-l2"}
		case "loader":
			return Outcome{Tier: "loader"}
		case "stale":
			return Outcome{Tier: "stale"}
		}
		return Outcome{Tier: "other"}
	case op == OpGet && status == fasthttp.StatusNotFound:
		return Outcome{Tier: "miss"}
	case op != OpGet && (status == fasthttp.StatusNoContent || status == fasthttp.StatusOK):
		return Outcome{}
	case op != OpGet && status == fasthttp.StatusAccepted:
		return Outcome{Queued: true}
	}
	return Outcome{Err: "status_" + strconv.Itoa(status)}
}

// httpErrorKind classifies a request that got no answer.
func httpErrorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return "no_free_connection"
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too_many_open_files"
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return "connection"
	}
	return "error"
}
