package tiercache

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestOptionsFromEnv_TLS connects through the REDIS_TLS_* variables to
// TLS-only servers whose certificates a test CA signed: the CA file makes
// the certificate trusted, the system's roots and another CA refuse it,
// and a server that requires client certificates accepts the one from
// REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE.
func TestOptionsFromEnv_TLS(t *testing.T) {
	t.Parallel()
	certs := redistest.NewTLSFiles(t)
	other := redistest.NewTLSFiles(t)
	srv := redistest.NewTLS(t, certs)
	mtls := redistest.NewTLS(t, certs, "--tls-auth-clients", "yes")
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		env    map[string]string
		envErr string // regexp the error of OptionsFromEnv must match
		newErr string // regexp the error of New must match
	}{
		{name: "ca file", env: map[string]string{"REDIS_URL": "rediss://" + srv.Addr, "REDIS_TLS_CA_FILE": certs.CAFile}},
		{name: "ca file enables tls on redis url", env: map[string]string{"REDIS_URL": "redis://" + srv.Addr, "REDIS_TLS_CA_FILE": certs.CAFile}},
		{name: "system roots", env: map[string]string{"REDIS_URL": "rediss://" + srv.Addr}, newErr: "unknown authority"},
		{name: "another ca", env: map[string]string{"REDIS_URL": "rediss://" + srv.Addr, "REDIS_TLS_CA_FILE": other.CAFile}, newErr: "unknown authority"},
		{name: "wrong server name", env: map[string]string{"REDIS_URL": "rediss://" + srv.Addr, "REDIS_TLS_CA_FILE": certs.CAFile,
			"REDIS_TLS_SERVER_NAME": "redis.example.com"}, newErr: "certificate is valid for"},
		{name: "client certificate", env: map[string]string{"REDIS_URL": "rediss://" + mtls.Addr, "REDIS_TLS_CA_FILE": certs.CAFile,
			"REDIS_TLS_CERT_FILE": certs.ClientCertFile, "REDIS_TLS_KEY_FILE": certs.ClientKeyFile}},
		{name: "client certificate missing", env: map[string]string{"REDIS_URL": "rediss://" + mtls.Addr, "REDIS_TLS_CA_FILE": certs.CAFile},
			newErr: "certificate required|connection reset by peer|broken pipe|EOF"},
		{name: "cert without key", env: map[string]string{"REDIS_URL": "rediss://" + srv.Addr, "REDIS_TLS_CERT_FILE": certs.ClientCertFile},
			envErr: "REDIS_TLS_CERT_FILE: redis.tls.cert_file: needs redis.tls.key_file too"},
		{name: "unreadable ca", env: map[string]string{"REDIS_URL": "rediss://" + srv.Addr, "REDIS_TLS_CA_FILE": "/nonexistent/ca.crt"},
			envErr: `\(REDIS_TLS_CA_FILE\): .*no such file`},
		{name: "ca not pem", env: map[string]string{"REDIS_URL": "rediss://" + srv.Addr, "REDIS_TLS_CA_FILE": garbage},
			envErr: "holds no PEM certificate"},
		{name: "key is not a key", env: map[string]string{"REDIS_URL": "rediss://" + srv.Addr,
			"REDIS_TLS_CERT_FILE": certs.ClientCertFile, "REDIS_TLS_KEY_FILE": garbage}, envErr: "REDIS_TLS_CERT_FILE/REDIS_TLS_KEY_FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o, err := optionsFromLookup(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if tc.envErr != "" {
				if err == nil || !regexp.MustCompile(tc.envErr).MatchString(err.Error()) {
					t.Fatalf("OptionsFromEnv: %v, want an error matching %q", err, tc.envErr)
				}
				if strings.Contains(err.Error(), "not a certificate") {
					t.Errorf("the error shows the file's content: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			o.Namespace = testNamespace(t)
			o.Redis.DialTimeout = 5 * time.Second
			c, err := New(o)
			if tc.newErr != "" {
				if err == nil {
					c.Close()
					t.Fatalf("New succeeded, want an error matching %q", tc.newErr)
				}
				if !regexp.MustCompile(tc.newErr).MatchString(err.Error()) {
					t.Fatalf("New: %v, want an error matching %q", err, tc.newErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer c.Close()
			if err := c.Set(t.Context(), "k", "over tls"); err != nil {
				t.Fatalf("Set: %v", err)
			}
			var got string
			if err := c.Get(t.Context(), "k", &got); err != nil || got != "over tls" {
				t.Fatalf("Get = %q, %v", got, err)
			}
		})
	}
}
