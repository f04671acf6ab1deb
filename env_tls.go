package tiercache

import (
	"crypto/tls"
	"crypto/x509"
	"os"

	"github.com/tiercache/tiercache/config"
)

// tlsFromConfig builds the TLS configuration to Redis (and to the
// sentinels) from the redis.tls settings (REDIS_TLS_CA_FILE,
// REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE, REDIS_TLS_SERVER_NAME):
//
//	ca_file      PEM certificates of the CAs that sign the servers'
//	             certificates, instead of the system's roots
//	cert_file    client certificate (PEM), for servers started
//	key_file     with tls-auth-clients; both or neither
//	server_name  name the servers' certificates must carry, when
//	             they are reached by an address they do not name
//
// None set means nil: plain TCP, or TLS with the system's roots for a
// rediss:// URL. Any set enables TLS. Errors name the settings and the
// files, never their content.
func tlsFromConfig(t config.TLS) (*tls.Config, error) {
	if t == (config.TLS{}) {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, optErr("redis.tls.ca_file (REDIS_TLS_CA_FILE): %v", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, optErr("redis.tls.ca_file (REDIS_TLS_CA_FILE): %s holds no PEM certificate", t.CAFile)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, optErr("redis.tls.cert_file and redis.tls.key_file (REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE) go together; set both or neither")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			// The error of LoadX509KeyPair names the problem, not the key.
			return nil, optErr("redis.tls.cert_file/key_file (REDIS_TLS_CERT_FILE/REDIS_TLS_KEY_FILE): %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
