package cli

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tiercache/tiercache/config"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/internal/tiercachetest"
)

// clearHardeningEnv is clearEnv.
func clearHardeningEnv(t *testing.T) { clearEnv(t) }

// serveWith runs serve with the configuration that the variables env give
// until the test ends, and returns the bound address.
func serveWith(t *testing.T, env map[string]string) string {
	t.Helper()
	cfg, err := config.Load(config.Sources{LookupEnv: func(name string) (string, bool) {
		if name == "STATE_DIRECTORY" {
			return t.TempDir(), true
		}
		v, ok := env[name]
		return v, ok
	}})
	if err != nil {
		t.Fatal(err)
	}
	logs := &tiercachetest.Buffer{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	deadline := time.Now().Add(runTimeout)
	for {
		if m := listeningLine.FindStringSubmatch(logs.String()); m != nil {
			return m[1]
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("serve returned before listening: %v\n%s", err, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no startup line after %v:\n%s", runTimeout, logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// trickle writes first, then one byte of more every 50 ms until the
// connection fails or stop is closed.
func trickle(conn net.Conn, first, more string, stop <-chan struct{}) {
	if _, err := io.WriteString(conn, first); err != nil {
		return
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if _, err := conn.Write([]byte{more[i%len(more)]}); err != nil {
			return
		}
	}
}

// TestServe_SlowClientsCutOff checks the server's timeouts: a client that
// sends its headers or its body a byte at a time, or idles on a
// keep-alive connection, is disconnected once the timeout passes instead
// of holding the connection open.
func TestServe_SlowClientsCutOff(t *testing.T) {
	clearHardeningEnv(t)
	const timeout = 300 * time.Millisecond
	addr := serveWith(t, map[string]string{
		"TIERCACHE_ADDR": "127.0.0.1:0", "TIERCACHE_READ_HEADER_TIMEOUT": timeout.String(),
		"TIERCACHE_HTTP_READ_TIMEOUT": timeout.String(), "TIERCACHE_HTTP_WRITE_TIMEOUT": "5s",
		"TIERCACHE_HTTP_IDLE_TIMEOUT": timeout.String(),
	})
	for _, tc := range []struct {
		name        string
		first, more string
		wantStatus  string // the start of the answer, if the server sends one
	}{
		{name: "slow headers", first: "GET /healthz HTTP/1.1\r\nHost: x\r\n", more: "X-Slow: loris\r\n"},
		{name: "slow body", first: "PUT /v1/cache/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", more: "abcdefgh",
			wantStatus: "HTTP/1.1 400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			stop := make(chan struct{})
			defer close(stop)
			start := time.Now()
			go trickle(conn, tc.first, tc.more, stop)
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			answer, err := io.ReadAll(conn)
			took := time.Since(start)
			// Closing with unread input resets the connection: that too is
			// the server cutting it off.
			if err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("the connection stayed open for %v: %v", took, err)
			}
			if took < timeout/2 || took > 3*time.Second {
				t.Errorf("cut off after %v, want about %v", took, timeout)
			}
			if tc.wantStatus != "" && len(answer) > 0 && !strings.HasPrefix(string(answer), tc.wantStatus) {
				t.Errorf("answer %q, want one starting %q", answer, tc.wantStatus)
			}
			t.Logf("cut off after %v", took)
		})
	}
	t.Run("idle keep-alive", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(conn)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /healthz: %d", resp.StatusCode)
		}
		start := time.Now()
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := r.ReadByte(); err != io.EOF {
			t.Fatalf("idle connection: read %v, want EOF", err)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("idle connection closed after %v, want about %v", took, timeout)
		}
	})
}

// TestServe_TLS serves HTTPS with a certificate from flags or the
// environment.
func TestServe_TLS(t *testing.T) {
	certs := redistest.NewTLSFiles(t)
	clearHardeningEnv(t)
	addr := serveWith(t, map[string]string{"TIERCACHE_ADDR": "127.0.0.1:0", "TIERCACHE_TLS_CERT": certs.CertFile, "TIERCACHE_TLS_KEY": certs.KeyFile})

	trusting := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.CAs}}}
	resp, err := trusting.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("GET over TLS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("GET over TLS: %d, TLS %v", resp.StatusCode, resp.TLS != nil)
	}
	if _, err := (&http.Client{Timeout: 10 * time.Second}).Get("https://" + addr + "/healthz"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("GET with the system roots: %v, want a certificate error", err)
	}
	resp, err = http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("plain GET: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("plain HTTP to the TLS port: %d, want 400", resp.StatusCode)
	}

	t.Run("environment", func(t *testing.T) {
		t.Setenv("TIERCACHE_TLS_CERT", certs.CertFile)
		t.Setenv("TIERCACHE_TLS_KEY", certs.KeyFile)
		s := startServe(t, "serve", "--addr", "127.0.0.1:0")
		if !strings.Contains(s.stderr.String(), "tls=true") {
			t.Errorf("startup line without tls=true:\n%s", s.stderr)
		}
		resp, err := trusting.Get("https://" + s.addr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"cert without key", []string{"--tls-cert", certs.CertFile}, "--tls-cert: http.tls_cert: needs http.tls_key too"},
		{"unreadable cert", []string{"--tls-cert", filepath.Join(certs.Dir, "nope.crt"), "--tls-key", certs.KeyFile}, "load the TLS certificate"},
		{"mismatched pair", []string{"--tls-cert", certs.CertFile, "--tls-key", certs.ClientKeyFile}, "load the TLS certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr tiercachetest.Buffer
			code := Run(t.Context(), append([]string{"serve", "--addr", "127.0.0.1:0"}, tc.args...), io.Discard, &stderr)
			want := exitError
			if tc.name == "cert without key" {
				want = exitUsage // a flag is wrong
			}
			if code != want || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit code %d, stderr lacks %q:\n%s", code, tc.want, &stderr)
			}
		})
	}
}

// TestServe_TokenFile reads the bearer token from TIERCACHE_TOKEN_FILE.
func TestServe_TokenFile(t *testing.T) {
	clearHardeningEnv(t)
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TIERCACHE_TOKEN_FILE", path)
	s := startServe(t, "serve", "--addr", "127.0.0.1:0")
	url := "http://" + s.addr + "/v1/cache/k"
	if code, body := request(t, "PUT", url, "v", ""); code != http.StatusUnauthorized {
		t.Errorf("PUT without the token: %d %s", code, body)
	}
	if code, body := request(t, "PUT", url, "v", testToken); code != http.StatusNoContent {
		t.Errorf("PUT with the token from the file: %d %s", code, body)
	}
	s.stop(t)

	t.Setenv("TIERCACHE_TOKEN", testToken)
	var stderr tiercachetest.Buffer
	if code := Run(t.Context(), []string{"serve", "--addr", "127.0.0.1:0"}, io.Discard, &stderr); code != exitError ||
		!strings.Contains(stderr.String(), "set only one") || strings.Contains(stderr.String(), testToken) {
		t.Errorf("token and token file: exit %d:\n%s", code, &stderr)
	}
}
