package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tiercache/tiercache"
)

// CacheInstance is a library cache under test.
type CacheInstance struct {
	Label string
	Cache *tiercache.Cache
}

// Name implements Instance.
func (c CacheInstance) Name() string { return c.Label }

// Get implements Instance.
func (c CacheInstance) Get(ctx context.Context, key string) (string, error) {
	var raw tiercache.Raw
	res, err := c.Cache.Lookup(ctx, key, &raw)
	switch {
	case errors.Is(err, tiercache.ErrNotFound):
		return "", ErrNotFound
	case err != nil:
		return "", err
	case res.Stale:
		return string(raw.Data), ErrStale
	}
	return string(raw.Data), nil
}

// Set implements Instance.
func (c CacheInstance) Set(ctx context.Context, key, value string, tags []string, ttl time.Duration) error {
	return c.Cache.Set(ctx, key, tiercache.Raw{Data: []byte(value)}, tiercache.WithTTL(ttl), tiercache.WithTags(tags...))
}

// Delete implements Instance.
func (c CacheInstance) Delete(ctx context.Context, key string) error {
	return c.Cache.Delete(ctx, key)
}

// Invalidate implements Instance.
func (c CacheInstance) Invalidate(ctx context.Context, tag string) error {
	return c.Cache.InvalidateTags(ctx, tag)
}

// HTTPInstance is a running tiercache serve under test. Only 204 counts
// as acknowledged: 202 (queued) is not applied yet.
type HTTPInstance struct {
	Base   string // http://host:port
	Token  string
	Client *http.Client // nil means http.DefaultClient
}

// Name implements Instance.
func (h HTTPInstance) Name() string { return h.Base }

func (h HTTPInstance) do(ctx context.Context, method, path, ctype, body string, ok int) (int, string, error) {
	code, _, body, err := h.doH(ctx, method, path, ctype, body, ok)
	return code, body, err
}

func (h HTTPInstance) doH(ctx context.Context, method, path, ctype, body string, ok int) (int, http.Header, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, h.Base+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, "", err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if h.Token != "" {
		req.Header.Set("Authorization", "Bearer "+h.Token)
	}
	cl := h.Client
	if cl == nil {
		cl = http.DefaultClient
	}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, nil, "", err
	}
	if resp.StatusCode != ok && !(method == http.MethodGet && resp.StatusCode == http.StatusNotFound) {
		return resp.StatusCode, nil, "", fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return resp.StatusCode, resp.Header, string(b), nil
}

// Get implements Instance. An answer with X-Cache: stale (fail-safe) is
// ErrStale.
func (h HTTPInstance) Get(ctx context.Context, key string) (string, error) {
	code, hdr, body, err := h.doH(ctx, http.MethodGet, "/v1/cache/"+url.PathEscape(key), "", "", http.StatusOK)
	switch {
	case err != nil:
		return "", err
	case code == http.StatusNotFound:
		return "", ErrNotFound
	case hdr.Get("X-Cache") == "stale":
		return body, ErrStale
	}
	return body, nil
}

// Set implements Instance.
func (h HTTPInstance) Set(ctx context.Context, key, value string, tags []string, ttl time.Duration) error {
	q := url.Values{"ttl": {ttl.String()}, "tags": {strings.Join(tags, ",")}}
	_, _, err := h.do(ctx, http.MethodPut, "/v1/cache/"+url.PathEscape(key)+"?"+q.Encode(), "", value, http.StatusNoContent)
	return err
}

// Delete implements Instance.
func (h HTTPInstance) Delete(ctx context.Context, key string) error {
	_, _, err := h.do(ctx, http.MethodDelete, "/v1/cache/"+url.PathEscape(key), "", "", http.StatusNoContent)
	return err
}

// Invalidate implements Instance.
func (h HTTPInstance) Invalidate(ctx context.Context, tag string) error {
	b, _ := json.Marshal(map[string][]string{"tags": {tag}})
	_, _, err := h.do(ctx, http.MethodPost, "/v1/invalidate", "application/json", string(b), http.StatusNoContent)
	return err
}

// DeleteKeys removes keys through inst, for Config.Cleanup.
// The tags' version keys stay: a service offers no way to drop them (one
// small key per tag, Config.Groups in all).
func DeleteKeys(inst Instance) func(ctx context.Context, keys, tags []string) error {
	return func(ctx context.Context, keys, _ []string) error {
		var errs []error
		for _, k := range keys {
			if err := inst.Delete(ctx, k); err != nil {
				errs = append(errs, err)
				if len(errs) > 3 {
					break
				}
			}
		}
		return errors.Join(errs...)
	}
}

// WriteText writes the report for a person.
func (rep Report) WriteText(w io.Writer) error {
	var b strings.Builder
	verdict := "PASS"
	if !rep.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "%s: %d instances, %v (ended by %s), %d keys in %d tags, grace %v\n",
		verdict, len(rep.Instances), rep.Duration.Round(time.Millisecond), rep.Stopped, rep.Keys, rep.Groups, rep.Grace)
	fmt.Fprintf(&b, "  operations      %d writes, %d deletes, %d invalidations, %d reads, %d errors\n",
		rep.Writes, rep.Deletes, rep.Invalidate, rep.Reads, rep.Errors)
	fmt.Fprintf(&b, "  lag             p50 %v, p99 %v, max %v over %d (operation, instance) pairs\n",
		rep.Lag.P50.Round(time.Microsecond), rep.Lag.P99.Round(time.Microsecond), rep.Lag.Max.Round(time.Microsecond), rep.Lag.N)
	fmt.Fprintf(&b, "  stale reads     %d within the grace, %d beyond it (violations); %d flagged stale by the cache (fail-safe, not checked)\n", rep.StaleWithinGrace, rep.Violations, rep.FlaggedStale)
	fmt.Fprintf(&b, "  final reads     %d (instance, key) reads wrong after the writers stopped (lost)", rep.Lost)
	if rep.LostInRedis > 0 {
		fmt.Fprintf(&b, "; %d keys read alike by every instance: Redis itself lost the acknowledged operation", rep.LostInRedis)
	}
	b.WriteString("\n")
	for _, e := range rep.Examples {
		fmt.Fprintf(&b, "  VIOLATION       %s\n", e)
	}
	if n := rep.Violations + rep.Lost - len(rep.Examples); n > 0 {
		fmt.Fprintf(&b, "  ...             and %d more (one example per instance and key)\n", n)
	}
	for _, f := range rep.Faults {
		if f.Error != "" {
			fmt.Fprintf(&b, "  fault           %s at %v: %s\n", f.Name, f.At, f.Error)
			continue
		}
		fmt.Fprintf(&b, "  fault           %s at %v: writes acknowledged again after %v at most\n", f.Name, f.At, f.WriteOutage.Round(time.Millisecond))
		if f.Instance != "" {
			fmt.Fprintf(&b, "                  %s: no answer for %v at most, %d operations failed; its reads begun within %v of the fault may lag that much beyond the grace\n",
				f.Instance, f.InstanceOutage.Round(time.Millisecond), f.InstanceErrors, f.Tolerance.Round(time.Millisecond))
		}
	}
	for _, e := range rep.ErrorExamples {
		fmt.Fprintf(&b, "  ERROR           %s\n", e)
	}
	if rep.Problem != "" {
		fmt.Fprintf(&b, "  PROBLEM         %s\n", rep.Problem)
	}
	fmt.Fprintf(&b, "  cleanup         %s\n", rep.Cleanup)
	_, err := io.WriteString(w, b.String())
	return err
}

// OpenCaches opens n library caches with opts, in a namespace of the
// run's own under opts.Namespace (NS:verify-<random>, which an ACL that
// allows ~NS:* allows too), each with its
// own L1 and connections, as n processes of an application would be. The
// recovery queue is off, so that an operation that returns is applied or
// failed. links[i], when given and not nil, carries the connections of
// instance i (for LinkPause). cleanup deletes the run's keys and the
// namespace's version keys, leaving nothing in Redis; close closes the
// caches.
func OpenCaches(opts tiercache.Options, n int, links ...*Link) (insts []Instance, cleanup func(ctx context.Context, keys, tags []string) error, close func(), err error) {
	base := opts.Namespace
	if base == "" {
		base = tiercache.DefaultNamespace
	}
	opts.Namespace = base + ":verify-" + strconv.FormatUint(rand.Uint64()>>24, 36)
	opts.RecoveryQueueSize = -1
	opts.RecoveryJournalDir = ""
	opts.Recorder = nil
	opts.TracerProvider = nil
	opts.Redis.LazyConnect = false
	var caches []*tiercache.Cache
	close = func() {
		for _, c := range caches {
			_ = c.Close()
		}
	}
	for i := range n {
		o := opts
		if i < len(links) && links[i] != nil {
			o.Redis.DialContext = links[i].Dial
		}
		c, err := tiercache.New(o)
		if err != nil {
			close()
			return nil, nil, nil, err
		}
		caches = append(caches, c)
		insts = append(insts, CacheInstance{Label: fmt.Sprintf("cache-%d", i+1), Cache: c})
	}
	cleanup = func(ctx context.Context, keys, tags []string) error {
		if err := caches[0].Delete(ctx, keys...); err != nil {
			return err
		}
		// Nothing is left of the namespace: not its entries, not the
		// version keys its invalidations created.
		return caches[0].DropVersions(ctx, tags...)
	}
	return insts, cleanup, close, nil
}
