package tiercache

import (
	"crypto/tls"
	"crypto/x509"
	"os"
)

// tlsFromEnv builds the TLS configuration to Redis (and to the sentinels)
// from the environment:
//
//	REDIS_TLS_CA_FILE      PEM certificates of the CAs that sign the servers'
//	                       certificates, instead of the system's roots
//	REDIS_TLS_CERT_FILE    client certificate (PEM), for servers started
//	REDIS_TLS_KEY_FILE     with tls-auth-clients; both or neither
//	REDIS_TLS_SERVER_NAME  name the servers' certificates must carry, when
//	                       they are reached by an address they do not name
//
// None set means nil: plain TCP, or TLS with the system's roots for a
// rediss:// URL. Any set enables TLS. Errors name the variables and the
// files, never their content.
func tlsFromEnv(get func(string) string) (*tls.Config, error) {
	caFile, certFile, keyFile, name := get("REDIS_TLS_CA_FILE"), get("REDIS_TLS_CERT_FILE"), get("REDIS_TLS_KEY_FILE"), get("REDIS_TLS_SERVER_NAME")
	if caFile == "" && certFile == "" && keyFile == "" && name == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: name}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, optErr("REDIS_TLS_CA_FILE: %v", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, optErr("REDIS_TLS_CA_FILE: %s holds no PEM certificate", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, optErr("REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together; set both or neither")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			// The error of LoadX509KeyPair names the problem, not the key.
			return nil, optErr("REDIS_TLS_CERT_FILE/REDIS_TLS_KEY_FILE: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
