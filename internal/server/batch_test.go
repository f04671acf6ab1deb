package server

import (
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
)

// batchAnswer is the body of a 200 answer to POST /v1/mget, as a client
// decodes it.
type batchAnswer struct {
	Items []struct {
		Key         string       `json:"key"`
		Status      string       `json:"status"`
		Value       *string      `json:"value"`
		ContentType string       `json:"content_type"`
		ETag        string       `json:"etag"`
		Age         *int64       `json:"age"`
		TTL         *int64       `json:"ttl"`
		Error       *errorDetail `json:"error"`
	} `json:"items"`
}

// mget posts keys to /v1/mget and decodes the 200 answer.
func mget(t *testing.T, ts *httptest.Server, keys []string, header ...string) batchAnswer {
	t.Helper()
	body, _ := json.Marshal(map[string][]string{"keys": keys})
	r := do(t, ts, "POST", "/v1/mget", string(body), header...)
	wantStatus(t, r, http.StatusOK)
	var a batchAnswer
	if err := json.Unmarshal([]byte(r.body), &a); err != nil {
		t.Fatalf("mget answer %q: %v", r.body, err)
	}
	if len(a.Items) != len(keys) {
		t.Fatalf("mget of %d keys answered %d items: %s", len(keys), len(a.Items), r.body)
	}
	for i, it := range a.Items {
		if it.Key != keys[i] {
			t.Fatalf("item %d is %q, want %q (the order of the request)", i, it.Key, keys[i])
		}
	}
	return a
}

// value decodes the base64 value of item i, failing t when there is none.
func (a batchAnswer) value(t *testing.T, i int) []byte {
	t.Helper()
	it := a.Items[i]
	if it.Value == nil {
		t.Fatalf("item %s (%s) has no value", it.Key, it.Status)
	}
	b, err := base64.StdEncoding.DecodeString(*it.Value)
	if err != nil {
		t.Fatalf("item %s: value %q: %v", it.Key, *it.Value, err)
	}
	return b
}

// batchTopology starts a topology for the batch tests and returns the
// cache options for it and, but for memory, the masters holding data.
func batchTopology(t *testing.T, name string) (tiercache.Options, func() []*redistest.Server) {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	ns := "batch." + hex.EncodeToString(b[:])
	switch name {
	case "memory":
		return tiercache.Options{Namespace: ns}, nil
	case "standalone":
		s := redistest.NewStandalone(t)
		return tiercache.Options{Namespace: ns, Redis: tiercache.RedisOptions{Addrs: []string{s.Addr}}},
			func() []*redistest.Server { return []*redistest.Server{s} }
	case "sentinel":
		st := redistest.NewSentinel(t)
		return tiercache.Options{Namespace: ns, Redis: tiercache.RedisOptions{SentinelMaster: st.MasterName, SentinelAddrs: st.SentinelAddrs()}},
			func() []*redistest.Server { return []*redistest.Server{st.Master} }
	case "cluster":
		c := redistest.NewCluster(t)
		return tiercache.Options{Namespace: ns, Redis: tiercache.RedisOptions{Addrs: c.Addrs(), Cluster: true}},
			func() []*redistest.Server { return c.Masters }
	case "production":
		// The ACL user may only touch keys under "tiercache:".
		p := redistest.NewProduction(t)
		t.Cleanup(func() {
			// Every command the batches sent is one the ACL grants.
			if denied, err := p.ACLDenials(p.Username); err != nil || len(denied) > 0 {
				t.Errorf("the ACL refused the tiercache user: %v %v", denied, err)
			}
		})
		return tiercache.Options{Namespace: "tiercache:" + ns, Redis: tiercache.RedisOptions{Addrs: []string{p.Addr}, Username: p.Username, Password: p.Password}},
			func() []*redistest.Server { return []*redistest.Server{p.Master} }
	}
	t.Fatalf("unknown topology %q", name)
	return tiercache.Options{}, nil
}

// TestBatch_Topologies writes, reads and deletes batches on every
// topology: binary values round-trip, each item keeps its TTL and tags,
// the statuses say which tier answered, a tag invalidation turns its keys
// into misses, and on Cluster the keys are spread over the masters. Every
// malformed batch is refused and leaves nothing written.
func TestBatch_Topologies(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"memory", "standalone", "sentinel", "cluster", "production"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			opts, masters := batchTopology(t, name)
			c := newCache(t, opts)
			ts := newTestServer(t, Config{Cache: c, Timeout: 10 * time.Second})
			testBatchRoundTrip(t, ts, c, masters)
			testBatchRefused(t, ts)
		})
	}
}

func testBatchRoundTrip(t *testing.T, ts *httptest.Server, c *tiercache.Cache, masters func() []*redistest.Server) {
	const n = 24
	type item struct {
		Key   string   `json:"key"`
		Value string   `json:"value"`
		TTL   any      `json:"ttl,omitempty"`
		Tags  []string `json:"tags,omitempty"`
		Type  string   `json:"content_type,omitempty"`
	}
	var items []item
	var keys []string
	values := map[string][]byte{}
	for i := range n {
		k := fmt.Sprintf("user:%d", i)
		v := []byte{byte(i), 0, 0xff, '\n', '"'} // binary, with bytes JSON would escape
		it := item{Key: k, Value: base64.StdEncoding.EncodeToString(v)}
		switch i % 3 {
		case 0:
			it.TTL = (i + 1) * 60 // seconds, as a number
		case 1:
			it.TTL = fmt.Sprintf("%dm", i+1)
		}
		if i%2 == 0 {
			it.Tags = []string{"even", "org:7"}
		}
		if i%4 == 1 {
			it.Type = "image/png"
		}
		items = append(items, it)
		keys = append(keys, k)
		values[k] = v
	}
	body, _ := json.Marshal(map[string]any{"items": items})
	written := time.Now()
	wantStatus(t, do(t, ts, "POST", "/v1/mset", string(body)), http.StatusNoContent)
	if masters != nil {
		// On Cluster, several masters hold the keys; elsewhere the one.
		holders := 0
		for _, m := range masters() {
			for _, k := range keys {
				if n, err := m.Do("EXISTS", c.Namespace()+":"+k); err == nil && n == int64(1) {
					holders++
					break
				}
			}
		}
		if want := min(2, len(masters())); holders < want {
			t.Errorf("the keys are on %d of %d masters, want at least %d", holders, len(masters()), want)
		}
	}
	// The Go API reads what the batch wrote, under the same keys.
	var got []byte
	if err := c.Get(t.Context(), keys[5], &got); err != nil || string(got) != string(values[keys[5]]) {
		t.Fatalf("Get(%s) = %q, %v", keys[5], got, err)
	}

	ask := append([]string{"absent"}, keys...)
	for round := range 2 {
		a := mget(t, ts, ask)
		if a.Items[0].Status != "miss" || a.Items[0].Value != nil {
			t.Errorf("absent key: %+v, want a miss without a value", a.Items[0])
		}
		for i, k := range keys {
			it := a.Items[i+1]
			if it.Status != "hit-l1" && it.Status != "hit-l2" {
				t.Fatalf("round %d: %s status %q", round, k, it.Status)
			}
			if round == 1 && it.Status != "hit-l1" {
				t.Errorf("second read of %s: %s, want hit-l1", k, it.Status)
			}
			if v := a.value(t, i+1); string(v) != string(values[k]) {
				t.Errorf("%s = %x, want %x", k, v, values[k])
			}
			if want := cmp.Or(items[i].Type, "application/octet-stream"); it.ContentType != want {
				t.Errorf("%s content_type %q, want %q", k, it.ContentType, want)
			}
			var raw tiercache.Raw
			if res, err := c.Lookup(t.Context(), k, &raw); err != nil || it.ETag != `"`+res.ETag+`"` || len(res.ETag) != 16 {
				t.Errorf("%s etag %s, want the quoted ETag of the value (%q, %v)", k, it.ETag, res.ETag, err)
			}
			want := time.Hour // the default TTL
			if i%3 != 2 {
				want = time.Duration(i+1) * time.Minute
			}
			left := want - time.Since(written)
			if it.TTL == nil || *it.TTL > int64(want/time.Second) || *it.TTL < int64(left/time.Second)-1 {
				t.Errorf("%s ttl %v, want about %v", k, it.TTL, left)
			}
			if it.Age == nil || *it.Age < 0 || *it.Age > int64(time.Since(written)/time.Second)+1 {
				t.Errorf("%s age %v", k, it.Age)
			}
		}
	}

	// A new value has a new ETag.
	before := mget(t, ts, keys[1:2]).Items[0].ETag
	wantStatus(t, do(t, ts, "POST", "/v1/mset", `{"items":[{"key":"`+keys[1]+`","value":"bmV3"}]}`), http.StatusNoContent)
	if a := mget(t, ts, keys[1:2]); a.Items[0].ETag == before || string(a.value(t, 0)) != "new" || a.Items[0].ContentType != "application/octet-stream" {
		t.Errorf("rewritten %s: etag %s (was %s), %+v", keys[1], a.Items[0].ETag, before, a.Items[0])
	}

	wantStatus(t, do(t, ts, "POST", "/v1/invalidate", `{"tags":["even"]}`), http.StatusNoContent)
	a := mget(t, ts, keys[:4])
	for i, it := range a.Items {
		if want := i%2 == 0; want != (it.Status == "miss") {
			t.Errorf("after invalidating the tag even: %s is %s", it.Key, it.Status)
		}
	}

	body, _ = json.Marshal(map[string][]string{"keys": append(keys[:3:3], "never-written")})
	wantStatus(t, do(t, ts, "POST", "/v1/mdelete", string(body)), http.StatusNoContent)
	a = mget(t, ts, keys[:4])
	for i, it := range a.Items {
		if want := i < 3; want != (it.Status == "miss") {
			t.Errorf("after mdelete of the first three: %s is %s", it.Key, it.Status)
		}
	}
}

// testBatchRefused sends malformed batches naming the keys bad:0 and
// bad:1: each is refused with its status and code, and neither key is
// written or deleted.
func testBatchRefused(t *testing.T, ts *httptest.Server) {
	wantStatus(t, do(t, ts, "POST", "/v1/mset", `{"items":[{"key":"keep","value":"a2VlcA=="}]}`), http.StatusNoContent)
	good := `{"key":"bad:0","value":"YQ=="}`
	long := strings.Repeat("k", 1025)
	for _, tc := range []struct {
		name, path, body string
		status           int
		code             string
	}{
		{"empty body", "/v1/mset", "", 400, codeInvalidBody},
		{"not JSON", "/v1/mset", "items", 400, codeInvalidBody},
		{"truncated", "/v1/mset", `{"items":[` + good, 400, codeInvalidBody},
		{"an array", "/v1/mset", `[` + good + `]`, 400, codeInvalidBody},
		{"no items", "/v1/mset", `{"items":[]}`, 400, codeInvalidBody},
		{"null items", "/v1/mset", `{"items":null}`, 400, codeInvalidBody},
		{"unknown field", "/v1/mset", `{"items":[` + good + `],"ttl":"1m"}`, 400, codeInvalidBody},
		{"unknown item field", "/v1/mset", `{"items":[` + good + `,{"key":"bad:1","value":"YQ==","tll":"1m"}]}`, 400, codeInvalidBody},
		{"key a number", "/v1/mset", `{"items":[` + good + `,{"key":1,"value":"YQ=="}]}`, 400, codeInvalidBody},
		{"value a number", "/v1/mset", `{"items":[` + good + `,{"key":"bad:1","value":1}]}`, 400, codeInvalidBody},
		{"tags a string", "/v1/mset", `{"items":[` + good + `,{"key":"bad:1","value":"YQ==","tags":"t"}]}`, 400, codeInvalidBody},
		{"ttl a bool", "/v1/mset", `{"items":[` + good + `,{"key":"bad:1","value":"YQ==","ttl":true}]}`, 400, codeInvalidBody},
		{"ttl negative", "/v1/mset", `{"items":[` + good + `,{"key":"bad:1","value":"YQ==","ttl":-5}]}`, 400, codeInvalidBody},
		{"ttl unreadable", "/v1/mset", `{"items":[` + good + `,{"key":"bad:1","value":"YQ==","ttl":"soon"}]}`, 400, codeInvalidBody},
		{"value missing", "/v1/mset", `{"items":[` + good + `,{"key":"bad:1"}]}`, 400, codeInvalidBody},
		{"bad base64", "/v1/mset", `{"items":[` + good + `,{"key":"bad:1","value":"YQ"}]}`, 400, codeInvalidValue},
		{"URL base64", "/v1/mset", `{"items":[` + good + `,{"key":"bad:1","value":"-_8="}]}`, 400, codeInvalidValue},
		{"duplicate key", "/v1/mset", `{"items":[` + good + `,` + good + `]}`, 400, codeDuplicateKey},
		{"empty key", "/v1/mset", `{"items":[` + good + `,{"key":"","value":"YQ=="}]}`, 400, codeInvalidKey},
		{"long key", "/v1/mset", `{"items":[` + good + `,{"key":"` + long + `","value":"YQ=="}]}`, 400, codeInvalidKey},
		{"empty tag", "/v1/mset", `{"items":[` + good + `,{"key":"bad:1","value":"YQ==","tags":[""]}]}`, 400, codeInvalidTag},
		{"long tag", "/v1/mset", `{"items":[` + good + `,{"key":"bad:1","value":"YQ==","tags":["` + long + `"]}]}`, 400, codeInvalidTag},
		{"bad content type", "/v1/mset", `{"items":[` + good + `,{"key":"bad:1","value":"YQ==","content_type":"not a type"}]}`, 400, codeInvalidContentType},
		{"content type a list", "/v1/mset", `{"items":[` + good + `,{"key":"bad:1","value":"YQ==","content_type":["a/b"]}]}`, 400, codeInvalidBody},
		{"not the JSON it claims", "/v1/mset", `{"items":[` + good + `,{"key":"bad:1","value":"e30=","content_type":"application/json"},{"key":"bad:2","value":"bm90IGpzb24=","content_type":"application/json"}]}`, 400, codeInvalidValue},
		{"trailing data", "/v1/mset", `{"items":[` + good + `]} {}`, 400, codeInvalidBody},
		{"query parameter", "/v1/mset?ttl=1m", `{"items":[` + good + `]}`, 400, codeInvalidParameter},
		{"mdelete duplicate", "/v1/mdelete", `{"keys":["keep","keep"]}`, 400, codeDuplicateKey},
		{"mdelete empty key", "/v1/mdelete", `{"keys":["keep",""]}`, 400, codeInvalidKey},
		{"mdelete long key", "/v1/mdelete", `{"keys":["keep","` + long + `"]}`, 400, codeInvalidKey},
		{"mdelete no keys", "/v1/mdelete", `{"keys":[]}`, 400, codeInvalidBody},
		{"mdelete keys a string", "/v1/mdelete", `{"keys":"keep"}`, 400, codeInvalidBody},
		{"mget duplicate", "/v1/mget", `{"keys":["keep","keep"]}`, 400, codeDuplicateKey},
		{"mget empty body", "/v1/mget", ``, 400, codeInvalidBody},
		{"mget long key", "/v1/mget", `{"keys":["keep","` + long + `"]}`, 400, codeInvalidKey},
		{"mget unknown field", "/v1/mget", `{"keys":["keep"],"all":true}`, 400, codeInvalidBody},
	} {
		r := do(t, ts, "POST", tc.path, tc.body)
		wantStatus(t, r, tc.status)
		if e := decodeError(t, r); e.Error.Code != tc.code {
			t.Errorf("%s: code %q (%s), want %q", tc.name, e.Error.Code, e.Error.Message, tc.code)
		}
	}
	a := mget(t, ts, []string{"bad:0", "bad:1", "keep", "bad:2"})
	if a.Items[0].Status != "miss" || a.Items[1].Status != "miss" || a.Items[3].Status != "miss" || string(a.value(t, 2)) != "keep" {
		t.Errorf("after refused batches: %+v; want nothing written and keep kept", a.Items)
	}
}

// TestBatch_Limits: more keys than MaxBatchKeys, a body over
// MaxBatchBytes and a value over MaxValueSize answer 413, and nothing is
// written; an mget whose values exceed MaxBatchBytes answers 413 too.
func TestBatch_Limits(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{MaxBatchKeys: 3, MaxBatchBytes: 300, MaxValueSize: 16})
	item := func(k, v string) string {
		return fmt.Sprintf(`{"key":%q,"value":%q}`, k, base64.StdEncoding.EncodeToString([]byte(v)))
	}
	for _, tc := range []struct {
		name, path, body, code string
	}{
		{"four items", "/v1/mset", `{"items":[` + item("a", "1") + `,` + item("b", "2") + `,` + item("c", "3") + `,` + item("d", "4") + `]}`, codeTooManyKeys},
		{"four keys to read", "/v1/mget", `{"keys":["a","b","c","d"]}`, codeTooManyKeys},
		{"four keys to delete", "/v1/mdelete", `{"keys":["a","b","c","d"]}`, codeTooManyKeys},
		{"a large body", "/v1/mset", `{"items":[` + item("a", strings.Repeat("x", 15)) + `,` + item("b", strings.Repeat("y", 400)) + `]}`, codeBodyTooLarge},
		{"white space past the limit", "/v1/mget", `{"keys":["a"]}` + strings.Repeat(" ", 400), codeBodyTooLarge},
		{"a large value", "/v1/mset", `{"items":[` + item("a", "1") + `,` + item("b", strings.Repeat("y", 17)) + `]}`, codeValueTooLarge},
	} {
		r := do(t, ts, "POST", tc.path, tc.body)
		wantStatus(t, r, http.StatusRequestEntityTooLarge)
		if e := decodeError(t, r); e.Error.Code != tc.code {
			t.Errorf("%s: code %q (%s), want %q", tc.name, e.Error.Code, e.Error.Message, tc.code)
		}
	}
	a := mget(t, ts, []string{"a", "b"})
	if a.Items[0].Status != "miss" || a.Items[1].Status != "miss" {
		t.Errorf("after refused batches: %+v, want nothing written", a.Items)
	}
	// At the limits exactly, the batch is taken.
	wantStatus(t, do(t, ts, "POST", "/v1/mset", `{"items":[`+item("a", strings.Repeat("x", 16))+`,`+item("b", "2")+`,`+item("c", "3")+`]}`), http.StatusNoContent)
	if a := mget(t, ts, []string{"a", "b", "c"}); string(a.value(t, 0)) != strings.Repeat("x", 16) {
		t.Errorf("a = %q", a.value(t, 0))
	}

	// An mget answer is bounded like a body: three values of 100 bytes
	// take 408 bytes in base64, more than 300.
	ts = newTestServer(t, Config{MaxBatchBytes: 300, MaxValueSize: 100})
	for _, k := range []string{"x", "y", "z"} {
		wantStatus(t, do(t, ts, "POST", "/v1/mset", `{"items":[`+item(k, strings.Repeat(k, 100))+`]}`), http.StatusNoContent)
	}
	r := do(t, ts, "POST", "/v1/mget", `{"keys":["x","y","z"]}`)
	wantStatus(t, r, http.StatusRequestEntityTooLarge)
	if e := decodeError(t, r); e.Error.Code != codeBodyTooLarge {
		t.Errorf("mget of 408 bytes of values: code %q, want %q", e.Error.Code, codeBodyTooLarge)
	}
	if a := mget(t, ts, []string{"x", "y"}); string(a.value(t, 1)) != strings.Repeat("y", 100) {
		t.Errorf("mget of 272 bytes of values: %+v", a.Items)
	}
	if _, err := New(Config{Cache: newCache(t, tiercache.Options{}), MaxBatchKeys: -1}); err == nil {
		t.Error("New accepted a negative MaxBatchKeys")
	}
}

// TestBatch_Auth: with a token, mset and mdelete need it; mget needs it
// too unless reads are open.
func TestBatch_Auth(t *testing.T) {
	t.Parallel()
	auth := []string{"Authorization", "Bearer " + testToken}
	for _, open := range []bool{false, true} {
		ts := newTestServer(t, Config{Token: testToken, OpenReads: open})
		for _, tc := range []struct{ path, body string }{
			{"/v1/mset", `{"items":[{"key":"a","value":"YQ=="}]}`},
			{"/v1/mdelete", `{"keys":["a"]}`},
		} {
			wantStatus(t, do(t, ts, "POST", tc.path, tc.body), http.StatusUnauthorized)
			if tc.path == "/v1/mset" {
				wantStatus(t, do(t, ts, "POST", tc.path, tc.body, auth...), http.StatusNoContent)
			}
		}
		r := do(t, ts, "POST", "/v1/mget", `{"keys":["a"]}`)
		if open {
			wantStatus(t, r, http.StatusOK)
			if !strings.Contains(r.body, `"status":"hit-l1"`) {
				t.Errorf("open mget: %s", r.body)
			}
		} else {
			wantStatus(t, r, http.StatusUnauthorized)
			mget(t, ts, []string{"a"}, auth...)
		}
	}
}

// TestBatch_JSONValue: as with a PUT, a value stored with a JSON content
// type is stored with the JSON codec, so that Go code reads it into its
// own types, and mget gives the content type back.
func TestBatch_JSONValue(t *testing.T) {
	t.Parallel()
	c := newCache(t, tiercache.Options{})
	ts := newTestServer(t, Config{Cache: c})
	v := base64.StdEncoding.EncodeToString([]byte(`{"name":"Ada"}`))
	wantStatus(t, do(t, ts, "POST", "/v1/mset", `{"items":[{"key":"user:1","value":"`+v+`","content_type":"application/json; charset=utf-8"}]}`), http.StatusNoContent)
	var u struct {
		Name string `json:"name"`
	}
	if err := c.Get(t.Context(), "user:1", &u); err != nil || u.Name != "Ada" {
		t.Errorf("Get into a struct: %+v, %v", u, err)
	}
	if a := mget(t, ts, []string{"user:1"}); a.Items[0].ContentType != "application/json; charset=utf-8" || string(a.value(t, 0)) != `{"name":"Ada"}` {
		t.Errorf("mget: %+v", a.Items[0])
	}
}
