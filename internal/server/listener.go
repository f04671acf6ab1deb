package server

import (
	"bytes"
	"io"
	"net"
	"strconv"
)

// plainBadRequest is the whole answer net/http's server writes, in one
// write on the connection, to a request it cannot parse (a bad
// percent-escape in the path, a malformed header) before any handler
// runs. No handler of this package answers text/plain.
const plainBadRequest = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"

// jsonBadRequest replaces it: the error form of every other answer, with
// a fresh request id.
func jsonBadRequest() []byte {
	id := newRequestID()
	body := `{"error":{"code":"` + codeBadRequest + `","message":"the request could not be parsed as HTTP (a bad percent-escape in the path, or a malformed header)"},"request_id":"` + id + `"}` + "\n"
	return []byte("HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n" +
		requestIDHeader + ": " + id + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body)
}

// Listener wraps a plain-TCP listener for http.Server.Serve so that the
// answer net/http gives a request it cannot parse, a plain-text 400
// written before any handler can run, has the API's JSON error form too
// (code bad_request, with an X-Request-Id). It changes nothing else on
// the connections. It cannot apply under TLS, where the server writes
// that answer encrypted: there it stays plain text.
func Listener(ln net.Listener) net.Listener { return jsonListener{ln} }

type jsonListener struct{ net.Listener }

func (l jsonListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &jsonConn{Conn: c}, nil
}

// jsonConn replaces net/http's plain-text 400. The server writes it with
// one Write call on the connection itself, and closes it after.
type jsonConn struct{ net.Conn }

func (c *jsonConn) Write(b []byte) (int, error) {
	if len(b) == len(plainBadRequest) && bytes.Equal(b, []byte(plainBadRequest)) {
		if _, err := c.Conn.Write(jsonBadRequest()); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// CloseWrite and ReadFrom pass through what net/http looks for on a TCP
// connection: half-closing, and copying a body with sendfile or splice.
func (c *jsonConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *jsonConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(c.Conn, r)
}
