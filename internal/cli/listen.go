package cli

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

// Timeouts of the HTTP server. They cut off clients that send their
// request or read the answer too slowly (slowloris), and idle keep-alive
// connections.
const (
	defaultReadHeaderTimeout = 10 * time.Second
	defaultReadTimeout       = time.Minute
	defaultWriteTimeout      = time.Minute
	defaultIdleTimeout       = 2 * time.Minute
)

// httpTimeouts bound the phases of an HTTP connection. Zero fields mean
// the defaults above.
type httpTimeouts struct {
	readHeader, read, write, idle time.Duration
}

// apply sets the timeouts on hs.
func (t httpTimeouts) apply(hs *http.Server) {
	or := func(v, def time.Duration) time.Duration {
		if v > 0 {
			return v
		}
		return def
	}
	hs.ReadHeaderTimeout = or(t.readHeader, defaultReadHeaderTimeout)
	hs.ReadTimeout = or(t.read, defaultReadTimeout)
	hs.WriteTimeout = or(t.write, defaultWriteTimeout)
	hs.IdleTimeout = or(t.idle, defaultIdleTimeout)
}

// serverTLS loads the listener's certificate and key. Both empty means
// plain HTTP (nil); one without the other is an error.
func serverTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("TLS needs both a certificate (--tls-cert, TIERCACHE_TLS_CERT) and a key (--tls-key, TIERCACHE_TLS_KEY)")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load the TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// tokenFromEnv returns $TIERCACHE_TOKEN, or the content of the file that
// $TIERCACHE_TOKEN_FILE names less one trailing newline. Errors never hold
// the token.
func tokenFromEnv() (string, error) {
	token, path := os.Getenv("TIERCACHE_TOKEN"), os.Getenv("TIERCACHE_TOKEN_FILE")
	if path == "" {
		return token, nil
	}
	if token != "" {
		return "", errors.New("TIERCACHE_TOKEN and TIERCACHE_TOKEN_FILE are both set; set only one")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("TIERCACHE_TOKEN_FILE: %w", err)
	}
	token = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if token == "" {
		return "", fmt.Errorf("TIERCACHE_TOKEN_FILE: %s is empty", path)
	}
	return token, nil
}
