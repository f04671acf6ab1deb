package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tiercache/tiercache/internal/redisproc"
)

// ReplyError is an error reply sent by the server, such as
// "WRONGTYPE Operation against a key holding the wrong kind of value".
// Inside an array reply (the result of EXEC) it appears as an element
// instead of being returned as the error.
type ReplyError string

// Error returns the server's message as sent.
func (e ReplyError) Error() string { return string(e) }

// Prefix returns the first word of the message, such as "MOVED" or "ERR".
func (e ReplyError) Prefix() string {
	p, _, _ := strings.Cut(string(e), " ")
	return p
}

// doTimeout bounds one call of Server.Do, so that a paused or hung server
// makes a test fail instead of hanging it.
const doTimeout = 10 * time.Second

// pollTimeout bounds each probe made while polling for readiness, so that
// one unresponsive node does not eat the whole deadline.
const pollTimeout = time.Second

// roundTrip dials addr, authenticates with password when it is not empty,
// sends one command and reads its reply. A fresh connection per call keeps
// the client free of state that a Kill or Restart would invalidate.
func roundTrip(ctx context.Context, addr, password string, args []string) (any, error) {
	return roundTripAs(ctx, addr, "", password, args)
}

// roundTripAs is roundTrip that authenticates as the ACL user username
// when it is not empty.
func roundTripAs(ctx context.Context, addr, username, password string, args []string) (any, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	defer conn.Close()
	return exchange(ctx, conn, username, password, args)
}

// exchange sends one command on conn, after AUTH when password is not
// empty (as username when that is not empty either), and reads its reply.
// ctx's deadline applies to the connection, and ctx's end closes it.
func exchange(ctx context.Context, conn net.Conn, username, password string, args []string) (any, error) {
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return nil, err
		}
	}
	// Closing the connection unblocks a read when ctx is cancelled early.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	w := bufio.NewWriter(conn)
	n := 1
	if password != "" {
		auth := []string{"AUTH", password}
		if username != "" {
			auth = []string{"AUTH", username, password}
		}
		writeCommand(w, auth)
		n = 2
	}
	writeCommand(w, args)
	if err := w.Flush(); err != nil {
		return nil, ctxErr(ctx, err)
	}
	r := bufio.NewReader(conn)
	var reply any
	for i := range n {
		var err error
		reply, err = readReply(r)
		if err != nil {
			return nil, ctxErr(ctx, err)
		}
		if e, ok := reply.(ReplyError); ok {
			if i < n-1 {
				return nil, fmt.Errorf("AUTH: %w", e)
			}
			return nil, e
		}
	}
	return reply, nil
}

// ctxErr adds the context's error, which explains a closed connection
// better than "use of closed network connection". The connection's
// deadline, which is the context's, may fire before the context's own
// timer does.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	if _, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return err
}

func writeCommand(w *bufio.Writer, args []string) {
	fmt.Fprintf(w, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(w, "$%d\r\n%s\r\n", len(a), a)
	}
}

// readReply reads one RESP2 reply: simple and bulk strings as string,
// integers as int64, arrays as []any, null bulk strings and null arrays as
// nil, and error replies as ReplyError values.
func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return nil, fmt.Errorf("redistest: malformed reply line %q", line)
	}
	kind, body := line[0], line[1:len(line)-2]
	switch kind {
	case '+':
		return body, nil
	case '-':
		return ReplyError(body), nil
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return nil, fmt.Errorf("redistest: bad bulk length %q", body)
		}
		if n == -1 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return nil, fmt.Errorf("redistest: bad array length %q", body)
		}
		if n == -1 {
			return nil, nil
		}
		arr := make([]any, n)
		for i := range arr {
			if arr[i], err = readReply(r); err != nil {
				return nil, err
			}
		}
		return arr, nil
	}
	return nil, fmt.Errorf("redistest: unknown reply type %q", line)
}

// parseInfo turns the text of an INFO reply into a map.
func parseInfo(text string) map[string]string { return redisproc.ParseInfo(text) }
