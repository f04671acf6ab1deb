package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tiercache/tiercache"
)

// Exit codes of the everyday commands, beyond exitOK, exitError and
// exitUsage (docs/cli.md lists them all).
const (
	exitNotFound = 3 // get, ttl, inspect: no such key
	exitDegraded = 4 // health: the verdict is degraded
)

// envURL and envToken name the service to talk to and its token when the
// flags do not.
const (
	envURL       = "TIERCACHE_URL"
	envTokenFile = "TIERCACHE_TOKEN_FILE"
)

// targetFlags choose what an everyday command talks to: a running
// service (--url) or Redis itself through the library, configured as
// serve is (--config, the environment, --redis-url, --namespace).
type targetFlags struct {
	URL       string        `name:"url" placeholder:"URL" help:"Base URL of a running tiercache serve, such as http://127.0.0.1:8080 (default $$TIERCACHE_URL). Without it, the command talks to Redis directly with serve's configuration."`
	TokenFile string        `name:"token-file" placeholder:"FILE" help:"File holding the service's bearer token (default $$TIERCACHE_TOKEN, else the file $$TIERCACHE_TOKEN_FILE names)."`
	Config    string        `name:"config" placeholder:"FILE" help:"Without --url: serve's YAML configuration file (default $$TIERCACHE_CONFIG)."`
	RedisURL  *string       `name:"redis-url" placeholder:"URL" help:"Without --url: the Redis to use (default $$REDIS_URL or the configuration's)."`
	Namespace *string       `name:"namespace" placeholder:"NAME" help:"Without --url: the namespace (default $$CACHE_NAMESPACE or the configuration's, else tiercache)."`
	Timeout   time.Duration `name:"timeout" default:"5s" help:"Bound of the whole command."`
}

// outputFlag is --output for commands with structured output.
type outputFlag struct {
	Output string `name:"output" short:"o" enum:"table,json" default:"table" help:"Output format: table or json."`
}

func (o outputFlag) json() bool { return o.Output == "json" }

// entry is what get learns about a key.
type entry struct {
	Key         string     `json:"key"`
	Value       []byte     `json:"-"`
	Tier        string     `json:"tier"` // hit-l1, hit-l2, stale
	Codec       string     `json:"codec,omitempty"`
	ContentType string     `json:"content_type,omitempty"`
	TTL         *float64   `json:"ttl_seconds,omitempty"` // nil: no expiry
	Size        int        `json:"size"`
	ETag        string     `json:"etag,omitempty"`
	CreatedAt   *time.Time `json:"created_at,omitempty"`
	Stale       bool       `json:"stale"`
	Tags        []string   `json:"tags,omitempty"`
}

// setArgs is one write.
type setArgs struct {
	key         string
	data        []byte
	ttl         time.Duration
	tags        []string
	contentType string
	codec       string
}

// backend is what the everyday commands need, from a service over HTTP or
// from the library.
type backend interface {
	get(ctx context.Context, key string) (entry, error)
	set(ctx context.Context, a setArgs) error
	del(ctx context.Context, keys []string, soft bool) error
	invalidate(ctx context.Context, tags []string, soft bool) error
	clear(ctx context.Context, soft bool) error
	stats(ctx context.Context) (json.RawMessage, error)
	health(ctx context.Context) (tiercache.Health, error)
	inspect(ctx context.Context, key string) (tiercache.Inspection, error)
	describe() string // for messages: the URL or the Redis, without secrets
	close()
}

// Errors the backends return, matched by the commands.
var (
	errNotFound    = errors.New("no such key")
	errQueued      = errors.New("queued: Redis is unreachable; the operation waits in the recovery queue and is applied when Redis answers")
	errUnsupported = errors.New("not available over HTTP")
)

// open returns the backend the flags choose. Mistakes in the flags are
// usage errors.
func (t *targetFlags) open(ctx context.Context) (backend, error) {
	u := t.URL
	if u == "" {
		u = strings.TrimSpace(os.Getenv(envURL))
	}
	if u != "" {
		if t.RedisURL != nil || t.Namespace != nil || t.Config != "" {
			return nil, usage("--url talks to a service: --redis-url, --namespace and --config apply only without it")
		}
		return t.openHTTP(u)
	}
	if t.TokenFile != "" {
		return nil, usage("--token-file needs --url (or $%s)", envURL)
	}
	return t.openLibrary(ctx)
}

// token reads the service's token: --token-file, $TIERCACHE_TOKEN, or
// the file $TIERCACHE_TOKEN_FILE names. Empty means none.
func (t *targetFlags) token() (string, error) {
	file := t.TokenFile
	if file == "" {
		if tok := strings.TrimSpace(os.Getenv(envToken)); tok != "" {
			return tok, nil
		}
		file = strings.TrimSpace(os.Getenv(envTokenFile))
	}
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", usage("read the token file: %v", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (t *targetFlags) openHTTP(raw string) (backend, error) {
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usage("--url %q is not an http:// or https:// URL with a host", raw)
	}
	if u.User != nil {
		return nil, usage("--url must not carry credentials; the token goes in $%s or --token-file", envToken)
	}
	tok, err := t.token()
	if err != nil {
		return nil, err
	}
	u.Path = strings.TrimRight(u.Path, "/")
	return &httpBackend{base: u.String(), token: tok, client: &http.Client{}}, nil
}

// openLibrary opens the cache with serve's configuration, reduced to what
// a short-lived command should do: no L1 (every read goes to Redis), no
// recovery queue or journal (a write either applies or fails), no
// background probes.
func (t *targetFlags) openLibrary(ctx context.Context) (backend, error) {
	flags := map[string]string{}
	if t.RedisURL != nil {
		flags["redis-url"] = *t.RedisURL
	}
	if t.Namespace != nil {
		flags["namespace"] = *t.Namespace
	}
	cfg, err := loadConfig(t.Config, flags)
	if err != nil {
		return nil, err
	}
	opts, err := tiercache.OptionsFromConfig(cfg)
	if err != nil {
		return nil, fail("%v", err)
	}
	if opts.Redis.URL == "" && len(opts.Redis.Addrs) == 0 && len(opts.Redis.SentinelAddrs) == 0 {
		return nil, usage("no service and no Redis to talk to: give --url (or $%s) for a running service, or --redis-url (or $REDIS_URL, or a configuration file)", envURL)
	}
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.L1.Disabled = true
	opts.RecoveryQueueSize = -1
	opts.RecoveryJournalDir = ""
	opts.LivenessInterval = -1
	opts.Redis.LazyConnect = false
	opts.Recorder = nil
	opts.TracerProvider = nil
	notInFleet(&opts)
	done := make(chan struct{})
	var c *tiercache.Cache
	go func() { c, err = tiercache.New(opts); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return nil, fail("connect to Redis (%s): no answer within the command's --timeout", opts.Redis.String())
	}
	if err != nil {
		return nil, fail("%s", strings.TrimPrefix(err.Error(), "tiercache: "))
	}
	return &libBackend{c: c, redis: opts.Redis.String()}, nil
}

// libBackend is the library, straight to Redis.
type libBackend struct {
	c     *tiercache.Cache
	redis string
}

func (b *libBackend) describe() string { return b.redis }
func (b *libBackend) close()           { _ = b.c.Close() }

func (b *libBackend) get(ctx context.Context, key string) (entry, error) {
	var raw tiercache.Raw
	r, err := b.c.Lookup(ctx, key, &raw)
	switch {
	case errors.Is(err, tiercache.ErrCorrupt):
		return entry{}, err
	case errors.Is(err, tiercache.ErrNotFound):
		return entry{}, errNotFound
	case err != nil:
		return entry{}, err
	}
	e := entry{Key: key, Value: raw.Data, Tier: r.Source.String(), Codec: r.Codec, ContentType: raw.ContentType,
		Size: len(raw.Data), ETag: r.ETag, Stale: r.Stale, Tags: r.Tags}
	if !r.ExpiresAt.IsZero() {
		ttl := time.Until(r.ExpiresAt).Seconds()
		e.TTL = &ttl
	}
	if !r.CreatedAt.IsZero() {
		t := r.CreatedAt.UTC()
		e.CreatedAt = &t
	}
	return e, nil
}

func (b *libBackend) set(ctx context.Context, a setArgs) error {
	opts := []tiercache.SetOption{tiercache.WithTTL(a.ttl)}
	if len(a.tags) > 0 {
		opts = append(opts, tiercache.WithTags(a.tags...))
	}
	return b.c.Set(ctx, a.key, tiercache.Raw{Codec: a.codec, ContentType: a.contentType, Data: a.data}, opts...)
}

func (b *libBackend) del(ctx context.Context, keys []string, soft bool) error {
	if soft {
		return b.c.DeleteSoft(ctx, keys...)
	}
	return b.c.Delete(ctx, keys...)
}

func (b *libBackend) invalidate(ctx context.Context, tags []string, soft bool) error {
	if soft {
		return b.c.InvalidateTagsSoft(ctx, tags...)
	}
	return b.c.InvalidateTags(ctx, tags...)
}

func (b *libBackend) clear(ctx context.Context, soft bool) error {
	if soft {
		return b.c.ClearSoft(ctx)
	}
	return b.c.Clear(ctx)
}

func (b *libBackend) stats(ctx context.Context) (json.RawMessage, error) {
	s, err := b.c.Stats(ctx)
	if err != nil {
		return nil, err
	}
	return json.Marshal(s)
}

func (b *libBackend) health(ctx context.Context) (tiercache.Health, error) {
	return b.c.Health(ctx), nil
}

func (b *libBackend) inspect(ctx context.Context, key string) (tiercache.Inspection, error) {
	in, err := b.c.Inspect(ctx, key)
	if errors.Is(err, tiercache.ErrNotFound) {
		return in, errNotFound
	}
	return in, err
}

// httpBackend is a running tiercache serve.
type httpBackend struct {
	base   string
	token  string
	client *http.Client
}

func (b *httpBackend) describe() string { return b.base }
func (b *httpBackend) close()           { b.client.CloseIdleConnections() }

// apiError is a service's error answer.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string {
	switch e.Status {
	case http.StatusUnauthorized:
		return fmt.Sprintf("the service refused the token (401 %s): set $%s or --token-file", e.Code, envToken)
	}
	if e.Message == "" {
		return fmt.Sprintf("the service answered %d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("the service answered %d %s: %s", e.Status, e.Code, e.Message)
}

// do sends one request and returns the answer with its body read. Status
// codes the caller does not accept become an *apiError.
func (b *httpBackend) do(ctx context.Context, method, path, ctype string, body []byte, accept ...int) (*http.Response, []byte, error) {
	var r io.Reader
	if body != nil {
		r = strings.NewReader(string(body))
	}
	req, err := http.NewRequestWithContext(ctx, method, b.base+path, r)
	if err != nil {
		return nil, nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if b.token != "" {
		req.Header.Set("Authorization", "Bearer "+b.token)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, nil, unreachable(b.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
	if err != nil {
		return nil, nil, fmt.Errorf("read the answer of %s: %w", b.base, err)
	}
	for _, a := range accept {
		if resp.StatusCode == a {
			return resp, data, nil
		}
	}
	if resp.StatusCode == http.StatusAccepted {
		return resp, data, errQueued
	}
	e := &apiError{Status: resp.StatusCode}
	var wrapped struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(data, &wrapped) == nil {
		e.Code, e.Message = wrapped.Error.Code, wrapped.Error.Message
	}
	if e.Status == http.StatusNotFound && e.Code == "not_found" {
		return resp, data, errNotFound
	}
	return resp, data, e
}

// unreachable words a transport error for an operator.
func unreachable(base string, err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%s did not answer within the command's --timeout", base)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("cannot reach %s: %v", base, err)
}

func cachePath(key string) string { return "/v1/cache/" + url.PathEscape(key) }

func (b *httpBackend) get(ctx context.Context, key string) (entry, error) {
	resp, data, err := b.do(ctx, http.MethodGet, cachePath(key), "", nil, http.StatusOK)
	if err != nil {
		return entry{}, err
	}
	e := entry{Key: key, Value: data, Tier: resp.Header.Get("X-Cache"), ContentType: resp.Header.Get("Content-Type"),
		Size: len(data), ETag: strings.Trim(resp.Header.Get("Etag"), `"`), Stale: resp.Header.Get("X-Cache") == "stale"}
	e.Codec = codecOf(e.ContentType)
	if ttl, ok := cacheStatusTTL(resp.Header.Get("Cache-Status")); ok {
		e.TTL = &ttl
	}
	if age, err := strconv.Atoi(resp.Header.Get("Age")); err == nil {
		t := time.Now().UTC().Add(-time.Duration(age) * time.Second).Truncate(time.Second)
		e.CreatedAt = &t
	}
	return e, nil
}

// tags reads key's tags through POST /v1/mget, whose items carry them (a
// GET's headers do not).
func (b *httpBackend) tags(ctx context.Context, key string) ([]string, error) {
	body, _ := json.Marshal(map[string][]string{"keys": {key}})
	_, data, err := b.do(ctx, http.MethodPost, "/v1/mget", "application/json", body, http.StatusOK)
	if err != nil {
		return nil, err
	}
	var ans struct {
		Items []struct {
			Tags []string `json:"tags"`
		} `json:"items"`
	}
	if err := json.Unmarshal(data, &ans); err != nil || len(ans.Items) != 1 {
		return nil, fmt.Errorf("the service's mget answer cannot be read: %v", err)
	}
	return ans.Items[0].Tags, nil
}

// codecOf guesses the codec from the media type the service answered.
func codecOf(ct string) string {
	switch {
	case ct == "application/msgpack":
		return "msgpack"
	case ct == "application/octet-stream":
		return "raw"
	case strings.HasPrefix(ct, "application/json"):
		return "json"
	}
	return ""
}

// cacheStatusTTL reads ttl=N from a Cache-Status header.
func cacheStatusTTL(h string) (float64, bool) {
	for p := range strings.SplitSeq(h, ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(p), "ttl="); ok {
			n, err := strconv.Atoi(v)
			return float64(n), err == nil
		}
	}
	return 0, false
}

func (b *httpBackend) set(ctx context.Context, a setArgs) error {
	q := url.Values{}
	if a.ttl > 0 {
		q.Set("ttl", a.ttl.String())
	}
	if len(a.tags) > 0 {
		q.Set("tags", strings.Join(a.tags, ","))
	}
	path := cachePath(a.key)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	if a.codec != "" && a.codec != "raw" && a.contentType == "" {
		a.contentType = "application/" + a.codec
	}
	if a.data == nil {
		a.data = []byte{}
	}
	_, _, err := b.do(ctx, http.MethodPut, path, a.contentType, a.data, http.StatusNoContent)
	return err
}

// softQuery is the query that asks the service for a soft invalidation.
func softQuery(soft bool) string {
	if soft {
		return "?soft=true"
	}
	return ""
}

func (b *httpBackend) del(ctx context.Context, keys []string, soft bool) error {
	if len(keys) == 1 {
		_, _, err := b.do(ctx, http.MethodDelete, cachePath(keys[0])+softQuery(soft), "", nil, http.StatusNoContent)
		return err
	}
	body, _ := json.Marshal(map[string][]string{"keys": keys})
	_, _, err := b.do(ctx, http.MethodPost, "/v1/mdelete"+softQuery(soft), "application/json", body, http.StatusNoContent)
	return err
}

func (b *httpBackend) invalidate(ctx context.Context, tags []string, soft bool) error {
	body, _ := json.Marshal(map[string][]string{"tags": tags})
	_, _, err := b.do(ctx, http.MethodPost, "/v1/invalidate"+softQuery(soft), "application/json", body, http.StatusNoContent)
	return err
}

func (b *httpBackend) clear(ctx context.Context, soft bool) error {
	_, _, err := b.do(ctx, http.MethodPost, "/v1/clear"+softQuery(soft), "", nil, http.StatusNoContent)
	return err
}

func (b *httpBackend) stats(ctx context.Context) (json.RawMessage, error) {
	_, data, err := b.do(ctx, http.MethodGet, "/v1/stats", "", nil, http.StatusOK)
	return data, err
}

func (b *httpBackend) health(ctx context.Context) (tiercache.Health, error) {
	var h tiercache.Health
	_, data, err := b.do(ctx, http.MethodGet, "/readyz", "", nil, http.StatusOK, http.StatusServiceUnavailable)
	if err != nil {
		return h, err
	}
	if err := json.Unmarshal(data, &h); err != nil || h.Status == "" {
		return h, fmt.Errorf("%s/readyz did not answer tiercache's health JSON", b.base)
	}
	return h, nil
}

func (b *httpBackend) inspect(context.Context, string) (tiercache.Inspection, error) {
	return tiercache.Inspection{}, errUnsupported
}
