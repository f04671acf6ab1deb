package cli

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

// TestServe_BarePort: --addr 18083 means every interface on that port,
// not "missing port in address".
func TestServe_BarePort(t *testing.T) {
	clearEnv(t)
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	s := startServe(t, "serve", "--addr", port)
	if !strings.HasSuffix(s.addr, ":"+port) {
		t.Errorf("listening on %s, want port %s", s.addr, port)
	}
	if code, body := request(t, "GET", "http://127.0.0.1:"+port+"/healthz", "", ""); code != 200 {
		t.Errorf("healthz: %d %s", code, body)
	}
}
