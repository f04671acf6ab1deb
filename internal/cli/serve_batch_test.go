package cli

import (
	"net/http"
	"strings"
	"testing"
)

// TestRun_ServeBatchLimits: serve takes the batch limits from the
// environment (http.max_batch_keys, http.max_batch_bytes), and with open
// reads mget needs no token while mset does.
func TestRun_ServeBatchLimits(t *testing.T) {
	clearEnv(t)
	t.Setenv("TIERCACHE_MAX_BATCH_KEYS", "2")
	t.Setenv("TIERCACHE_MAX_BATCH_BYTES", "1KiB")
	t.Setenv("TIERCACHE_OPEN_READS", "true")
	s := startServe(t, "serve", "--addr", "127.0.0.1:0", "--token", testToken)
	base := "http://" + s.addr + "/v1/"

	two := `{"items":[{"key":"a","value":"YQ==","ttl":"1m"},{"key":"b","value":"Yg=="}]}`
	if code, body := request(t, "POST", base+"mset", two, ""); code != http.StatusUnauthorized {
		t.Errorf("mset without the token: %d %s, want 401", code, body)
	}
	if code, body := request(t, "POST", base+"mset", two, testToken); code != http.StatusNoContent {
		t.Errorf("mset of 2 items: %d %s, want 204", code, body)
	}
	three := `{"keys":["a","b","c"]}`
	if code, body := request(t, "POST", base+"mget", three, ""); code != http.StatusRequestEntityTooLarge || !strings.Contains(body, `"too_many_keys"`) {
		t.Errorf("mget of 3 keys: %d %s, want 413 too_many_keys", code, body)
	}
	large := `{"items":[{"key":"a","value":"` + strings.Repeat("QUFB", 300) + `"}]}`
	if code, body := request(t, "POST", base+"mset", large, testToken); code != http.StatusRequestEntityTooLarge || !strings.Contains(body, `"body_too_large"`) {
		t.Errorf("mset of a 1.2 KB body: %d %s, want 413 body_too_large", code, body)
	}
	code, body := request(t, "POST", base+"mget", `{"keys":["a","b"]}`, "")
	if code != http.StatusOK || !strings.Contains(body, `"value":"YQ=="`) || !strings.Contains(body, `"value":"Yg=="`) {
		t.Errorf("mget without the token, reads open: %d %s", code, body)
	}
	if code := s.stop(t); code != 0 {
		t.Errorf("exit code %d:\n%s", code, s.stderr)
	}
}
