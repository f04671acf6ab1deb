package tiercache

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/config"
	"github.com/tiercache/tiercache/internal/redistest"
)

func TestOptionsFromEnv(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		check   func(t *testing.T, o Options)
		wantErr bool
	}{
		{"empty means memory", nil, func(t *testing.T, o Options) {
			if o.Redis.enabled() || o.Namespace != "" || o.DefaultTTL != 0 {
				t.Fatalf("%+v", o)
			}
		}, false},
		{"standalone", map[string]string{
			"REDIS_URL": "redis://app@10.0.0.1:6380/2", "REDIS_PASSWORD": "pw",
			"CACHE_NAMESPACE": "shop", "CACHE_DEFAULT_TTL": "3600",
		}, func(t *testing.T, o Options) {
			if o.Redis.URL != "redis://app@10.0.0.1:6380/2" || o.Redis.Password != "pw" || o.Namespace != "shop" || o.DefaultTTL != time.Hour {
				t.Fatalf("%+v", o)
			}
		}, false},
		{"duration TTL", map[string]string{"CACHE_DEFAULT_TTL": "90s"}, func(t *testing.T, o Options) {
			if o.DefaultTTL != 90*time.Second {
				t.Fatal(o.DefaultTTL)
			}
		}, false},
		{"cluster", map[string]string{
			"REDIS_URL": "redis://10.0.0.1:7000", "REDIS_CLUSTER_ENABLED": "true",
			"REDIS_CLUSTER_NODES": "10.0.0.2:7000, 10.0.0.3:7000",
		}, func(t *testing.T, o Options) {
			if !o.Redis.Cluster || !slices.Equal(o.Redis.Addrs, []string{"10.0.0.2:7000", "10.0.0.3:7000"}) {
				t.Fatalf("%+v", o.Redis)
			}
		}, false},
		{"sentinel", map[string]string{
			"REDIS_SENTINEL_HOSTS": "s1:26379,s2:26379,s3:26379", "REDIS_SERVICE_NAME": "cache",
		}, func(t *testing.T, o Options) {
			if o.Redis.SentinelMaster != "cache" || len(o.Redis.SentinelAddrs) != 3 {
				t.Fatalf("%+v", o.Redis)
			}
		}, false},
		{"sentinel default name", map[string]string{"REDIS_SENTINEL_HOSTS": "s1:26379"}, func(t *testing.T, o Options) {
			if o.Redis.SentinelMaster != "mymaster" {
				t.Fatal(o.Redis.SentinelMaster)
			}
		}, false},
		{"bad bool", map[string]string{"REDIS_CLUSTER_ENABLED": "yes please"}, nil, true},
		{"bad ttl", map[string]string{"CACHE_DEFAULT_TTL": "soon"}, nil, true},
		{"negative ttl", map[string]string{"CACHE_DEFAULT_TTL": "-5"}, nil, true},
		{"malformed url", map[string]string{"REDIS_URL": "redis://u:hunter2@[::1"}, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, err := optionsFromLookup(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if tc.wantErr {
				if !errors.Is(err, ErrInvalidOptions) {
					t.Fatalf("got %v, want ErrInvalidOptions", err)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("error leaks the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, o)
		})
	}
	t.Run("real environment", func(t *testing.T) {
		t.Setenv("CACHE_NAMESPACE", "fromenv")
		t.Setenv("REDIS_URL", "")
		o, err := OptionsFromEnv()
		if err != nil || o.Namespace != "fromenv" {
			t.Fatalf("%+v %v", o, err)
		}
	})
}

func TestRedisOptions_StringRedacts(t *testing.T) {
	for _, raw := range []string{
		"redis://user:hunter2@host:6379/0",
		"rediss://:hunter2@host:6379",
		"redis://user:hunter2@[::1",
		"redis://host:6379/?password=hunter2",
	} {
		if s := (RedisOptions{URL: raw}).String(); strings.Contains(s, "hunter2") {
			t.Errorf("%q printed as %q", raw, s)
		}
	}
}

func TestOptionsFromEnv_Breaker(t *testing.T) {
	env := map[string]string{"CIRCUIT_BREAKER_ENABLED": "true", "CIRCUIT_BREAKER_THRESHOLD": "3", "CIRCUIT_BREAKER_TIMEOUT": "60"}
	o, err := optionsFromLookup(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil || o.Breaker.Disabled || o.Breaker.Threshold != 3 || o.Breaker.OpenTimeout != time.Minute {
		t.Fatalf("%+v %v", o.Breaker, err)
	}
	o, err = optionsFromLookup(func(k string) (string, bool) {
		if k == "CIRCUIT_BREAKER_ENABLED" {
			return "false", true
		}
		return "", false
	})
	if err != nil || !o.Breaker.Disabled {
		t.Fatalf("disabled: %+v %v", o.Breaker, err)
	}
	for k, v := range map[string]string{"CIRCUIT_BREAKER_ENABLED": "maybe", "CIRCUIT_BREAKER_THRESHOLD": "0", "CIRCUIT_BREAKER_TIMEOUT": "never"} {
		if _, err := optionsFromLookup(func(q string) (string, bool) { return v, q == k }); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s=%s: %v", k, v, err)
		}
	}
}

func TestOptionsFromEnv_PasswordFile(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-From-File"
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain := write("plain", secret)
	newline := write("newline", secret+"\n")
	crlf := write("crlf", secret+"\r\n")
	twoNewlines := write("two", secret+"\n\n")
	empty := write("empty", "")
	for _, tc := range []struct {
		name     string
		env      map[string]string
		password string // want in Redis.Password
		sentinel string // want in Redis.SentinelPassword
		errHas   string // want an ErrInvalidOptions error containing this
	}{
		{name: "file", env: map[string]string{"REDIS_PASSWORD_FILE": plain}, password: secret},
		{name: "one trailing newline dropped", env: map[string]string{"REDIS_PASSWORD_FILE": newline}, password: secret},
		{name: "crlf dropped", env: map[string]string{"REDIS_PASSWORD_FILE": crlf}, password: secret},
		{name: "all surrounding white space dropped", env: map[string]string{"REDIS_PASSWORD_FILE": twoNewlines}, password: secret},
		{name: "variable", env: map[string]string{"REDIS_PASSWORD": secret}, password: secret},
		{name: "username", env: map[string]string{"REDIS_USERNAME": "app", "REDIS_PASSWORD_FILE": plain}, password: secret},
		{name: "sentinel file", env: map[string]string{
			"REDIS_SENTINEL_HOSTS": "s1:26379", "REDIS_SENTINEL_PASSWORD_FILE": newline, "REDIS_PASSWORD_FILE": plain,
		}, password: secret, sentinel: secret},
		{name: "both set", env: map[string]string{"REDIS_PASSWORD": "other-" + secret, "REDIS_PASSWORD_FILE": plain},
			errHas: "REDIS_PASSWORD_FILE: redis.password_file: redis.password is set too (env REDIS_PASSWORD); set only one"},
		{name: "sentinel both set", env: map[string]string{
			"REDIS_SENTINEL_HOSTS": "s1:26379", "REDIS_SENTINEL_PASSWORD": secret, "REDIS_SENTINEL_PASSWORD_FILE": plain,
		}, errHas: "redis.sentinel.password is set too (env REDIS_SENTINEL_PASSWORD); set only one"},
		{name: "missing file", env: map[string]string{"REDIS_PASSWORD_FILE": filepath.Join(dir, "nope")},
			errHas: "REDIS_PASSWORD_FILE: redis.password_file: open " + filepath.Join(dir, "nope")},
		{name: "directory", env: map[string]string{"REDIS_PASSWORD_FILE": dir}, errHas: "REDIS_PASSWORD_FILE: redis.password_file: read " + dir},
		{name: "empty file", env: map[string]string{"REDIS_PASSWORD_FILE": empty}, errHas: "is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o, err := optionsFromLookup(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if tc.errHas != "" {
				if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err = %v, want ErrInvalidOptions containing %q", err, tc.errHas)
				}
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.Redis.Password != tc.password || o.Redis.SentinelPassword != tc.sentinel {
				t.Fatalf("Password %q SentinelPassword %q, want %q and %q", o.Redis.Password, o.Redis.SentinelPassword, tc.password, tc.sentinel)
			}
			if want := tc.env["REDIS_USERNAME"]; o.Redis.Username != want {
				t.Fatalf("Username %q, want %q", o.Redis.Username, want)
			}
		})
	}
}

// TestNew_WrongCredentials checks that New fails at once, with an error
// that says why and never shows the password, when Redis refuses the
// credentials: no retry loop hides the cause.
func TestNew_WrongCredentials(t *testing.T) {
	t.Parallel()
	const (
		right = "right-Pw-1"
		wrong = "wrong-Pw-2"
	)
	// The harness authenticates as the default user with requirepass.
	srv := redistest.NewStandalone(t, "--requirepass", right, "--user", "app", "on", ">"+right, "~*", "&*", "+@all")
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(wrong+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fromEnv := func(env map[string]string) RedisOptions {
		o, err := optionsFromLookup(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			t.Fatal(err)
		}
		return o.Redis
	}
	for _, tc := range []struct {
		name  string
		redis RedisOptions
	}{
		{"url", RedisOptions{URL: "redis://app:" + wrong + "@" + srv.Addr + "/0"}},
		{"options", RedisOptions{Addrs: []string{srv.Addr}, Username: "app", Password: wrong}},
		{"unknown user", RedisOptions{Addrs: []string{srv.Addr}, Username: "nobody", Password: wrong}},
		{"default user", RedisOptions{URL: "redis://:" + wrong + "@" + srv.Addr}},
		{"no credentials", RedisOptions{Addrs: []string{srv.Addr}}},
		{"password file", fromEnv(map[string]string{
			"REDIS_URL": "redis://" + srv.Addr + "/0", "REDIS_USERNAME": "app", "REDIS_PASSWORD_FILE": pwFile,
		})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			c, err := New(Options{Redis: tc.redis})
			took := time.Since(start)
			if err == nil {
				c.Close()
				t.Fatal("New succeeded with wrong credentials")
			}
			msg := err.Error()
			if !strings.Contains(msg, "WRONGPASS") && !strings.Contains(msg, "NOAUTH") {
				t.Errorf("the error does not say that the credentials were refused: %v", err)
			}
			if strings.Contains(msg, wrong) || strings.Contains(msg, right) {
				t.Errorf("the error shows a password: %v", err)
			}
			// One round trip on loopback; a retry loop would take seconds.
			if took > 2*time.Second {
				t.Errorf("New took %v to fail", took)
			}
		})
	}
	c, err := New(Options{Redis: RedisOptions{Addrs: []string{srv.Addr}, Username: "app", Password: right}})
	if err != nil {
		t.Fatalf("New with the right credentials: %v", err)
	}
	c.Close()
}

// TestOptionsFromConfig_EveryOption fails when a field of Options has no
// configuration key (config.Field.Option), unless it is listed here as
// one that only Go can set.
func TestOptionsFromConfig_EveryOption(t *testing.T) {
	goOnly := map[string]string{
		"Codecs":            "codecs are Go code",
		"Logger":            "serve builds it from log.level and log.format",
		"OnAccess":          "a Go callback (warming's hot-key tracker)",
		"Recorder":          "serve builds it when monitoring.enabled",
		"TracerProvider":    "serve builds it from the tracing section",
		"Now":               "a clock, for tests",
		"Fleet.Version":     "serve publishes its binary's version",
		"Redis.DialContext": "a Go dial function",
	}
	mapped := map[string]bool{}
	for _, f := range config.Fields() {
		if f.Option != "" {
			mapped[f.Option] = true
		}
	}
	var walk func(typ reflect.Type, prefix string)
	walk = func(typ reflect.Type, prefix string) {
		for i := range typ.NumField() {
			sf := typ.Field(i)
			name := prefix + sf.Name
			switch {
			case !sf.IsExported(), goOnly[name] != "", mapped[name]:
			case sf.Type.Kind() == reflect.Struct:
				walk(sf.Type, name+".")
			default:
				t.Errorf("Options.%s has no configuration key: add one to package config (an opt tag), or list it in goOnly", name)
			}
		}
	}
	walk(reflect.TypeFor[Options](), "")
	for opt := range mapped {
		if _, ok := reflect.TypeFor[Options]().FieldByName(strings.Split(opt, ".")[0]); !ok {
			t.Errorf("config maps to Options.%s, which does not exist", opt)
		}
	}
}

// TestOptionsFromConfig_ServiceDefaults checks that serve's defaults are
// the library's, but for the ones the service chooses on purpose.
func TestOptionsFromConfig_ServiceDefaults(t *testing.T) {
	c, err := config.Load(config.Sources{LookupEnv: func(k string) (string, bool) {
		if k == "STATE_DIRECTORY" {
			return "/state", true
		}
		return "", false
	}})
	if err != nil {
		t.Fatal(err)
	}
	o, err := OptionsFromConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	got := o.withDefaults()
	lib := Options{}.withDefaults()
	// The service's own choices.
	if got.FailSafe.MaxDuration != time.Hour || got.ReadTimeout != 500*time.Millisecond || !got.Redis.LazyConnect || got.RecoveryJournalDir != "/state" {
		t.Errorf("service defaults: fail-safe %v, read budget %v, lazy %v, journal %q", got.FailSafe.MaxDuration, got.ReadTimeout, got.Redis.LazyConnect, got.RecoveryJournalDir)
	}
	got.FailSafe.MaxDuration, got.ReadTimeout, got.Redis.LazyConnect, got.RecoveryJournalDir = 0, 0, false, ""
	// serve publishes heartbeats (Options.Fleet); New names the instance.
	if !got.Fleet.Enabled || got.Fleet.InstanceID == "" {
		t.Errorf("service defaults: fleet %+v, want it on with an instance id", got.Fleet)
	}
	got.Fleet.Enabled, got.Fleet.InstanceID = false, ""
	got.Logger, lib.Logger, got.Now, lib.Now = nil, nil, nil, nil
	if !reflect.DeepEqual(got, lib) {
		t.Errorf("the defaults of package config differ from the library's:\n got %+v\nwant %+v", got, lib)
	}
}

// TestOptionsFromEnv_ServiceNameAlone: REDIS_SERVICE_NAME without
// REDIS_SENTINEL_HOSTS selects nothing, as in the seed's environment files.
func TestOptionsFromEnv_ServiceNameAlone(t *testing.T) {
	env := map[string]string{"REDIS_URL": "redis://10.0.0.1:6379/0", "REDIS_SERVICE_NAME": "mymaster"}
	o, err := optionsFromLookup(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil || o.Redis.SentinelMaster != "" || o.Redis.URL != env["REDIS_URL"] {
		t.Fatalf("%+v %v", o.Redis, err)
	}
}
