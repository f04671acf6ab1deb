package redistest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redisproc"
)

// TLSFiles are a certificate authority made for one test and the
// certificates it signed, as PEM files in Dir: a server certificate for
// 127.0.0.1, ::1 and localhost, and a client certificate.
type TLSFiles struct {
	// Dir holds the files.
	Dir string
	// CAFile is the CA's certificate.
	CAFile string
	// CertFile and KeyFile are the server's certificate and key. Redis
	// also presents them as a client, to its master and to sentinels.
	CertFile, KeyFile string
	// ClientCertFile and ClientKeyFile are the client's certificate and
	// key, for servers that require client certificates.
	ClientCertFile, ClientKeyFile string
	// CAs is a pool holding the CA, for a client's RootCAs.
	CAs *x509.CertPool
	// ClientCert is the client's certificate and key, for a client's
	// Certificates.
	ClientCert tls.Certificate
}

// NewTLSFiles is GenerateTLS for a test: the files live in a directory
// that the test removes.
func NewTLSFiles(t testing.TB) *TLSFiles {
	t.Helper()
	f, err := GenerateTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// GenerateTLS makes a fresh CA, a server and a client certificate, and
// writes them to dir.
func GenerateTLS(dir string) (*TLSFiles, error) {
	f := &TLSFiles{
		Dir:            dir,
		CAFile:         filepath.Join(dir, "ca.crt"),
		CertFile:       filepath.Join(dir, "redis.crt"),
		KeyFile:        filepath.Join(dir, "redis.key"),
		ClientCertFile: filepath.Join(dir, "client.crt"),
		ClientKeyFile:  filepath.Join(dir, "client.key"),
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "redistest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	if err := writePEM(f.CAFile, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	f.CAs = x509.NewCertPool()
	f.CAs.AddCert(ca)

	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	ci := issuer{ca: ca, key: caKey, now: now}
	if _, err := ci.issue(2, "localhost", both, true, f.CertFile, f.KeyFile); err != nil {
		return nil, err
	}
	f.ClientCert, err = ci.issue(3, "tiercache client", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, false, f.ClientCertFile, f.ClientKeyFile)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// issuer signs leaf certificates with a test CA.
type issuer struct {
	ca  *x509.Certificate
	key *ecdsa.PrivateKey
	now time.Time
}

// issue makes a certificate and its key, writes them to certFile and
// keyFile, and returns them. A server certificate names 127.0.0.1, ::1 and
// localhost.
func (ci issuer) issue(serial int64, cn string, usage []x509.ExtKeyUsage, server bool, certFile, keyFile string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("redistest: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    ci.now.Add(-time.Hour),
		NotAfter:     ci.now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
	}
	if server {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ci.ca, &key.PublicKey, ci.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("redistest: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("redistest: %w", err)
	}
	if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
		return tls.Certificate{}, err
	}
	if err := writePEM(keyFile, "PRIVATE KEY", keyDER); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(certFile, keyFile)
}

func writePEM(path, kind string, der []byte) error {
	b := pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("redistest: %w", err)
	}
	return nil
}

// ClientConfig returns a client configuration that trusts the CA and
// presents the client certificate.
func (f *TLSFiles) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: f.CAs, Certificates: []tls.Certificate{f.ClientCert}, MinVersion: tls.VersionTLS12}
}

// serverArgs returns the TLS arguments of a node serving TLS only on port:
// plain port 0, the certificates, and TLS for replication and (on
// sentinels) for the links to other instances. Client certificates are
// optional; a later --tls-auth-clients yes requires them.
func (f *TLSFiles) serverArgs(port int) []string {
	return []string{
		"--port", "0",
		"--tls-port", strconv.Itoa(port),
		"--tls-cert-file", f.CertFile,
		"--tls-key-file", f.KeyFile,
		"--tls-ca-cert-file", f.CAFile,
		"--tls-auth-clients", "optional",
		"--tls-replication", "yes",
	}
}

// StartTLS starts a redis-server that accepts TLS connections only, with
// the server certificate of f, and returns once it answers PING over TLS.
// args come last and may override any setting, such as
// "--tls-auth-clients", "yes". Do, Info and Restart speak plain TCP and do
// not work on it; use DoTLS. The caller must Close the server.
func StartTLS(f *TLSFiles, args ...string) (*Server, error) {
	dir, err := os.MkdirTemp("", "redistest-tls-")
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	s := &Server{Dir: dir, bin: "redis-server"}
	err = startTLSProcess(s, f, func(port int) ([]string, error) {
		base := []string{"--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no",
			"--daemonize", "no", "--repl-diskless-sync-delay", "0"}
		return append(append(base, f.serverArgs(port)...), args...), nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// NewTLS is StartTLS for a test: it calls Require, fails the test when the
// server does not start, and closes it in t.Cleanup.
func NewTLS(t testing.TB, f *TLSFiles, args ...string) *Server {
	t.Helper()
	Require(t)
	s, err := StartTLS(f, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// startTLSProcess starts s on a free port with the arguments args returns
// for it, trying another port when the chosen one was taken, and waits for
// PING over TLS. It removes s.Dir on failure.
func startTLSProcess(s *Server, f *TLSFiles, args func(port int) ([]string, error)) error {
	err := redisproc.StartOnFreePort(bindAttempts, func() (int, error) { return redisproc.FreePort(false) }, func(port int) error {
		s.Port, s.Addr = port, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		var err error
		if s.args, err = args(port); err != nil {
			return fmt.Errorf("redistest: %w", err)
		}
		s.password = flagValue(s.args, "--requirepass")
		return s.spawnAndWait(func() error { return s.waitTLSPing(f.ClientConfig()) })
	})
	if err != nil {
		os.RemoveAll(s.Dir)
		if errors.Is(err, redisproc.ErrNoFreePort) {
			return fmt.Errorf("redistest: start %s over TLS: %w", s.bin, err)
		}
		return err
	}
	return nil
}

// waitTLSPing waits until the process answers PING over TLS, and stops
// early when it exits.
func (s *Server) waitTLSPing(cfg *tls.Config) error {
	return s.waitAnswer("PING over TLS", func(ctx context.Context) (any, error) { return s.DoTLS(ctx, cfg, "PING") })
}

// DoTLS sends one command over a fresh TLS connection made with cfg, such
// as TLSFiles.ClientConfig(), and returns the reply as Do does.
func (s *Server) DoTLS(ctx context.Context, cfg *tls.Config, args ...string) (any, error) {
	d := tls.Dialer{Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	defer conn.Close()
	return exchange(ctx, conn, "", s.password, args)
}

// TLSSentinel is a sentinel group that speaks TLS only: a master, two
// replicas replicating over TLS and three sentinels (quorum 2) that reach
// the data nodes and each other over TLS.
type TLSSentinel struct {
	// MasterName is "mymaster".
	MasterName string
	// Master and Replicas are the data nodes, as started.
	Master   *Server
	Replicas []*Server
	// Sentinels are the three sentinels.
	Sentinels []*Server
	// TLS are the certificates every node uses.
	TLS *TLSFiles
}

// StartTLSSentinel starts a TLS-only sentinel group with the certificates
// of f and returns once the replicas have synced and every sentinel knows
// the replicas and the other sentinels. The caller must Close it.
func StartTLSSentinel(f *TLSFiles) (*TLSSentinel, error) {
	st := &TLSSentinel{MasterName: "mymaster", TLS: f}
	ok := false
	defer func() {
		if !ok {
			st.Close()
		}
	}()
	var err error
	if st.Master, err = StartTLS(f); err != nil {
		return nil, err
	}
	for range 2 {
		r, err := StartTLS(f, "--replicaof", "127.0.0.1", strconv.Itoa(st.Master.Port))
		if err != nil {
			return nil, err
		}
		st.Replicas = append(st.Replicas, r)
	}
	cfg := f.ClientConfig()
	err = poll(topologyTimeout, st.Master.Addr+": wait for replicas over TLS", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), pollTimeout)
		defer cancel()
		reply, err := st.Master.DoTLS(ctx, cfg, "INFO", "replication")
		if err != nil {
			return err
		}
		text, _ := reply.(string)
		if n := parseInfo(text)["connected_slaves"]; n != "2" {
			return fmt.Errorf("connected_slaves:%s", n)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for range 3 {
		dir, err := os.MkdirTemp("", "redistest-tls-sentinel-")
		if err != nil {
			return nil, fmt.Errorf("redistest: %w", err)
		}
		sn := &Server{Dir: dir, bin: "redis-sentinel"}
		if err := startTLSProcess(sn, f, func(port int) ([]string, error) {
			return st.sentinelArgs(dir, port)
		}); err != nil {
			return nil, err
		}
		st.Sentinels = append(st.Sentinels, sn)
	}
	for _, sn := range st.Sentinels {
		if err := st.waitReady(sn); err != nil {
			return nil, err
		}
	}
	ok = true
	return st, nil
}

// NewTLSSentinel is StartTLSSentinel for a test: it calls Require, fails
// the test when the group does not start, and closes it in t.Cleanup.
func NewTLSSentinel(t testing.TB, f *TLSFiles) *TLSSentinel {
	t.Helper()
	Require(t)
	st, err := StartTLSSentinel(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// sentinelArgs writes a sentinel's configuration file, which it rewrites
// as it learns the topology, and returns its command line.
func (st *TLSSentinel) sentinelArgs(dir string, port int) ([]string, error) {
	conf := fmt.Sprintf(`dir %q
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %[2]s 1000
sentinel failover-timeout %[2]s 5000
sentinel parallel-syncs %[2]s 1
`, dir, st.MasterName, st.Master.Port)
	path := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	return append([]string{path, "--bind", "127.0.0.1", "--daemonize", "no"}, st.TLS.serverArgs(port)...), nil
}

// waitReady waits until sn sees a healthy master, both replicas and the
// two other sentinels.
func (st *TLSSentinel) waitReady(sn *Server) error {
	cfg := st.TLS.ClientConfig()
	return poll(topologyTimeout, "sentinel "+sn.Addr+": wait for the topology over TLS", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), pollTimeout)
		defer cancel()
		reply, err := sn.DoTLS(ctx, cfg, "SENTINEL", "MASTER", st.MasterName)
		if err != nil {
			return err
		}
		m, err := fieldMap(reply)
		if err != nil {
			return err
		}
		if m["flags"] != "master" || m["num-slaves"] != "2" || m["num-other-sentinels"] != "2" {
			return fmt.Errorf("flags=%s num-slaves=%s num-other-sentinels=%s", m["flags"], m["num-slaves"], m["num-other-sentinels"])
		}
		return nil
	})
}

// SentinelAddrs returns the addresses of the three sentinels.
func (st *TLSSentinel) SentinelAddrs() []string {
	addrs := make([]string, len(st.Sentinels))
	for i, sn := range st.Sentinels {
		addrs[i] = sn.Addr
	}
	return addrs
}

// Close stops every process of the group and removes their directories.
func (st *TLSSentinel) Close() {
	for _, s := range append(append([]*Server(nil), st.Sentinels...), st.Replicas...) {
		s.Close()
	}
	if st.Master != nil {
		st.Master.Close()
	}
}
