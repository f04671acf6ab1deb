package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/envelope"
)

// run opens the backend the flags name, runs f under the command's
// timeout and closes the backend.
func (t *targetFlags) run(ctx context.Context, f func(ctx context.Context, b backend) error) error {
	if t.Timeout <= 0 {
		return usage("--timeout must be positive")
	}
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	b, err := t.open(ctx)
	if err != nil {
		return err
	}
	defer b.close()
	return f(ctx, b)
}

// opErr turns a backend error into the command's result.
func opErr(err error) error {
	var e *exitErr
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e):
		return err
	case errors.Is(err, errNotFound):
		return &exitErr{code: exitNotFound, msg: "no such key"}
	case errors.Is(err, tiercache.ErrInvalidKey), errors.Is(err, tiercache.ErrInvalidTag), errors.Is(err, tiercache.ErrInvalidValue):
		return usage("%s", strings.TrimPrefix(err.Error(), "tiercache: "))
	case errors.Is(err, tiercache.ErrCorrupt):
		return fail("%s", notOurs(err))
	}
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == 400 {
		return usage("%v", err)
	}
	return fail("%s", strings.TrimPrefix(err.Error(), "tiercache: "))
}

// notOurs words a read of bytes tiercache did not write.
func notOurs(err error) string {
	if errors.Is(err, tiercache.ErrNotTiercache) {
		return "the key holds a value tiercache did not write (no envelope); `tiercache inspect` shows its bytes"
	}
	var ce *envelope.CorruptError
	if errors.As(err, &ce) {
		return "the key holds a value tiercache did not write (" + ce.Reason + "); `tiercache inspect` shows its bytes"
	}
	return "the key holds a value this build cannot read (" + err.Error() + "); `tiercache inspect` shows its bytes"
}

// getCmd is "tiercache get KEY".
type getCmd struct {
	Key  string `arg:"" help:"The key, without the namespace."`
	Meta bool   `name:"meta" help:"Print the metadata (tier, codec, TTL, size, ETag; over the library also tags and the envelope) instead of the value."`
	targetFlags
	outputFlag
}

func (c *getCmd) Help() string {
	return "Prints the value as stored, followed by a newline when it is text and stdout is a terminal. " +
		"Exit status 3 when the key is absent."
}

func (c *getCmd) Run(ctx context.Context, s streams) error {
	if err := checkKeys(c.Key); err != nil {
		return err
	}
	return opErr(c.run(ctx, func(ctx context.Context, b backend) error {
		e, err := b.get(ctx, c.Key)
		if err != nil {
			return err
		}
		if !c.Meta && !c.json() {
			_, err := s.out.Write(e.Value)
			if outTerminal(s.out) && utf8.Valid(e.Value) && !strings.HasSuffix(string(e.Value), "\n") {
				fmt.Fprintln(s.out)
			}
			return err
		}
		var in *tiercache.Inspection
		if c.Meta {
			if i, err := b.inspect(ctx, c.Key); err == nil {
				in = &i
			}
			if hb, ok := b.(*httpBackend); ok {
				e.Tags, _ = hb.tags(ctx, c.Key)
			}
		}
		if c.json() {
			out := struct {
				entry
				Value    string                `json:"value,omitempty"`
				Value64  []byte                `json:"value_base64,omitempty"`
				Envelope *tiercache.Inspection `json:"envelope,omitempty"`
			}{entry: e, Envelope: in}
			if !c.Meta {
				if utf8.Valid(e.Value) {
					out.Value = string(e.Value)
				} else {
					out.Value64 = e.Value
				}
			}
			return writeJSON(s.out, out)
		}
		tw := table(s.out)
		row(tw, "key", e.Key)
		row(tw, "tier", e.Tier)
		row(tw, "codec", e.Codec)
		row(tw, "content type", e.ContentType)
		row(tw, "size", fmt.Sprintf("%d bytes", e.Size))
		row(tw, "ttl", ttlText(e.TTL))
		row(tw, "etag", e.ETag)
		if len(e.Tags) > 0 {
			row(tw, "tags", strings.Join(e.Tags, ", "))
		}
		if e.CreatedAt != nil {
			row(tw, "created", e.CreatedAt.Format(time.RFC3339Nano))
		}
		if e.Stale {
			row(tw, "stale", "yes: served by fail-safe while Redis is unreachable")
		}
		if in != nil {
			writeInspection(tw, *in, true)
		}
		return tw.Flush()
	}))
}

func ttlText(ttl *float64) string {
	if ttl == nil {
		return "none"
	}
	return (time.Duration(*ttl * float64(time.Second))).Round(time.Second).String()
}

// setCmd is "tiercache set KEY [VALUE]".
type setCmd struct {
	Key         string        `arg:"" help:"The key, without the namespace."`
	Value       *string       `arg:"" optional:"" help:"The value. Without it, --file or standard input."`
	File        string        `name:"file" short:"f" placeholder:"FILE" help:"Read the value from FILE (- for standard input)."`
	TTL         time.Duration `name:"ttl" help:"Time to live, such as 30s or 1h (default: the cache's default TTL)."`
	Tags        []string      `name:"tags" sep:"," placeholder:"TAG" help:"Tags to invalidate the value by."`
	ContentType string        `name:"content-type" placeholder:"TYPE" help:"Media type stored with the value, such as application/json."`
	Codec       string        `name:"codec" enum:"raw,json,msgpack" default:"raw" help:"Codec of the bytes: raw, json (checked to parse) or msgpack."`
	targetFlags
	stdin io.Reader
}

func (c *setCmd) Run(ctx context.Context, s streams) error {
	if c.Value != nil && c.File != "" {
		return usage("give the value as an argument or with --file, not both")
	}
	if c.TTL < 0 {
		return usage("--ttl must not be negative")
	}
	if err := checkKeys(c.Key); err != nil {
		return err
	}
	data, err := c.read()
	if err != nil {
		return err
	}
	return opErr(c.run(ctx, func(ctx context.Context, b backend) error {
		err := b.set(ctx, setArgs{key: c.Key, data: data, ttl: c.TTL, tags: c.Tags, contentType: c.ContentType, codec: c.Codec})
		if errors.Is(err, errQueued) || errors.Is(err, tiercache.ErrQueued) {
			return fail("%v", errQueued)
		}
		return err
	}))
}

// read returns the value: the argument, the file, or standard input.
func (c *setCmd) read() ([]byte, error) {
	switch {
	case c.Value != nil:
		return []byte(*c.Value), nil
	case c.File != "" && c.File != "-":
		b, err := os.ReadFile(c.File)
		if err != nil {
			return nil, usage("read the value: %v", err)
		}
		return b, nil
	}
	in := c.stdin
	if in == nil {
		if stdinTerminal() {
			return nil, usage("no value: give it as an argument, with --file, or on standard input")
		}
		in = os.Stdin
	}
	b, err := io.ReadAll(in)
	if err != nil {
		return nil, fail("read the value from standard input: %v", err)
	}
	return b, nil
}

// delCmd is "tiercache del KEY...".
type delCmd struct {
	Keys []string `arg:"" name:"key" help:"Keys to delete; absent keys are not an error."`
	softFlag
	targetFlags
}

// softFlag is --soft of del, invalidate and clear.
type softFlag struct {
	Soft bool `name:"soft" help:"Make the entries stale instead of removing them: reads miss them, but fail-safe still answers them while the reload fails or Redis is down."`
}

func (c *delCmd) Run(ctx context.Context, s streams) error {
	if err := checkKeys(c.Keys...); err != nil {
		return err
	}
	return opErr(c.run(ctx, func(ctx context.Context, b backend) error {
		return queued(b.del(ctx, c.Keys, c.Soft))
	}))
}

// queued turns an operation the recovery queue took into a failure that
// says so: it is not applied yet.
func queued(err error) error {
	if errors.Is(err, errQueued) || errors.Is(err, tiercache.ErrQueued) {
		return fail("%v", errQueued)
	}
	return err
}

// ttlCmd is "tiercache ttl KEY".
type ttlCmd struct {
	Key string `arg:"" help:"The key, without the namespace."`
	targetFlags
	outputFlag
}

func (c *ttlCmd) Help() string {
	return "Prints the time to live left, in seconds (\"none\" for a key without expiry). Exit status 3 when the key is absent."
}

func (c *ttlCmd) Run(ctx context.Context, s streams) error {
	if err := checkKeys(c.Key); err != nil {
		return err
	}
	return opErr(c.run(ctx, func(ctx context.Context, b backend) error {
		e, err := b.get(ctx, c.Key)
		if err != nil {
			return err
		}
		if c.json() {
			return writeJSON(s.out, map[string]any{"key": c.Key, "ttl_seconds": e.TTL})
		}
		if e.TTL == nil {
			_, err = fmt.Fprintln(s.out, "none")
			return err
		}
		_, err = fmt.Fprintf(s.out, "%.0f\n", *e.TTL)
		return err
	}))
}

// invalidateCmd is "tiercache invalidate TAG...".
type invalidateCmd struct {
	Tags []string `arg:"" name:"tag" help:"Tags whose entries to invalidate, in every instance."`
	softFlag
	targetFlags
}

func (c *invalidateCmd) Run(ctx context.Context, s streams) error {
	for _, t := range c.Tags {
		if t == "" {
			return usage("a tag must not be empty")
		}
	}
	return opErr(c.run(ctx, func(ctx context.Context, b backend) error {
		return queued(b.invalidate(ctx, c.Tags, c.Soft))
	}))
}

// clearCmd is "tiercache clear".
type clearCmd struct {
	Yes bool `name:"yes" short:"y" help:"Do not ask for confirmation."`
	softFlag
	targetFlags
	stdin io.Reader
}

func (c *clearCmd) Help() string {
	return "Invalidates every entry of the namespace in every instance (one increment: nothing is scanned or flushed). " +
		"Asks for confirmation on a terminal; elsewhere --yes is required."
}

func (c *clearCmd) Run(ctx context.Context, s streams) error {
	if !c.Yes {
		in := c.stdin
		if in == nil {
			if !stdinTerminal() {
				return usage("clear invalidates the whole namespace: confirm with --yes")
			}
			in = os.Stdin
		}
		fmt.Fprint(s.err, "Invalidate every entry of the namespace, in every instance? [y/N] ")
		line, _ := bufio.NewReader(in).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			return fail("not confirmed; nothing changed")
		}
	}
	return opErr(c.run(ctx, func(ctx context.Context, b backend) error {
		if err := queued(b.clear(ctx, c.Soft)); err != nil {
			return err
		}
		fmt.Fprintf(s.out, "cleared the namespace at %s\n", b.describe())
		return nil
	}))
}

// healthCmd is "tiercache health".
type healthCmd struct {
	targetFlags
	outputFlag
}

func (c *healthCmd) Help() string {
	return "Prints the health verdict and its checks. Exit status: 0 healthy, 4 degraded, 1 unhealthy or unreachable. " +
		"Over --url without the token, the service gives the verdict only."
}

func (c *healthCmd) Run(ctx context.Context, s streams) error {
	verdict := exitOK
	err := c.run(ctx, func(ctx context.Context, b backend) error {
		h, err := b.health(ctx)
		if err != nil {
			return err
		}
		switch h.Status {
		case tiercache.Degraded:
			verdict = exitDegraded
		case tiercache.Healthy:
		default:
			verdict = exitError
		}
		if c.json() {
			return writeJSON(s.out, h)
		}
		writeHealth(s.out, h)
		return nil
	})
	if err != nil {
		return opErr(err)
	}
	return code(verdict)
}

// writeHealth prints the verdict and one line per check that ran.
func writeHealth(w io.Writer, h tiercache.Health) {
	tw := table(w)
	row(tw, "status", string(h.Status))
	ch := h.Checks
	check := func(name string, st tiercache.CheckStatus, msg string) {
		if st == "" {
			return
		}
		row(tw, name, strings.TrimSpace(string(st)+"  "+msg))
	}
	check("connectivity", ch.Connectivity.Status, ch.Connectivity.Message)
	check("memory", ch.Memory.Status, ch.Memory.Message)
	check("circuit breaker", ch.CircuitBreaker.Status, string(ch.CircuitBreaker.State))
	check("replication", ch.Replication.Status, ch.Replication.Message)
	check("tracking", ch.Tracking.Status, fmt.Sprintf("link resets %d", ch.Tracking.LinkResets))
	_ = tw.Flush()
}

// statsCmd is "tiercache stats".
type statsCmd struct {
	targetFlags
	outputFlag
}

func (c *statsCmd) Run(ctx context.Context, s streams) error {
	return opErr(c.run(ctx, func(ctx context.Context, b backend) error {
		raw, err := b.stats(ctx)
		if err != nil {
			return err
		}
		if c.json() {
			var b bytes.Buffer
			if err := json.Indent(&b, raw, "", "  "); err != nil {
				return fmt.Errorf("the statistics are not JSON: %v", err)
			}
			b.WriteByte('\n')
			_, err := s.out.Write(b.Bytes())
			return err
		}
		var v statsView
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("the statistics are not tiercache's JSON: %v", err)
		}
		_, direct := b.(*libBackend)
		v.write(s.out, direct)
		return nil
	}))
}

// inspectCmd is "tiercache inspect KEY".
type inspectCmd struct {
	Key string `arg:"" help:"The key, without the namespace."`
	targetFlags
	outputFlag
}

func (c *inspectCmd) Help() string {
	return "Reads the key's bytes from Redis and decodes tiercache's envelope: codec, compression, tags with the " +
		"versions recorded and current, the namespace version, and whether a read would use the entry now and why not. " +
		"It talks to Redis through the library (not over --url). Exit status 3 when the key is absent."
}

func (c *inspectCmd) Run(ctx context.Context, s streams) error {
	if c.URL != "" {
		return usage("inspect reads Redis directly: give --redis-url or --config, not --url")
	}
	if err := checkKeys(c.Key); err != nil {
		return err
	}
	return opErr(c.run(ctx, func(ctx context.Context, b backend) error {
		in, err := b.inspect(ctx, c.Key)
		if errors.Is(err, errUnsupported) {
			return usage("inspect reads Redis directly: unset $%s and give --redis-url or --config", envURL)
		}
		if err != nil {
			return err
		}
		if c.json() {
			return writeJSON(s.out, in)
		}
		tw := table(s.out)
		row(tw, "key", in.Key)
		row(tw, "redis key", in.StoreKey)
		row(tw, "size", fmt.Sprintf("%d bytes", in.Size))
		writeInspection(tw, in, false)
		return tw.Flush()
	}))
}

// writeInspection prints an inspection's envelope fields.
func writeInspection(tw *tabwriter.Writer, in tiercache.Inspection, short bool) {
	if !in.Envelope {
		row(tw, "envelope", "none")
		row(tw, "bytes", in.Preview)
		row(tw, "valid", "no: "+in.Reason)
		return
	}
	if !short {
		row(tw, "envelope", fmt.Sprintf("version %d", in.Version))
		row(tw, "codec", in.Codec)
		row(tw, "content type", in.ContentType)
		row(tw, "payload", fmt.Sprintf("%d bytes", in.PayloadSize))
		row(tw, "created", in.CreatedAt.Format(time.RFC3339Nano))
		if in.ExpiresAt.IsZero() {
			row(tw, "expires", "never")
		} else {
			row(tw, "expires", in.ExpiresAt.Format(time.RFC3339Nano))
		}
	}
	row(tw, "compressed", yesNo(in.Compressed))
	if in.Negative {
		row(tw, "negative", "yes: a cached absence")
	}
	row(tw, "namespace version", fmt.Sprintf("%d (now %d)", in.NsVersion, in.NsCurrent))
	for _, t := range in.Tags {
		row(tw, "tag "+t.Tag, fmt.Sprintf("version %d (now %d)", t.Recorded, t.Current))
	}
	if in.Valid {
		row(tw, "valid", strings.TrimSpace("yes "+in.Reason))
	} else {
		row(tw, "valid", "no: "+in.Reason)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// table returns a writer that aligns "name  value" rows.
func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// row writes one row; an empty value is skipped.
func row(tw *tabwriter.Writer, name, value string) {
	if value == "" {
		return
	}
	fmt.Fprintf(tw, "%s\t%s\n", name, value)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// stdinTerminal reports whether standard input is a terminal (not a
// pipe, a file or /dev/null).
func stdinTerminal() bool { return term.IsTerminal(int(os.Stdin.Fd())) }

// outTerminal reports whether w is a terminal.
func outTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// checkKeys refuses an empty key before anything is sent.
func checkKeys(keys ...string) error {
	for _, k := range keys {
		if k == "" {
			return usage("a key must not be empty")
		}
	}
	return nil
}
