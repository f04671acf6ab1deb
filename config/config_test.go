package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// write writes content to name in dir and returns its path.
func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// envOf returns a LookupEnv over m.
func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// TestLoad_Precedence sets one setting in every source at once, then
// removes the strongest source one at a time: a flag beats the
// environment, which beats the file, which beats the default.
func TestLoad_Precedence(t *testing.T) {
	t.Parallel()
	path := write(t, t.TempDir(), "tiercache.yaml", "http:\n  addr: file:1\ncache:\n  namespace: fromfile\n")
	env := map[string]string{"TIERCACHE_ADDR": "env:1", "CACHE_NAMESPACE": "fromenv"}
	flags := map[string]string{"addr": "flag:1"}
	portFile := write(t, t.TempDir(), "port.yaml", "http:\n  addr: 18083\n")
	for _, tc := range []struct {
		name        string
		src         Sources
		addr, ns    string
		addrOrigin  string
		nsOrigin    string
		addrFromSet bool
	}{
		{"all", Sources{File: path, LookupEnv: envOf(env), Flags: flags}, "flag:1", "fromenv", "flag --addr", "env CACHE_NAMESPACE", true},
		{"no flag", Sources{File: path, LookupEnv: envOf(env)}, "env:1", "fromenv", "env TIERCACHE_ADDR", "env CACHE_NAMESPACE", true},
		{"no environment", Sources{File: path, LookupEnv: envOf(nil)}, "file:1", "fromfile", path + ":2", path + ":4", true},
		{"empty variables are unset", Sources{File: path, LookupEnv: envOf(map[string]string{"TIERCACHE_ADDR": " ", "CACHE_NAMESPACE": ""})}, "file:1", "fromfile", path + ":2", path + ":4", true},
		{"defaults", Sources{LookupEnv: envOf(nil)}, ":8080", "tiercache", "default", "default", false},
		{"flag over default", Sources{LookupEnv: envOf(nil), Flags: flags}, "flag:1", "tiercache", "flag --addr", "default", true},
		{"bare port from the flag", Sources{LookupEnv: envOf(nil), Flags: map[string]string{"addr": "18083"}}, ":18083", "tiercache", "flag --addr", "default", true},
		{"bare port from the environment", Sources{LookupEnv: envOf(map[string]string{"TIERCACHE_ADDR": "18083"})}, ":18083", "tiercache", "env TIERCACHE_ADDR", "default", true},
		{"bare port from the file", Sources{File: portFile, LookupEnv: envOf(nil)}, ":18083", "tiercache", portFile + ":2", "default", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			if c.HTTP.Addr != tc.addr || c.Cache.Namespace != tc.ns {
				t.Errorf("addr %q namespace %q, want %q and %q", c.HTTP.Addr, c.Cache.Namespace, tc.addr, tc.ns)
			}
			if got := c.Origin("http.addr").String(); got != tc.addrOrigin {
				t.Errorf("origin of http.addr %q, want %q", got, tc.addrOrigin)
			}
			if got := c.Origin("cache.namespace").String(); got != tc.nsOrigin {
				t.Errorf("origin of cache.namespace %q, want %q", got, tc.nsOrigin)
			}
			if c.Set("http.addr") != tc.addrFromSet {
				t.Errorf("Set(http.addr) = %v", c.Set("http.addr"))
			}
		})
	}
}

// TestLoad_Values reads every kind of value from the file and the
// environment with the same parsers.
func TestLoad_Values(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, dir, "pw", "  s3cret-pw \r\n")
	path := write(t, dir, "c.yaml", `
cache:
  default_ttl: 90         # seconds
  negative_ttl: -1
  ttl_jitter: 0.25
  max_value_size: 8MiB
  compress_above: -1
  codec_rules:
    - {pattern: "api:*", codec: json}
  l1: {enabled: false, max_bytes: 1048576, max_ttl: 1m30s}
  breaker: {threshold: 3, open_timeout: 1.5}
redis:
  url: redis://10.0.0.1:6379/0
  password_file: pw       # relative to this file
  sentinel:
    hosts: [s1:26379, " s2:26379 "]
warming:
  strategies:
    - name: x
      file: {path: x.jsonl}
`)
	c, err := Load(Sources{File: path, LookupEnv: envOf(map[string]string{
		"CACHE_RECOVERY_QUEUE_SIZE": "50", "REDIS_CLUSTER_NODES": "a:1, b:2,", "CIRCUIT_BREAKER_ENABLED": "off",
	})})
	if err != nil {
		t.Fatal(err)
	}
	cc := c.Cache
	switch {
	case cc.DefaultTTL != 90*time.Second, cc.NegativeTTL != -time.Second, cc.TTLJitter != 0.25, cc.MaxValueSize != 8<<20, cc.CompressAbove != -1:
		t.Errorf("cache: %+v", cc)
	case len(cc.CodecRules) != 1 || cc.CodecRules[0] != (CodecRule{Pattern: "api:*", Codec: "json"}):
		t.Errorf("codec rules: %+v", cc.CodecRules)
	case cc.L1.Enabled || cc.L1.MaxBytes != 1<<20 || cc.L1.MaxTTL != 90*time.Second:
		t.Errorf("l1: %+v", cc.L1)
	case cc.Breaker.Threshold != 3 || cc.Breaker.OpenTimeout != 1500*time.Millisecond || cc.Breaker.Enabled:
		t.Errorf("breaker: %+v", cc.Breaker)
	case cc.Recovery.QueueSize != 50:
		t.Errorf("recovery: %+v", cc.Recovery)
	case c.Redis.Password != "s3cret-pw" || c.Origin("redis.password").String() != path+":14":
		t.Errorf("password %q from %s", c.Redis.Password, c.Origin("redis.password"))
	case strings.Join(c.Redis.Sentinel.Hosts, ",") != "s1:26379,s2:26379" || c.Redis.Sentinel.Master != "mymaster":
		t.Errorf("sentinel: %+v", c.Redis.Sentinel)
	case strings.Join(c.Redis.Addrs, ",") != "a:1,b:2":
		t.Errorf("addrs: %q", c.Redis.Addrs)
	case len(c.Warming.Strategies.Content) != 1:
		t.Errorf("strategies: %+v", c.Warming.Strategies)
	}
	var out bytes.Buffer
	if err := c.Print(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"  password: (redacted)", "# " + path + ":14",
		"  max_value_size: 8MiB", "# env CACHE_RECOVERY_QUEUE_SIZE",
		"    - {pattern: \"api:*\", codec: json}", "    - name: x",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("print lacks %q:\n%s", want, &out)
		}
	}
	if strings.Contains(out.String(), "s3cret") {
		t.Errorf("print shows the password:\n%s", &out)
	}
}

// TestLoad_Errors checks that every refused value names its source, the
// setting and what is allowed.
func TestLoad_Errors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		file  string
		env   map[string]string
		flags map[string]string
		want  []string
	}{
		{name: "unknown key", file: "cache:\n  namespace: a\n  nmespace: b\n",
			want: []string{`c.yaml:3: cache: unknown key "nmespace" (known: namespace, default_ttl,`}},
		{name: "unknown section", file: "cache: {}\nredis_url: x\n",
			want: []string{`c.yaml:2: the top level: unknown key "redis_url" (known: cache, redis, http, log, monitoring, tracing, warming)`}},
		{name: "wrong type", file: "cache:\n  breaker:\n    threshold: many\n",
			want: []string{`c.yaml:3: cache.breaker.threshold: "many" is not a whole number`}},
		{name: "mapping for a value", file: "http:\n  addr: {host: x}\n",
			want: []string{`c.yaml:2: http.addr: must be a string, not a mapping`}},
		{name: "section not a mapping", file: "cache: 5\n",
			want: []string{`c.yaml:1: cache: must be a mapping of namespace, default_ttl`}},
		{name: "several at once", file: "log:\n  level: loud\n  format: xml\ncache:\n  ttl_jitter: 1\n  l1:\n    max_bytes: -5\n",
			want: []string{`c.yaml:2: log.level: "loud" is not one of debug, info, warn, error`, `c.yaml:3: log.format: "xml" is not one of text, json`,
				`c.yaml:5: cache.ttl_jitter: 1 is outside [0, 1)`, `c.yaml:7: cache.l1.max_bytes: -5 is not positive`}},
		{name: "unknown codec", file: "cache:\n  codec_rules:\n    - {pattern: 'x:*', codec: xml}\n",
			want: []string{`cache.codec_rules: codec "xml" of pattern "x:*" is not one of msgpack, json, raw`}},
		{name: "duplicate key", file: "http:\n  addr: a\n  addr: b\n", want: []string{"yaml"}},
		{name: "old warming file", file: "lock_ttl: 1m\nstrategies:\n  - name: x\n",
			want: []string{`c.yaml:1: "lock_ttl" at the top level is the warming file of earlier versions; indent the file's content under a "warming:" key`}},
		{name: "bad variable", env: map[string]string{"CIRCUIT_BREAKER_TIMEOUT": "soon", "CACHE_TTL_JITTER": "-0.1"},
			want: []string{`CIRCUIT_BREAKER_TIMEOUT: cache.breaker.open_timeout: "soon" is not a duration: seconds (90) or a Go duration (90s, 1h30m, 250ms)`,
				`CACHE_TTL_JITTER: cache.ttl_jitter: -0.1 is outside [0, 1)`}},
		{name: "bad flag", flags: map[string]string{"log-level": "loud"},
			want: []string{`--log-level: log.level: "loud" is not one of debug, info, warn, error`}},
		{name: "token and token file", env: map[string]string{"TIERCACHE_TOKEN": "t0ken-value", "TIERCACHE_TOKEN_FILE": filepath.Join(dir, "none")},
			want: []string{"TIERCACHE_TOKEN_FILE: http.token_file: http.token is set too (env TIERCACHE_TOKEN); set only one"}},
		{name: "missing secret file", file: "redis:\n  password_file: nope\n",
			want: []string{"c.yaml:2: redis.password_file: open /", "/nope: no such file"}},
		{name: "cert without key", file: "http:\n  tls_cert: c.pem\n", want: []string{"c.yaml:2: http.tls_cert: needs http.tls_key too"}},
		{name: "bad namespace", env: map[string]string{"CACHE_NAMESPACE": "a b"}, want: []string{`CACHE_NAMESPACE: cache.namespace: "a b" may not contain`}},
		{name: "url scheme", env: map[string]string{"REDIS_URL": "http://u:hunter2@h:1"}, want: []string{`REDIS_URL: redis.url: scheme "http" is not one of redis, rediss, unix`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := Sources{LookupEnv: envOf(tc.env), Flags: tc.flags}
			if tc.file != "" {
				src.File = write(t, t.TempDir(), "c.yaml", tc.file)
			}
			_, err := Load(src)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "t0ken-value") {
				t.Errorf("error shows a secret: %v", err)
			}
			var ce *Error
			if tc.name != "duplicate key" && tc.name != "old warming file" && !errors.As(err, &ce) {
				t.Errorf("%T is not an *Error", err)
			}
		})
	}
}

// TestLoad_JournalDir checks serve's default journal directory.
func TestLoad_JournalDir(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		file string
		want string
	}{
		{map[string]string{"STATE_DIRECTORY": "/var/lib/tc:/other", "XDG_STATE_HOME": "/x", "HOME": "/h"}, "", "/var/lib/tc"},
		{map[string]string{"XDG_STATE_HOME": "/x", "HOME": "/h"}, "", "/x/tiercache"},
		{map[string]string{"HOME": "/h"}, "", "/h/.local/state/tiercache"},
		{map[string]string{"HOME": "/h"}, "cache:\n  recovery:\n    journal_dir: \"\"\n", ""},
		{map[string]string{"HOME": "/h", "TIERCACHE_RECOVERY_JOURNAL_DIR": "/j"}, "", "/j"},
	} {
		src := Sources{LookupEnv: envOf(tc.env)}
		if tc.file != "" {
			src.File = write(t, t.TempDir(), "c.yaml", tc.file)
		}
		c, err := Load(src)
		if err != nil {
			t.Fatal(err)
		}
		if c.Cache.Recovery.JournalDir != tc.want {
			t.Errorf("%v %q: journal dir %q, want %q", tc.env, tc.file, c.Cache.Recovery.JournalDir, tc.want)
		}
	}
	c, err := FromEnv(envOf(map[string]string{"HOME": "/h"}))
	if err != nil || c.Cache.Recovery.JournalDir != "" {
		t.Errorf("FromEnv: journal dir %q, %v; want none", c.Cache.Recovery.JournalDir, err)
	}
}

func TestParsers(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{"90": 90 * time.Second, " 1.5 ": 1500 * time.Millisecond, "250ms": 250 * time.Millisecond, "1h30m": 90 * time.Minute, "-1": -time.Second} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "soon", "1e400", "NaN"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) accepted", in)
		}
	}
	for in, want := range map[string]Bytes{"1024": 1024, "4MiB": 4 << 20, "64 KiB": 64 << 10, "1GB": 1e9, "1.5KiB": 1536, "-1": -1} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "big", "-1MiB", "1TiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

// TestLoad_SeedVariables checks that every variable of the seed's
// deployment sets its setting.
func TestLoad_SeedVariables(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"REDIS_URL": "redis://10.0.0.1:6379/0", "REDIS_PASSWORD": "pw", "REDIS_CLUSTER_ENABLED": "true",
		"REDIS_SENTINEL_HOSTS": "s1:26379,s2:26379", "REDIS_SERVICE_NAME": "cache",
		"CACHE_NAMESPACE": "pynomaly_prod", "CACHE_DEFAULT_TTL": "3600", "CACHE_WARMING_ENABLED": "false",
		"CACHE_MONITORING_ENABLED": "false", "CIRCUIT_BREAKER_ENABLED": "false", "CIRCUIT_BREAKER_THRESHOLD": "7",
		"CIRCUIT_BREAKER_TIMEOUT": "30",
	}
	c, err := Load(Sources{LookupEnv: envOf(env)})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]any{
		"REDIS_URL": c.Redis.URL, "REDIS_PASSWORD": c.Redis.Password, "REDIS_CLUSTER_ENABLED": c.Redis.Cluster,
		"REDIS_SENTINEL_HOSTS": strings.Join(c.Redis.Sentinel.Hosts, ","), "REDIS_SERVICE_NAME": c.Redis.Sentinel.Master,
		"CACHE_NAMESPACE": c.Cache.Namespace, "CACHE_DEFAULT_TTL": c.Cache.DefaultTTL, "CACHE_WARMING_ENABLED": c.Warming.Enabled,
		"CACHE_MONITORING_ENABLED": c.Monitoring.Enabled, "CIRCUIT_BREAKER_ENABLED": c.Cache.Breaker.Enabled,
		"CIRCUIT_BREAKER_THRESHOLD": c.Cache.Breaker.Threshold, "CIRCUIT_BREAKER_TIMEOUT": c.Cache.Breaker.OpenTimeout,
	}
	want := map[string]any{
		"REDIS_URL": "redis://10.0.0.1:6379/0", "REDIS_PASSWORD": "pw", "REDIS_CLUSTER_ENABLED": true,
		"REDIS_SENTINEL_HOSTS": "s1:26379,s2:26379", "REDIS_SERVICE_NAME": "cache",
		"CACHE_NAMESPACE": "pynomaly_prod", "CACHE_DEFAULT_TTL": time.Hour, "CACHE_WARMING_ENABLED": false,
		"CACHE_MONITORING_ENABLED": false, "CIRCUIT_BREAKER_ENABLED": false, "CIRCUIT_BREAKER_THRESHOLD": 7,
		"CIRCUIT_BREAKER_TIMEOUT": 30 * time.Second,
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s=%q: got %v, want %v", name, env[name], got[name], w)
		}
		if f := fieldByEnv(name); f == nil || c.Origin(f.Key).String() != "env "+name {
			t.Errorf("%s: not in the table, or origin %v", name, f)
		}
	}
}

func fieldByEnv(name string) *Field {
	for _, f := range Fields() {
		if f.Env == name {
			return &f
		}
	}
	return nil
}
