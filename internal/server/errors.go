package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/tiercache/tiercache"
)

// Error codes: the stable "code" of an error answer. docs/http-api.md
// lists them all (TestDocs_ErrorCodes checks it); a client may switch on
// them, so a code never changes meaning.
const (
	codeInvalidKey         = "invalid_key"          // 400: empty, too long, or a malformed path
	codeInvalidParameter   = "invalid_parameter"    // 400: a query parameter (ttl, tags, unknown)
	codeInvalidTag         = "invalid_tag"          // 400: a tag the cache refuses
	codeInvalidBody        = "invalid_body"         // 400: a body that is not the expected JSON, or unreadable
	codeInvalidValue       = "invalid_value"        // 400: a batch item's value is not base64, or not valid for its content type
	codeInvalidContentType = "invalid_content_type" // 400: a Content-Type that is not a valid media type
	codeInvalidCondition   = "invalid_condition"    // 400: an If-Match or If-None-Match the endpoint does not take
	codeDuplicateKey       = "duplicate_key"        // 400: a batch names a key twice
	codeBadRequest         = "bad_request"          // 400: a request HTTP cannot parse (Listener), or another the router refuses
	codeUnauthorized       = "unauthorized"         // 401: the bearer token is missing or wrong
	codeNotFound           = "not_found"            // 404: no such key
	codeNoSuchEndpoint     = "no_such_endpoint"     // 404: no such path (or asset)
	codeMetricsDisabled    = "metrics_disabled"     // 404: GET /metrics on a server without metrics
	codeUnknownStrategy    = "unknown_strategy"     // 404: POST /v1/warm names a strategy that does not exist
	codeFleetDisabled      = "fleet_disabled"       // 404: GET /v1/fleet on a cache without the fleet registry
	codeMethodNotAllowed   = "method_not_allowed"   // 405
	codeNotOnDemand        = "not_on_demand"        // 409: the strategy cannot be run on demand
	codePreconditionFailed = "precondition_failed"  // 412: If-Match or If-None-Match does not hold
	codeNotTiercacheValue  = "not_tiercache_value"  // 422: the key holds bytes tiercache did not write
	codeValueTooLarge      = "value_too_large"      // 413
	codeBodyTooLarge       = "body_too_large"       // 413: a batch's body, or the values an mget asks for, over the limit
	codeTooManyKeys        = "too_many_keys"        // 413: a batch has more keys than the limit
	codeInternal           = "internal"             // 500
	codeUnavailable        = "unavailable"          // 503: Redis unreachable, breaker open, or the cache closed
	codeTimeout            = "timeout"              // 503: the cache did not answer within the server's timeout
	codeQueueFull          = "queue_full"           // 503: Redis unreachable and the recovery queue is full
	codeJournalFailed      = "journal_failed"       // 503: Redis unreachable and the recovery journal could not be written
	codeWarmingDisabled    = "warming_disabled"     // 503: POST /v1/warm on a server without warming
	codeWarmingUnavailable = "warming_unavailable"  // 503: the warming runner cannot start runs (stopping)
)

// errorBody is the JSON body of every error answer:
//
//	{"error": {"code": "not_found", "message": "..."}, "request_id": "..."}
type errorBody struct {
	Error     errorDetail `json:"error"`
	RequestID string      `json:"request_id,omitempty"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// writeError writes an error answer. The request id is the one the
// requestIDs middleware put in the answer's headers. Every 503 tells the
// client when to retry.
func (s *Server) writeError(w http.ResponseWriter, status int, code, msg string) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(s.retryAfterSeconds()))
	}
	writeJSON(w, status, errorBody{
		Error:     errorDetail{Code: code, Message: msg},
		RequestID: w.Header().Get(requestIDHeader),
	})
}

// retryAfterSeconds is Config.RetryAfter in whole seconds, at least 1.
func (s *Server) retryAfterSeconds() int {
	secs := int((s.retryAfter + 999_999_999) / 1_000_000_000)
	return max(1, secs)
}

// writeCacheError answers an error from the cache operation that ran
// under ctx (the request's context bounded by Config.Timeout). The
// message says what happened in terms of the API only: the cause (Redis's
// address and errors, the namespaced key) goes to the log with the
// request id.
func (s *Server) writeCacheError(ctx context.Context, w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, tiercache.ErrQueued) {
		// Redis is unreachable and the operation waits in the recovery
		// queue: accepted, not yet applied.
		s.logCause(r, slog.LevelDebug, "queued", err)
		writeJSON(w, http.StatusAccepted, queuedBody{
			Status:    "queued",
			Detail:    "Redis is unreachable: the operation is queued and will be applied as soon as Redis answers",
			RequestID: w.Header().Get(requestIDHeader),
		})
		return
	}
	status, code, msg, level := s.classify(err)
	if status == http.StatusServiceUnavailable && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// The server's own bound ran out, whatever the cache said.
		code, msg, level = codeTimeout, fmt.Sprintf("the cache did not answer within %v; retry later", s.timeout), slog.LevelWarn
	}
	if status >= 500 {
		s.logCause(r, level, code, err)
	}
	s.writeError(w, status, code, msg)
}

// classify maps an error from the cache to an answer and the level at
// which its cause is logged.
func (s *Server) classify(err error) (status int, code, msg string, level slog.Level) {
	switch {
	case errors.Is(err, tiercache.ErrNotTiercache):
		return http.StatusUnprocessableEntity, codeNotTiercacheValue,
			"the key holds a value tiercache did not write (no envelope: set by another program); cache.read_plain_values reads such values as raw bytes", slog.LevelDebug
	case errors.Is(err, tiercache.ErrNotFound):
		return http.StatusNotFound, codeNotFound, "no such key", slog.LevelDebug
	case errors.Is(err, tiercache.ErrInvalidKey):
		return http.StatusBadRequest, codeInvalidKey, "invalid key: " + causeText(err), slog.LevelDebug
	case errors.Is(err, tiercache.ErrInvalidTag):
		return http.StatusBadRequest, codeInvalidTag, "invalid tag: " + causeText(err), slog.LevelDebug
	case errors.Is(err, tiercache.ErrConditionFailed):
		return http.StatusPreconditionFailed, codePreconditionFailed,
			"the key's current value does not satisfy the request's If-Match or If-None-Match: nothing was written", slog.LevelDebug
	case errors.Is(err, tiercache.ErrInvalidValue):
		return http.StatusBadRequest, codeInvalidValue, "invalid value: " + causeText(err), slog.LevelDebug
	case errors.Is(err, tiercache.ErrValueTooLarge):
		return http.StatusRequestEntityTooLarge, codeValueTooLarge,
			fmt.Sprintf("the value is larger than the cache's limit of %d bytes", s.cache.MaxValueSize()), slog.LevelDebug
	case errors.Is(err, tiercache.ErrQueueFull):
		return http.StatusServiceUnavailable, codeQueueFull,
			"Redis is unreachable and the recovery queue is full: the operation was not applied; retry later", slog.LevelWarn
	case errors.Is(err, tiercache.ErrJournal):
		return http.StatusServiceUnavailable, codeJournalFailed,
			"Redis is unreachable and the operation could not be written to the recovery journal: it was not applied; retry later", slog.LevelError
	case errors.Is(err, tiercache.ErrClosed):
		return http.StatusServiceUnavailable, codeUnavailable, "the cache is shutting down", slog.LevelInfo
	case errors.Is(err, tiercache.ErrCircuitOpen):
		// The breaker logged when it opened: one line per request
		// would flood the log during an outage.
		return http.StatusServiceUnavailable, codeUnavailable,
			"Redis is unreachable (the circuit breaker is open); retry later", slog.LevelDebug
	}
	return http.StatusServiceUnavailable, codeUnavailable,
		"Redis is unreachable, failed or did not answer in time; retry later", slog.LevelWarn
}

// causeText is the innermost message of a validation error, without the
// operation, the key and the package prefix: "empty", "a tag must be 1 to
// 1024 bytes, got 0". Validation happens before the key is namespaced,
// and involves no Redis.
func causeText(err error) string {
	msg := err.Error()
	for _, p := range []string{"invalid key: ", "invalid tag: ", "invalid value: "} {
		if i := strings.LastIndex(msg, p); i >= 0 {
			msg = msg[i+len(p):]
		}
	}
	if strings.Contains(msg, "tiercache:") {
		return "refused by the cache"
	}
	return msg
}

// logCause logs the cause of an error answer with the request id, so that
// an operator can find what a client saw. Keys are the caller's, without
// the namespace; the cache's errors carry no passwords.
func (s *Server) logCause(r *http.Request, level slog.Level, code string, err error) {
	if !s.logger.Enabled(r.Context(), level) {
		return
	}
	s.logger.LogAttrs(r.Context(), level, "tiercache: HTTP request failed",
		slog.String("request_id", requestID(r)),
		slog.String("method", r.Method),
		slog.String("path", loggedPath(r)),
		slog.String("code", code),
		slog.String("err", err.Error()))
}

// queuedBody answers an operation accepted into the recovery queue.
type queuedBody struct {
	Status    string `json:"status"`
	Detail    string `json:"detail"`
	RequestID string `json:"request_id,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // messages are read by people and never embedded in HTML
	if err := enc.Encode(v); err != nil {
		// Unreachable for the package's own types; answer rather than panic.
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":{"code":"internal","message":"internal error"}}` + "\n")
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
