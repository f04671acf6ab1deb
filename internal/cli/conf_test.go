package cli

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRun_ConfCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := write("bad.conf", "port 6379\n")
	warnOnly := write("warn.conf", "maxmemory 1gb\nmaxmemory-policy allkeys-lru\nrequirepass a-long-random-password-0123\n"+
		"rename-command FLUSHALL \"\"\nrename-command FLUSHDB \"\"\nrename-command CONFIG \"\"\nrename-command KEYS \"\"\n"+
		"rename-command EVAL \"\"\nrename-command SHUTDOWN \"\"\n")
	malformed := write("malformed.conf", "requirepass \"open\n")
	const deploy = "../../deploy/"
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		out, err string
	}{
		{"deploy redis", []string{"conf", "check", deploy + "redis-production.conf"}, 0, "0 errors", ""},
		{"deploy redis with its users", []string{"conf", "check", "--acl", deploy + "acl.conf", deploy + "redis-production.conf"}, 0, "the default user is off", ""},
		{"deploy sentinel", []string{"conf", "check", deploy + "sentinel.conf"}, 0, "sentinel configuration", ""},
		{"two files", []string{"conf", "check", deploy + "redis-production.conf", deploy + "sentinel.conf"}, 0, "mymaster: quorum 2", ""},
		{"errors", []string{"conf", "check", bad}, 1, "ERROR  memory", ""},
		{"one bad file of two", []string{"conf", "check", deploy + "sentinel.conf", bad}, 1, "no authentication", ""},
		{"warnings pass", []string{"conf", "check", warnOnly}, 0, "WARN", ""},
		{"warnings fail when strict", []string{"conf", "check", "--strict", warnOnly}, 1, "WARN", ""},
		{"missing file", []string{"conf", "check", filepath.Join(dir, "nope.conf")}, 2, "", "no such file"},
		{"malformed file", []string{"conf", "check", malformed}, 2, "", "line 1: unbalanced quotes"},
		{"no file", []string{"conf", "check"}, 2, "", `expected "<file> ..."`},
		{"flags after the files", []string{"conf", "check", deploy + "redis-production.conf", "--acl", deploy + "acl.conf"}, 0, "the default user is off", ""},
		{"no subcommand", []string{"conf"}, 2, "", `expected "check"`},
		{"unknown subcommand", []string{"conf", "lint", bad}, 2, "", `unexpected argument lint`},
		{"help", []string{"conf", "-h"}, 0, "conf check", ""},
		{"help check", []string{"conf", "check", "--help"}, 0, "tiercache conf check <file> ... [flags]", ""},
		{"help conf", []string{"help", "conf"}, 0, "conf check", ""},
		{"unknown flag", []string{"conf", "check", "--bogus", bad}, 2, "", "unknown flag --bogus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runWant(t, tc.args, tc.code, tc.out, tc.err)
		})
	}
}
