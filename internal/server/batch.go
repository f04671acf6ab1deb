package server

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tiercache/tiercache"
)

// DefaultMaxBatchKeys is the Config.MaxBatchKeys used when it is zero.
const DefaultMaxBatchKeys = 1000

// DefaultMaxBatchBytes is the least Config.MaxBatchBytes used when it is
// zero: the body of a batch may always hold one value of the largest size
// (see maxBatchBytes).
const DefaultMaxBatchBytes = 32 << 20

// maxBatchBytes is the body limit of a batch when Config.MaxBatchBytes is
// zero: DefaultMaxBatchBytes, or one value of maxValue bytes in base64
// plus 1 MiB for the rest of the JSON, whichever is larger.
func maxBatchBytes(maxValue int64) int64 {
	return max(DefaultMaxBatchBytes, int64(base64.StdEncoding.EncodedLen(int(maxValue)))+1<<20)
}

// keysRequest is the body of POST /v1/mget and POST /v1/mdelete.
type keysRequest struct {
	Keys []string `json:"keys"`
}

// msetRequest is the body of POST /v1/mset.
type msetRequest struct {
	Items []msetItem `json:"items"`
}

// msetItem is one entry of POST /v1/mset. TTL is a JSON number of
// seconds or a string as the ttl query parameter of a PUT takes it; Value
// is a pointer so that a missing value is told from an empty one.
type msetItem struct {
	Key         string          `json:"key"`
	Value       *string         `json:"value"`
	TTL         json.RawMessage `json:"ttl"`
	Tags        []string        `json:"tags"`
	ContentType string          `json:"content_type"`
}

// mgetAnswer is the body of a 200 answer to POST /v1/mget.
type mgetAnswer struct {
	Items []mgetItem `json:"items"`
}

// mgetItem is the answer for one key, in the order of the request.
type mgetItem struct {
	Key string `json:"key"`
	// Status is hit-l1, hit-l2 or stale (Value set), miss, or error
	// (Error set).
	Status      string       `json:"status"`
	Value       *string      `json:"value,omitempty"` // base64 (RFC 4648, padded)
	ContentType string       `json:"content_type,omitempty"`
	ETag        string       `json:"etag,omitempty"` // as the ETag header of a GET: quoted
	Age         *int64       `json:"age,omitempty"`  // seconds since the value was written
	TTL         *int64       `json:"ttl,omitempty"`  // seconds of freshness left; negative once expired
	Tags        []string     `json:"tags,omitempty"` // the tags the value was written with
	Error       *errorDetail `json:"error,omitempty"`
}

// mget answers POST /v1/mget with body {"keys":["a","b"]}: 200 with one
// item per key, in order, each with its own status. L1 misses are read
// from Redis in one round trip per node; a key Redis cannot answer for is
// answered stale from L1 when fail-safe holds it, and is an error item
// otherwise, without failing the other keys.
func (s *Server) mget(w http.ResponseWriter, r *http.Request) {
	var req keysRequest
	if !s.checkQuery(w, r) || !s.decodeBatch(w, r, &req, `{"keys":["a","b"]}`) || !s.checkKeyList(w, req.Keys, "keys") {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	values := make(map[string]tiercache.Raw, len(req.Keys))
	results, err := s.cache.LookupMany(ctx, req.Keys, values)
	if err != nil {
		s.writeBatchError(ctx, w, r, err, req.Keys, "keys")
		return
	}
	if n := answerBytes(values); n > s.maxBatchBytes {
		s.writeError(w, http.StatusRequestEntityTooLarge, codeBodyTooLarge,
			fmt.Sprintf("the values asked for take %d bytes in base64, more than the limit of %d; ask for fewer keys", n, s.maxBatchBytes))
		return
	}
	now := time.Now()
	ans := mgetAnswer{Items: make([]mgetItem, len(results))}
	var failed error // the first key that failed, for the log
	for i, res := range results {
		it := &ans.Items[i]
		it.Key = res.Key
		switch {
		case res.Err == nil:
			raw := values[res.Key]
			v := base64.StdEncoding.EncodeToString(raw.Data)
			it.Status, it.Value, it.ContentType = res.Result.Source.String(), &v, cmp.Or(raw.ContentType, contentType(raw.Codec))
			if res.Result.ETag != "" {
				it.ETag = `"` + res.Result.ETag + `"`
			}
			it.Age, it.TTL = ageAndTTL(res.Result, now)
			it.Tags = res.Result.Tags
		case errors.Is(res.Err, tiercache.ErrNotFound) && !errors.Is(res.Err, tiercache.ErrNotTiercache):
			it.Status = tiercache.SourceNone.String()
		default:
			it.Status = "error"
			it.Error = s.keyErrorDetail(ctx, res.Err)
			if failed == nil {
				failed = res.Err
			}
		}
	}
	if failed != nil {
		// One line per request, not per key: the first cause.
		_, code, _, level := s.classify(failed)
		s.logCause(r, level, code, failed)
	}
	writeJSON(w, http.StatusOK, ans)
}

// answerBytes is the size of the values of an mget answer in base64: the
// answer is bounded like a request's body, so that a batch of large
// values cannot make one answer of gigabytes.
func answerBytes(values map[string]tiercache.Raw) int64 {
	var n int64
	for _, v := range values {
		n += int64(base64.StdEncoding.EncodedLen(len(v.Data)))
	}
	return n
}

// keyErrorDetail is the error of one key of a batch read, in the terms
// of the API, as writeCacheError would answer it for a single key.
func (s *Server) keyErrorDetail(ctx context.Context, err error) *errorDetail {
	status, code, msg, _ := s.classify(err)
	if status == http.StatusServiceUnavailable && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		code, msg = codeTimeout, fmt.Sprintf("the cache did not answer within %v; retry later", s.timeout)
	}
	return &errorDetail{Code: code, Message: msg}
}

// ageAndTTL are the seconds since res was written and the seconds of
// freshness it has left, when it records them; nil otherwise.
func ageAndTTL(res tiercache.Result, now time.Time) (age, ttl *int64) {
	if !res.CreatedAt.IsZero() {
		a := max(0, int64(now.Sub(res.CreatedAt)/time.Second))
		age = &a
	}
	if !res.ExpiresAt.IsZero() {
		left := res.ExpiresAt.Sub(now)
		secs := int64(left / time.Second)
		if left < 0 && left%time.Second != 0 {
			secs-- // an expired value is at least one second past
		}
		ttl = &secs
	}
	return age, ttl
}

// mset answers POST /v1/mset with body {"items":[{"key":"a","value":
// "<base64>","ttl":"30s","tags":["t"],"content_type":"text/plain"}]}: 204
// once Redis acknowledged every item, 202 when Redis is unreachable and
// they were queued. Every item is checked before anything is written.
func (s *Server) mset(w http.ResponseWriter, r *http.Request) {
	var req msetRequest
	if !s.checkQuery(w, r) || !s.decodeBatch(w, r, &req, `{"items":[{"key":"a","value":"<base64>"}]}`) {
		return
	}
	keys := make([]string, len(req.Items))
	for i, it := range req.Items {
		keys[i] = it.Key
	}
	if !s.checkKeyList(w, keys, "items") {
		return
	}
	items := make([]tiercache.Item, len(req.Items))
	for i, it := range req.Items {
		item, status, code, msg := s.msetItem(it)
		if msg != "" {
			s.writeError(w, status, code, fmt.Sprintf("items[%d]: %s", i, msg))
			return
		}
		items[i] = item
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	if err := s.cache.SetItems(ctx, items); err != nil {
		s.writeBatchError(ctx, w, r, err, keys, "items")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// msetItem checks one item of a POST /v1/mset and turns it into a
// tiercache.Item; msg is not empty when the item is refused. As with a
// PUT, the content type picks the codec (bodyCodec): the cache refuses a
// JSON or MessagePack value that does not parse, before writing anything.
func (s *Server) msetItem(it msetItem) (item tiercache.Item, status int, code, msg string) {
	if it.Value == nil {
		return item, http.StatusBadRequest, codeInvalidBody, `"value" is missing (base64; "" for an empty value)`
	}
	value, err := base64.StdEncoding.DecodeString(*it.Value)
	if err != nil {
		return item, http.StatusBadRequest, codeInvalidValue, fmt.Sprintf(`"value" is not standard base64 (RFC 4648, padded): %v`, err)
	}
	if int64(len(value)) > s.maxValueSize {
		return item, http.StatusRequestEntityTooLarge, codeValueTooLarge,
			fmt.Sprintf("the value is %d bytes, larger than %d", len(value), s.maxValueSize)
	}
	ttl, err := batchTTL(it.TTL)
	if err != nil {
		return item, http.StatusBadRequest, codeInvalidBody, err.Error()
	}
	for _, t := range it.Tags {
		if t == "" {
			return item, http.StatusBadRequest, codeInvalidTag, `"tags" holds an empty tag`
		}
	}
	if err := tiercache.CheckContentType(it.ContentType); err != nil {
		return item, http.StatusBadRequest, codeInvalidContentType,
			fmt.Sprintf(`"content_type" %q is not a media type such as "application/json" (printable ASCII, at most 255 bytes)`, truncate(it.ContentType, 64))
	}
	return tiercache.Item{Key: it.Key, Value: tiercache.Raw{Codec: bodyCodec(it.ContentType), ContentType: it.ContentType, Data: value}, TTL: ttl, Tags: it.Tags}, 0, "", ""
}

// batchTTL reads the ttl of an item: absent or null for the default, a
// positive number of seconds, or a string that the ttl query parameter
// of a PUT takes ("30s", "1h30m", "90").
func batchTTL(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	v := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &v); err != nil {
			return 0, fmt.Errorf(`"ttl" is not a JSON string: %v`, err)
		}
	} else if _, err := strconv.ParseFloat(v, 64); err != nil {
		return 0, fmt.Errorf(`"ttl" must be a number of seconds or a string such as "30s", not %s`, truncate(v, 32))
	}
	return parseTTL(v)
}

// mdelete answers POST /v1/mdelete with body {"keys":["a","b"]}: 204
// once every key is deleted, 202 when Redis is unreachable and the
// deletes were queued. Deleting a missing key succeeds.
func (s *Server) mdelete(w http.ResponseWriter, r *http.Request) {
	var req keysRequest
	if !s.checkQuery(w, r, "soft") {
		return
	}
	soft, ok := s.softParam(w, r)
	if !ok || !s.decodeBatch(w, r, &req, `{"keys":["a","b"]}`) || !s.checkKeyList(w, req.Keys, "keys") {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	del := s.cache.Delete
	if soft {
		del = s.cache.DeleteSoft
	}
	if err := del(ctx, req.Keys...); err != nil {
		s.writeBatchError(ctx, w, r, err, req.Keys, "keys")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// decodeBatch reads the JSON body of a batch into dst, bounded by
// maxBatchBytes, refusing unknown fields and anything after the object.
// It answers 413 or 400 and returns false when the body does not do.
// shape is an example body for the messages.
func (s *Server) decodeBatch(w http.ResponseWriter, r *http.Request, dst any, shape string) bool {
	body := http.MaxBytesReader(w, r.Body, s.maxBatchBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil && dec.More() {
		err = errors.New("the body must hold one JSON object, and nothing after it")
	}
	if err == nil {
		// Only white space is left: read it to the end, so that a body
		// larger than the limit is refused however early its JSON ends.
		_, err = io.Copy(io.Discard, body)
	}
	if err == nil {
		return true
	}
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		s.writeError(w, http.StatusRequestEntityTooLarge, codeBodyTooLarge,
			fmt.Sprintf("the body is larger than %d bytes; split the batch", s.maxBatchBytes))
		return false
	}
	s.writeError(w, http.StatusBadRequest, codeInvalidBody, fmt.Sprintf("the body must be %s: %s", shape, jsonProblem(err)))
	return false
}

// jsonProblem describes a JSON decoding error without Go's type names.
func jsonProblem(err error) string {
	if errors.Is(err, io.EOF) {
		return "the body is empty"
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "the JSON ends early"
	}
	if e, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		want := e.Type.Kind().String()
		switch want {
		case "slice":
			want = "an array"
		case "struct", "map":
			want = "an object"
		case "int", "int64", "float64":
			want = "a number"
		case "string":
			want = "a string"
		}
		if e.Field == "" {
			return fmt.Sprintf("the body is a JSON %s, not an object", e.Value)
		}
		return fmt.Sprintf("%q must be %s, not a JSON %s", e.Field, want, e.Value)
	}
	if e, ok := errors.AsType[*json.SyntaxError](err); ok {
		return fmt.Sprintf("invalid JSON at byte %d: %s", e.Offset, strings.TrimPrefix(e.Error(), "json: "))
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// checkKeyList refuses an empty list, more keys than MaxBatchKeys, an
// empty key and a key given twice, answering 400 or 413. field names the
// list in the messages.
func (s *Server) checkKeyList(w http.ResponseWriter, keys []string, field string) bool {
	if len(keys) == 0 {
		s.writeError(w, http.StatusBadRequest, codeInvalidBody, fmt.Sprintf("%q must list at least one entry", field))
		return false
	}
	if len(keys) > s.maxBatchKeys {
		s.writeError(w, http.StatusRequestEntityTooLarge, codeTooManyKeys,
			fmt.Sprintf("%q lists %d entries, more than the limit of %d; split the batch", field, len(keys), s.maxBatchKeys))
		return false
	}
	seen := make(map[string]int, len(keys))
	for i, k := range keys {
		if k == "" {
			s.writeError(w, http.StatusBadRequest, codeInvalidKey, fmt.Sprintf("%s[%d]: the key is empty", field, i))
			return false
		}
		if j, dup := seen[k]; dup {
			s.writeError(w, http.StatusBadRequest, codeDuplicateKey,
				fmt.Sprintf("%s[%d] and %s[%d] name the same key %q; give each key once", field, j, field, i, truncate(k, 64)))
			return false
		}
		seen[k] = i
	}
	return true
}

// writeBatchError answers an error of a whole batch. A refused key or tag
// is named by its index in the list called field.
func (s *Server) writeBatchError(ctx context.Context, w http.ResponseWriter, r *http.Request, err error, keys []string, field string) {
	status, code, msg, _ := s.classify(err)
	if status >= 500 || errors.Is(err, tiercache.ErrQueued) {
		s.writeCacheError(ctx, w, r, err)
		return
	}
	if ke, ok := errors.AsType[*tiercache.KeyError](err); ok {
		for i, k := range keys {
			if k == ke.Key {
				msg = fmt.Sprintf("%s[%d]: %s", field, i, msg)
				break
			}
		}
	}
	s.writeError(w, status, code, msg)
}

// truncate shortens s for a message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
