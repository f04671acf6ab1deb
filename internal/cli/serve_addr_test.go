package cli

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestServe_BarePort: a bare port as the listen address (--addr 18083,
// TIERCACHE_ADDR=18083, http.addr: 18083) means every interface on that
// port, not "missing port in address".
func TestServe_BarePort(t *testing.T) {
	for _, how := range []string{"flag", "environment", "file"} {
		t.Run(how, func(t *testing.T) {
			clearEnv(t)
			l, err := net.Listen("tcp", ":0")
			if err != nil {
				t.Fatal(err)
			}
			port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
			l.Close()
			args := []string{"serve"}
			switch how {
			case "flag":
				args = append(args, "--addr", port)
			case "environment":
				t.Setenv("TIERCACHE_ADDR", port)
			case "file":
				path := filepath.Join(t.TempDir(), "tiercache.yaml")
				if err := os.WriteFile(path, []byte("http:\n  addr: "+port+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config", path)
			}
			s := startServe(t, args...)
			if !strings.HasSuffix(s.addr, ":"+port) {
				t.Errorf("listening on %s, want port %s", s.addr, port)
			}
			if code, body := request(t, "GET", "http://127.0.0.1:"+port+"/healthz", "", ""); code != 200 {
				t.Errorf("healthz: %d %s", code, body)
			}
		})
	}
}
