package tiercache

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// OptionsFromEnv builds Options from the environment:
//
//	REDIS_URL              redis:// or rediss:// URL; unset = in-memory L2
//	REDIS_USERNAME         ACL user name (overrides one in REDIS_URL)
//	REDIS_PASSWORD         password (overrides one in REDIS_URL)
//	REDIS_PASSWORD_FILE    file holding the password instead (a Docker or
//	                       Kubernetes secret); one trailing newline is dropped
//	REDIS_CLUSTER_ENABLED  "true" for Redis Cluster (REDIS_URL then names a seed;
//	                       more seeds in REDIS_CLUSTER_NODES, comma separated)
//	REDIS_SENTINEL_HOSTS   comma-separated sentinel host:port list
//	REDIS_SERVICE_NAME     Sentinel master name (default "mymaster" when
//	                       REDIS_SENTINEL_HOSTS is set); with Sentinel, REDIS_URL
//	                       only supplies credentials and the DB
//	REDIS_SENTINEL_PASSWORD      password the sentinels require (their
//	                             requirepass), or REDIS_SENTINEL_PASSWORD_FILE
//	REDIS_TLS_CA_FILE      CA certificates (PEM) that verify the servers
//	REDIS_TLS_CERT_FILE    client certificate and key (PEM), for servers
//	REDIS_TLS_KEY_FILE     that require one (tls-auth-clients yes)
//	REDIS_TLS_SERVER_NAME  name the servers' certificates must carry
//	                       (any REDIS_TLS_* variable enables TLS)
//	CACHE_NAMESPACE        key namespace
//	CACHE_DEFAULT_TTL      default TTL: seconds ("3600") or a Go duration ("1h")
//	CIRCUIT_BREAKER_ENABLED    "false" turns the L2 circuit breaker off
//	CIRCUIT_BREAKER_THRESHOLD  consecutive L2 failures that open it
//	CIRCUIT_BREAKER_TIMEOUT    how long it stays open: seconds or a duration
//
// Unset variables leave the Options zero (their documented defaults). A
// malformed value is an error matching ErrInvalidOptions.
func OptionsFromEnv() (Options, error) {
	return optionsFromLookup(os.LookupEnv)
}

func optionsFromLookup(lookup func(string) (string, bool)) (Options, error) {
	var o Options
	get := func(k string) string {
		v, _ := lookup(k)
		return strings.TrimSpace(v)
	}
	o.Redis.URL = get("REDIS_URL")
	o.Redis.Username = get("REDIS_USERNAME")
	var err error
	if o.Redis.Password, err = secretFromEnv(lookup, "REDIS_PASSWORD"); err != nil {
		return o, err
	}
	if o.Redis.TLS, err = tlsFromEnv(get); err != nil {
		return o, err
	}
	if v := get("REDIS_CLUSTER_ENABLED"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return o, optErr("REDIS_CLUSTER_ENABLED=%q is not a boolean", v)
		}
		o.Redis.Cluster = b
	}
	if v := get("REDIS_CLUSTER_NODES"); v != "" {
		o.Redis.Addrs = splitList(v)
	}
	if v := get("REDIS_SENTINEL_HOSTS"); v != "" {
		o.Redis.SentinelAddrs = splitList(v)
		o.Redis.SentinelMaster = get("REDIS_SERVICE_NAME")
		if o.Redis.SentinelMaster == "" {
			o.Redis.SentinelMaster = "mymaster"
		}
		if o.Redis.SentinelPassword, err = secretFromEnv(lookup, "REDIS_SENTINEL_PASSWORD"); err != nil {
			return o, err
		}
	}
	o.Namespace = get("CACHE_NAMESPACE")
	if v := get("CACHE_DEFAULT_TTL"); v != "" {
		d, err := parseSecondsOrDuration(v)
		if err != nil || d <= 0 {
			return o, optErr("CACHE_DEFAULT_TTL=%q is not a positive number of seconds or a duration", v)
		}
		o.DefaultTTL = d
	}
	if v := get("CIRCUIT_BREAKER_ENABLED"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return o, optErr("CIRCUIT_BREAKER_ENABLED=%q is not a boolean", v)
		}
		o.Breaker.Disabled = !b
	}
	if v := get("CIRCUIT_BREAKER_THRESHOLD"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return o, optErr("CIRCUIT_BREAKER_THRESHOLD=%q is not a positive integer", v)
		}
		o.Breaker.Threshold = uint32(n)
	}
	if v := get("CIRCUIT_BREAKER_TIMEOUT"); v != "" {
		d, err := parseSecondsOrDuration(v)
		if err != nil || d <= 0 {
			return o, optErr("CIRCUIT_BREAKER_TIMEOUT=%q is not a positive number of seconds or a duration", v)
		}
		o.Breaker.OpenTimeout = d
	}
	if o.Redis.URL != "" {
		if err := o.Redis.validate(); err != nil {
			return o, err
		}
	}
	return o, nil
}

// secretFromEnv returns the value of the variable name, or the content of
// the file that name+"_FILE" names, less one trailing newline. Setting both
// is an error. Errors name the variables and the file, never the content.
func secretFromEnv(lookup func(string) (string, bool), name string) (string, error) {
	v, _ := lookup(name)
	path, _ := lookup(name + "_FILE")
	v, path = strings.TrimSpace(v), strings.TrimSpace(path)
	if path == "" {
		return v, nil
	}
	if v != "" {
		return "", optErr("%s and %s_FILE are both set; set only one", name, name)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		// The error of ReadFile holds the path and the reason only.
		return "", optErr("%s_FILE: %v", name, err)
	}
	secret := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if secret == "" {
		return "", optErr("%s_FILE: %s is empty", name, path)
	}
	return secret, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseSecondsOrDuration accepts "3600" (seconds) or "1h30m".
func parseSecondsOrDuration(v string) (time.Duration, error) {
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		return time.Duration(n * float64(time.Second)), nil
	}
	return time.ParseDuration(v)
}
