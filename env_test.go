package tiercache

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
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
