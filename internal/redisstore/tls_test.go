package redisstore

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestStore_TLS connects to TLS-only Redis servers (plain port 0) with
// certificates made for the test: the CA is verified, an untrusted or
// misnamed certificate is refused with an error that says so, and a
// server that requires client certificates accepts the client's.
func TestStore_TLS(t *testing.T) {
	t.Parallel()
	certs := redistest.NewTLSFiles(t)
	other := redistest.NewTLSFiles(t) // a CA the servers do not use
	srv := redistest.NewTLS(t, certs)
	mtls := redistest.NewTLS(t, certs, "--tls-auth-clients", "yes")

	trusted := &tls.Config{RootCAs: certs.CAs, MinVersion: tls.VersionTLS12}
	withCert := certs.ClientConfig()
	for _, tc := range []struct {
		name    string
		opts    Options
		wantErr string // regexp; empty: Set and Get must work
	}{
		{name: "rediss url with the CA", opts: Options{URL: "rediss://" + srv.Addr + "/0", TLS: trusted}},
		{name: "addrs with the CA", opts: Options{Addrs: []string{srv.Addr}, TLS: trusted}},
		{name: "server name checked", opts: Options{Addrs: []string{srv.Addr},
			TLS: &tls.Config{RootCAs: certs.CAs, ServerName: "redis.example.com"}}, wantErr: "certificate is valid for"},
		{name: "system roots refuse the test CA", opts: Options{URL: "rediss://" + srv.Addr}, wantErr: "certificate signed by unknown authority"},
		{name: "another CA", opts: Options{Addrs: []string{srv.Addr}, TLS: &tls.Config{RootCAs: other.CAs}}, wantErr: "certificate signed by unknown authority"},
		{name: "plain TCP to the TLS port", opts: Options{Addrs: []string{srv.Addr}, DialTimeout: waitFor / 10}, wantErr: "connect to"},
		{name: "client certificate required and given", opts: Options{Addrs: []string{mtls.Addr}, TLS: withCert}},
		{name: "client certificate with a rediss url", opts: Options{URL: "rediss://" + mtls.Addr, TLS: withCert}},
		{name: "client certificate required but missing", opts: Options{Addrs: []string{mtls.Addr}, TLS: trusted},
			// With TLS 1.3 the server refuses the client after the
			// handshake, so the client may see the alert or a reset.
			wantErr: "certificate required|connection reset by peer|broken pipe|EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.opts.OnInvalidation = newRecorder().record
			s, err := New(tc.opts)
			if tc.wantErr != "" {
				if err == nil {
					s.Close()
					t.Fatalf("New succeeded, want an error matching %q", tc.wantErr)
				}
				if !regexp.MustCompile(tc.wantErr).MatchString(err.Error()) {
					t.Fatalf("New: %v, want an error matching %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer s.Close()
			if !strings.Contains(s.String(), " tls") {
				t.Errorf("String() = %q does not mention tls", s)
			}
			mustSet(t, s, "tls:k", "over tls", 0)
			mustGet(t, s, "tls:k", "over tls")
		})
	}
}

// TestStore_TLSSentinel reaches a TLS-only sentinel group: the sentinels
// and the master both over TLS, with a client certificate, and follows a
// failover.
func TestStore_TLSSentinel(t *testing.T) {
	t.Parallel()
	certs := redistest.NewTLSFiles(t)
	st := redistest.NewTLSSentinel(t, certs)
	rec := newRecorder()
	s, err := New(Options{
		Addrs: st.SentinelAddrs(), SentinelMaster: st.MasterName,
		TLS: certs.ClientConfig(), OnInvalidation: rec.record,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer s.Close()
	mustSet(t, s, "tls:sentinel", "v1", 0)
	mustGet(t, s, "tls:sentinel", "v1")

	// The master's own replies prove the data went through it.
	reply, err := st.Master.DoTLS(t.Context(), certs.ClientConfig(), "GET", "tls:sentinel")
	if err != nil || reply != "v1" {
		t.Fatalf("GET on the master over TLS = %v, %v", reply, err)
	}

	// Plain TCP to a sentinel is refused.
	if _, err := New(Options{Addrs: st.SentinelAddrs(), SentinelMaster: st.MasterName, DialTimeout: waitFor / 10}); err == nil {
		t.Fatal("New without TLS succeeded against TLS-only sentinels")
	}

	// A forced failover: the store follows the sentinels to the new
	// master, over TLS.
	if _, err := st.Sentinels[0].DoTLS(t.Context(), certs.ClientConfig(), "SENTINEL", "FAILOVER", st.MasterName); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	eventually(t, "a write after the failover reaches a new master", func() error {
		ctx, cancel := context.WithTimeout(t.Context(), waitFor/10)
		defer cancel()
		if err := s.Set(ctx, "tls:after", []byte("v2"), 0); err != nil {
			return err
		}
		for _, r := range st.Replicas {
			reply, err := r.DoTLS(ctx, certs.ClientConfig(), "ROLE")
			if err != nil {
				return err
			}
			if role, _ := reply.([]any); len(role) > 0 && role[0] == "master" {
				return nil
			}
		}
		return errors.New("no replica has been promoted yet")
	})
	mustGet(t, s, "tls:after", "v2")
}

// TestStore_TLSDialContext: with DialContext, every connection is opened
// by it and TLS runs over what it returns, with the certificate checked
// against the address's host name unless the configuration names one.
func TestStore_TLSDialContext(t *testing.T) {
	t.Parallel()
	certs := redistest.NewTLSFiles(t)
	srv := redistest.NewTLS(t, certs)
	var dials atomic.Int32
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	s, err := New(Options{Addrs: []string{srv.Addr}, TLS: &tls.Config{RootCAs: certs.CAs, MinVersion: tls.VersionTLS12},
		DialContext: dial, OnInvalidation: newRecorder().record})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustSet(t, s, "dial:k", "v", 0)
	mustGet(t, s, "dial:k", "v")
	if dials.Load() == 0 {
		t.Fatal("DialContext was not used")
	}
	_, err = New(Options{Addrs: []string{srv.Addr}, TLS: &tls.Config{RootCAs: certs.CAs, ServerName: "redis.example.com"}, DialContext: dial})
	if err == nil || !strings.Contains(err.Error(), "certificate is valid for") {
		t.Fatalf("a misnamed server through DialContext: %v, want a certificate error", err)
	}
}
