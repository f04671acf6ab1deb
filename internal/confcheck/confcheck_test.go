package confcheck

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// want is a finding a case expects: its severity, its check, and a
// substring of its message.
type want struct {
	sev   Severity
	check string
	text  string
}

// good is a configuration that passes every Redis check.
const good = `
maxmemory 1gb
maxmemory-policy allkeys-lfu
save 900 1
appendonly yes
appendfsync everysec
bind 10.0.0.5 127.0.0.1
protected-mode yes
requirepass "a-long-random-password-0123456789"
rename-command FLUSHALL ""
rename-command FLUSHDB ""
rename-command CONFIG ""
rename-command KEYS ""
rename-command EVAL ""
rename-command SHUTDOWN ""
min-replicas-to-write 1
`

func TestCheck(t *testing.T) {
	t.Parallel()
	aclDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(aclDir, "users.acl"), []byte("user default off\nuser app on >pw ~* +@all\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		file  string // base name; default redis.conf
		conf  string
		opts  Options
		kind  Kind
		worst Severity
		want  []want
	}{
		{name: "good", conf: good, kind: Redis, worst: OK, want: []want{
			{OK, "memory", "maxmemory 1gb"}, {OK, "memory", "allkeys-lfu"}, {OK, "persistence", "RDB"},
			{OK, "auth", "must authenticate"}, {OK, "dangerous-commands", "renamed"}, {OK, "network", "10.0.0.5 127.0.0.1"},
		}},
		{name: "empty", conf: "port 6379\n", kind: Redis, worst: Error, want: []want{
			{Error, "memory", "no maxmemory"}, {Error, "memory", "noeviction"}, {Error, "auth", "no authentication"},
			{Error, "dangerous-commands", "FLUSHALL, FLUSHDB"}, {Warn, "replication", "min-replicas-to-write 0"},
			{OK, "network", "every interface"}, {OK, "persistence", "RDB snapshots on"},
		}},
		{name: "seed", conf: "maxmemory 2gb\nmaxmemory-policy allkeys-lru\nsave 900 1\nappendonly yes\nrequirepass [PASSWORD]\n" +
			"rename-command FLUSHDB \"\"\nrename-command FLUSHALL \"\"\nrename-command EVAL \"\"\n", kind: Redis, worst: Error, want: []want{
			{Error, "auth", "placeholder"}, {Warn, "dangerous-commands", "SHUTDOWN, CONFIG, KEYS are open"},
		}},
		{name: "open to the world", conf: "protected-mode no\nbind 0.0.0.0\nmaxmemory 1mb\nmaxmemory-policy allkeys-lru\n", worst: Error, want: []want{
			{Error, "network", "protected-mode no without authentication"},
		}},
		{name: "protected mode off with auth", conf: strings.Replace(good, "protected-mode yes", "protected-mode no", 1), worst: Warn, want: []want{
			{Warn, "network", "protected-mode no"},
		}},
		{name: "short password", conf: strings.Replace(good, "a-long-random-password-0123456789", "short", 1), worst: Warn, want: []want{
			{Warn, "auth", "shorter than 16"},
		}},
		{name: "volatile policy", conf: strings.Replace(good, "allkeys-lfu", "volatile-lru", 1), worst: Warn, want: []want{
			{Warn, "memory", "keys without a TTL"},
		}},
		{name: "bad maxmemory", conf: strings.Replace(good, "maxmemory 1gb", "maxmemory lots", 1), worst: Error, want: []want{
			{Error, "memory", `"lots" is not a size`},
		}},
		{name: "no persistence", conf: strings.NewReplacer("save 900 1", `save ""`, "appendonly yes", "appendonly no").Replace(good), worst: Warn, want: []want{
			{Warn, "persistence", "no RDB snapshots and no AOF"},
		}},
		{name: "fsync always", conf: strings.Replace(good, "appendfsync everysec", "appendfsync always", 1), worst: Warn, want: []want{
			{Warn, "persistence", "appendfsync always"},
		}},
		{name: "tls beside plain port", conf: good + "tls-port 6380\n", worst: Warn, want: []want{
			{Warn, "network", "plain port 6379 stays open"},
		}},
		{name: "tls only", conf: good + "port 0\ntls-port 6380\n", worst: OK},
		{name: "acl default nopass", conf: good + "user default on nopass ~* +@all\n", worst: Error, want: []want{
			{Error, "auth", "user default is on with nopass"}, {Error, "dangerous-commands", "the default user may run FLUSHALL"},
		}},
		{name: "acl least privilege", conf: good + "user default off\nuser app on >pw ~app:* -@all +get +set\nuser ops on >pw ~* +@all -flushall -flushdb\n", worst: OK, want: []want{
			{OK, "auth", "default user is off"}, {OK, "dangerous-commands", "user ops is an administrator (SHUTDOWN, CONFIG, KEYS, EVAL)"},
		}},
		{name: "acl app may flush", conf: good + "user default off\nuser app on >pw ~* -@all +get +@keyspace\n", worst: Warn, want: []want{
			{Warn, "dangerous-commands", "user app may run FLUSHALL, FLUSHDB"},
		}},
		{name: "acl category denial", conf: good + "user default off\nuser app on >pw ~* +@all -@dangerous -@scripting\n", worst: OK},
		{name: "acl placeholder hash", conf: good + "user default off\nuser app on " + placeholderHash + " ~* +get\n", worst: Warn, want: []want{
			{Warn, "auth", "user app has the placeholder password hash"},
		}},
		{name: "acl user without password", conf: good + "user default off\nuser app on ~* +get\n", worst: Warn, want: []want{
			{Warn, "auth", "user app is on without a password"},
		}},
		{name: "aclfile relative to the configuration", conf: good + "aclfile users.acl\n", file: filepath.Join(aclDir, "redis.conf"), worst: Warn, want: []want{
			{OK, "auth", "ACL users from " + filepath.Join(aclDir, "users.acl")}, {Warn, "dangerous-commands", "user app may run FLUSHALL, FLUSHDB"},
		}},
		{name: "aclfile relative to dir", conf: good + "dir " + aclDir + "\naclfile users.acl\n", worst: Warn, want: []want{
			{OK, "auth", "ACL users from " + filepath.Join(aclDir, "users.acl")},
		}},
		{name: "aclfile unreadable", conf: good + "aclfile /nonexistent/users.acl\n", worst: Warn, want: []want{
			{Warn, "auth", "not readable here"}, {Warn, "dangerous-commands", "not checked"},
		}},
		{name: "aclfile given", conf: good + "aclfile /nonexistent/users.acl\n", opts: Options{ACLFile: filepath.Join(aclDir, "users.acl")}, worst: Warn, want: []want{
			{Warn, "dangerous-commands", "user app may run"},
		}},
		{name: "debug enabled", conf: good + "enable-debug-command yes\n", worst: Warn, want: []want{
			{Warn, "dangerous-commands", "DEBUG is open"},
		}},
		{name: "sentinel", file: "s.conf", conf: "sentinel monitor mymaster 10.0.0.1 6379 2\nsentinel down-after-milliseconds mymaster 5000\n" +
			"sentinel auth-pass mymaster pw\nrequirepass pw\nbind 10.0.0.2\n", kind: Sentinel, worst: OK, want: []want{
			{OK, "quorum", "mymaster: quorum 2"}, {OK, "failover", "down after 5000 ms"}, {OK, "auth", "authenticate to the data nodes"},
		}},
		{name: "sentinel quorum 1", file: "s.conf", conf: "sentinel monitor mymaster 10.0.0.1 6379 1\nrequirepass pw\nsentinel auth-pass mymaster pw\n", kind: Sentinel, worst: Error, want: []want{
			{Error, "quorum", "quorum 1"}, {OK, "failover", "down after 30000 ms"},
		}},
		{name: "sentinel bad quorum", file: "s.conf", conf: "sentinel monitor mymaster 10.0.0.1 6379 two\n", kind: Sentinel, worst: Error, want: []want{
			{Error, "quorum", `quorum "two"`}, {Warn, "auth", "no requirepass"}, {Warn, "auth", "no sentinel auth-pass"},
		}},
		{name: "sentinel by name", file: "sentinel-1.conf", conf: "port 26379\n", kind: Sentinel, worst: Error, want: []want{
			{Error, "quorum", "watches nothing"},
		}},
		{name: "sentinel hasty", file: "s.conf", conf: "sentinel monitor m h 1 2\nsentinel down-after-milliseconds m 100\nrequirepass pw\nsentinel auth-pass m pw\nsentinel deny-scripts-reconfig no\n",
			kind: Sentinel, worst: Warn, want: []want{
				{Warn, "failover", "down-after-milliseconds 100"}, {Warn, "failover", "deny-scripts-reconfig no"},
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := tc.file
			if path == "" {
				path = "redis.conf"
			}
			r, err := Check(path, []byte(tc.conf), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := r.Write(&out); err != nil {
				t.Fatal(err)
			}
			if tc.kind != "" && r.Kind != tc.kind {
				t.Errorf("kind %s, want %s", r.Kind, tc.kind)
			}
			if r.Worst() != tc.worst {
				t.Errorf("worst %s, want %s:\n%s", r.Worst(), tc.worst, &out)
			}
			for _, w := range tc.want {
				found := false
				for _, f := range r.Findings {
					if f.Severity == w.sev && f.Check == w.check && strings.Contains(f.Message, w.text) {
						found = true
					}
				}
				if !found {
					t.Errorf("no %s %s finding containing %q:\n%s", w.sev, w.check, w.text, &out)
				}
			}
		})
	}
}

// TestCheck_DeployFiles checks that the shipped configuration passes.
func TestCheck_DeployFiles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file string
		opts Options
	}{
		{"redis-production.conf", Options{}},
		{"redis-production.conf", Options{ACLFile: "../../deploy/acl.conf"}},
		{"sentinel.conf", Options{}},
	} {
		r, err := CheckFile(filepath.Join("../../deploy", tc.file), tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		_ = r.Write(&out)
		if r.Worst() == Error {
			t.Errorf("%s fails the checklist:\n%s", tc.file, &out)
		}
		for _, f := range r.Findings {
			// The only warnings allowed are the secrets left to deploy
			// time and an aclfile that lives elsewhere.
			if f.Severity == Warn && !strings.Contains(f.Message, "placeholder password hash") &&
				!strings.Contains(f.Message, "deploy time") && !strings.Contains(f.Message, "aclfile") {
				t.Errorf("%s: unexpected warning: %s", tc.file, f.Message)
			}
		}
	}
}

func TestSplitArgs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{in: `save 900 1`, want: []string{"save", "900", "1"}},
		{in: `save ""`, want: []string{"save", ""}},
		{in: `requirepass "a b\"c\x41\n"`, want: []string{"requirepass", "a b\"cA\n"}},
		{in: `rename-command CONFIG 'x\'y'`, want: []string{"rename-command", "CONFIG", "x'y"}},
		{in: "bind  *\t-::*", want: []string{"bind", "*", "-::*"}},
		{in: `requirepass "open`, err: true},
		{in: `requirepass "a"b`, err: true},
		{in: `requirepass a"b`, err: true},
	} {
		got, err := splitArgs(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("splitArgs(%q) error %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if !tc.err && strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("splitArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if _, err := Check("redis.conf", []byte("maxmemory 1gb\nrequirepass \"unterminated\n"), Options{}); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("Check of a malformed line: %v, want an error naming line 2", err)
	}
}

func TestParseMemory(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]uint64{"0": 0, "100": 100, "1k": 1000, "1kb": 1024, "2gb": 2 << 30, "3MB": 3 << 20, "1g": 1e9} {
		if got, err := parseMemory(in); err != nil || got != want {
			t.Errorf("parseMemory(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := parseMemory("-1"); err == nil {
		t.Error("parseMemory(-1) succeeded")
	}
}

// TestCheck_ACLFile: an ACL file (deploy/acl.conf) is checked as one, for
// its users, not as a redis.conf without maxmemory.
func TestCheck_ACLFile(t *testing.T) {
	r, err := CheckFile("../../deploy/acl.conf", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind != ACL {
		t.Errorf("kind %s, want acl", r.Kind)
	}
	for _, f := range r.Findings {
		if f.Check == "memory" || f.Check == "persistence" || f.Check == "replication" || f.Severity == Error {
			t.Errorf("finding that does not belong to an ACL file: %+v", f)
		}
	}
	bad, err := Check("acl.conf", []byte("user default on nopass ~* +@all\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if bad.Kind != ACL || bad.Worst() != Error {
		t.Errorf("an ACL file with an open default user: kind %s, worst %v, want acl and an error:\n%+v", bad.Kind, bad.Worst(), bad.Findings)
	}
}
