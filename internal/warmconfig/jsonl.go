package warmconfig

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/tiercache/tiercache/config"
	"github.com/tiercache/tiercache/warm"
)

// Defaults of the built-in generators.
const (
	DefaultMaxLineBytes = 8 << 20
	DefaultHTTPTimeout  = 30 * time.Second
	DefaultMaxHTTPBytes = 256 << 20
)

// record is one line of a JSON Lines source.
type record struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
	TTL   json.RawMessage `json:"ttl"`
	Tags  []string        `json:"tags"`
}

// ReadJSONLines reads JSON Lines of {"key": ..., "value": ..., "ttl": ...,
// "tags": [...]} from r and yields one item per line. The value may be any
// JSON and is stored as its raw JSON bytes; "ttl" is optional, a number of
// seconds or a Go duration string ("90s"); "tags" is optional. Blank lines
// are skipped. A line that is malformed, has an unknown field, or is
// longer than maxLine bytes (zero means DefaultMaxLineBytes) becomes an
// item with Err set, naming its line number; reading goes on. A read
// error, or an error from yield, ends it.
func ReadJSONLines(r io.Reader, maxLine int, yield func(warm.Item) error) error {
	if maxLine <= 0 {
		maxLine = DefaultMaxLineBytes
	}
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	for n := 1; ; n++ {
		line = line[:0]
		tooLong := false
		var err error
		for {
			var frag []byte
			frag, err = br.ReadSlice('\n')
			switch {
			case tooLong:
			case len(line)+len(frag) > maxLine+1: // +1: the newline
				tooLong, line = true, line[:0]
			default:
				line = append(line, frag...)
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("line %d: %w", n, err)
		}
		var it warm.Item
		switch {
		case tooLong:
			it = warm.Item{Err: fmt.Errorf("line %d: longer than %d bytes", n, maxLine)}
		case len(bytes.TrimSpace(line)) == 0:
			if err != nil {
				return nil
			}
			continue
		default:
			it = parseLine(n, line)
		}
		if yerr := yield(it); yerr != nil {
			return yerr
		}
		if err != nil {
			return nil
		}
	}
}

// parseLine decodes one line; a bad line is an item with Err.
func parseLine(n int, line []byte) warm.Item {
	var rec record
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	bad := func(key string, format string, args ...any) warm.Item {
		return warm.Item{Key: key, Err: fmt.Errorf("line %d: "+format, append([]any{n}, args...)...)}
	}
	if err := dec.Decode(&rec); err != nil {
		return bad("", "%v", err)
	}
	if dec.More() {
		return bad(rec.Key, "more than one JSON value")
	}
	if rec.Key == "" {
		return bad("", `no "key"`)
	}
	if len(rec.Value) == 0 {
		return bad(rec.Key, `no "value"`)
	}
	ttl, err := parseTTL(rec.TTL)
	if err != nil {
		return bad(rec.Key, `"ttl": %v`, err)
	}
	// []byte, not json.RawMessage: the cache stores a []byte as it is.
	return warm.Item{Key: rec.Key, Value: []byte(rec.Value), TTL: ttl, Tags: rec.Tags}
}

// parseTTL reads a number of seconds or a Go duration string.
func parseTTL(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	// A JSON string or number, read by the one parser of durations.
	text := string(raw)
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		text = s
	}
	d, err := config.ParseDuration(text)
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, fmt.Errorf("%v is negative", d)
	}
	return d, nil
}

// File returns a Generator that reads JSON Lines from the file at path,
// opened anew on each run.
func File(path string, maxLine int) warm.Generator {
	return func(_ context.Context, yield func(warm.Item) error) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return ReadJSONLines(f, maxLine, yield)
	}
}

// HTTPSource configures the HTTP generator.
type HTTPSource struct {
	// URL is fetched with GET on each run; it must answer 200 with JSON
	// Lines.
	URL string

	// Header is sent with the request (Authorization, ...).
	Header http.Header

	// Timeout bounds the whole run: the request and reading the body.
	// Zero means DefaultHTTPTimeout.
	Timeout time.Duration

	// MaxBytes bounds the body; a longer one ends the run with an error
	// (the items read before it are written). Zero means
	// DefaultMaxHTTPBytes.
	MaxBytes int64

	// MaxLineBytes bounds one line. Zero means DefaultMaxLineBytes.
	MaxLineBytes int

	// Client sends the request. Nil means http.DefaultClient.
	Client *http.Client
}

// errTooLarge ends an HTTP body past MaxBytes.
var errTooLarge = errors.New("the body is larger than the limit")

// HTTP returns a Generator that GETs src.URL and reads the answer as JSON
// Lines.
func HTTP(src HTTPSource) warm.Generator {
	if src.Timeout <= 0 {
		src.Timeout = DefaultHTTPTimeout
	}
	if src.MaxBytes <= 0 {
		src.MaxBytes = DefaultMaxHTTPBytes
	}
	if src.Client == nil {
		src.Client = http.DefaultClient
	}
	return func(ctx context.Context, yield func(warm.Item) error) error {
		ctx, cancel := context.WithTimeout(ctx, src.Timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.URL, nil)
		if err != nil {
			return err
		}
		for k, vs := range src.Header {
			req.Header[k] = vs
		}
		req.Header.Set("Accept", "application/jsonl, application/x-ndjson, */*")
		resp, err := src.Client.Do(req)
		if err != nil {
			return err // *url.Error, which redacts the URL's password
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", redact(src.URL), resp.Status)
		}
		body := &limitedReader{r: resp.Body, left: src.MaxBytes}
		if err := ReadJSONLines(body, src.MaxLineBytes, yield); err != nil {
			if errors.Is(err, errTooLarge) {
				return fmt.Errorf("GET %s: %w (%d bytes)", redact(src.URL), errTooLarge, src.MaxBytes)
			}
			return err
		}
		return nil
	}
}

// limitedReader fails, rather than ending quietly as io.LimitReader does,
// when the body goes past the limit: a truncated body is not a whole one.
// The bytes within the limit are delivered first, so the whole lines they
// hold are still warmed.
type limitedReader struct {
	r    io.Reader
	left int64 // bytes still allowed; -1 once the limit was passed
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1] // one byte more tells a body at the limit from a longer one
	}
	n, err := l.r.Read(p)
	if int64(n) > l.left {
		n, l.left = int(l.left), -1
		return n, nil
	}
	l.left -= int64(n)
	return n, err
}
