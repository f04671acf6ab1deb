package tiercache

import (
	"os"
	"time"

	"github.com/tiercache/tiercache/codec"
	"github.com/tiercache/tiercache/config"
)

// OptionsFromEnv builds Options from the environment variables of
// package config (docs/configuration.md lists them all), for example:
//
//	REDIS_URL              redis:// or rediss:// URL; unset = in-memory L2
//	REDIS_USERNAME         ACL user name (overrides one in REDIS_URL)
//	REDIS_PASSWORD         password (overrides one in REDIS_URL), or
//	REDIS_PASSWORD_FILE    a file holding it (a Docker or Kubernetes secret)
//	REDIS_CLUSTER_ENABLED  "true" for Redis Cluster (more seeds in
//	                       REDIS_CLUSTER_NODES, comma separated)
//	REDIS_SENTINEL_HOSTS   comma-separated sentinel host:port list
//	REDIS_SERVICE_NAME     Sentinel master name (default "mymaster")
//	REDIS_TLS_CA_FILE, REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE,
//	REDIS_TLS_SERVER_NAME  TLS to Redis (any of them enables it)
//	CACHE_NAMESPACE        key namespace
//	CACHE_DEFAULT_TTL      default TTL: seconds ("3600") or a duration ("1h")
//	CIRCUIT_BREAKER_ENABLED, CIRCUIT_BREAKER_THRESHOLD, CIRCUIT_BREAKER_TIMEOUT
//
// Unset variables leave the Options zero, which means the library's
// defaults (not the service's: see config.Sources.NoDefaults). A
// malformed value is an error matching ErrInvalidOptions.
func OptionsFromEnv() (Options, error) {
	return optionsFromLookup(os.LookupEnv)
}

func optionsFromLookup(lookup func(string) (string, bool)) (Options, error) {
	c, err := config.FromEnv(lookup)
	if err != nil {
		return Options{}, optErr("%v", err)
	}
	return OptionsFromConfig(c)
}

// OptionsFromConfig turns a configuration (package config: a YAML file,
// the environment and serve's flags) into Options. Settings that c does
// not give (config.Config.Given) stay zero: the library's defaults. It
// reads the TLS files the configuration names; a file that cannot be read
// is an error matching ErrInvalidOptions.
func OptionsFromConfig(c *config.Config) (Options, error) {
	var o Options
	cc, given := c.Cache, c.Given
	o.Namespace = cc.Namespace
	o.DefaultTTL = cc.DefaultTTL
	o.NegativeTTL = offDuration(cc.NegativeTTL)
	o.TTLJitter = cc.TTLJitter
	o.Codec = cc.Codec
	if cc.CodecRules != nil {
		o.CodecRules = make([]codec.Rule, len(cc.CodecRules))
		for i, r := range cc.CodecRules {
			o.CodecRules[i] = codec.Rule{Pattern: r.Pattern, Codec: r.Codec}
		}
	}
	o.CompressAbove = int(cc.CompressAbove)
	o.MaxKeyLength = cc.MaxKeyLength
	o.MaxValueSize = int(cc.MaxValueSize)
	o.ReadPlainValues = cc.ReadPlainValues
	o.OperationTimeout = cc.OperationTimeout
	o.ReadTimeout = cc.ReadTimeout
	o.LivenessInterval = cc.LivenessInterval
	o.Retries = cc.Retries
	o.RetryBackoff = cc.RetryBackoff
	o.LoaderSoftTimeout = cc.LoaderSoftTimeout
	o.LoaderHardTimeout = cc.LoaderHardTimeout
	o.EagerRefreshThreshold = cc.EagerRefreshThreshold

	o.L1 = L1Options{Disabled: given("cache.l1.enabled") && !cc.L1.Enabled, MaxBytes: int64(cc.L1.MaxBytes), MaxTTL: cc.L1.MaxTTL}
	o.Breaker = BreakerOptions{
		Disabled: given("cache.breaker.enabled") && !cc.Breaker.Enabled, Threshold: uint32(cc.Breaker.Threshold),
		OpenTimeout: cc.Breaker.OpenTimeout, HalfOpenProbes: uint32(cc.Breaker.HalfOpenProbes),
	}
	o.FailSafe = FailSafeOptions{MaxDuration: cc.FailSafe.MaxDuration, Throttle: cc.FailSafe.Throttle}
	o.Lock = LockOptions{Enabled: cc.Lock.Enabled, TTL: cc.Lock.TTL, MaxWait: cc.Lock.MaxWait}
	o.RecoveryQueueSize = cc.Recovery.QueueSize
	o.RecoveryReplayWindow = offDuration(cc.Recovery.ReplayWindow)
	o.RecoveryJournalDir = cc.Recovery.JournalDir
	o.Fleet = FleetOptions{Enabled: cc.Fleet.Enabled, InstanceID: cc.Fleet.InstanceID, Address: cc.Fleet.Address, Heartbeat: cc.Fleet.Heartbeat}
	o.Canary = CanaryOptions{Interval: cc.Canary.Interval, MissAfter: cc.Canary.MissAfter}

	r := c.Redis
	o.Redis = RedisOptions{
		URL: r.URL, Addrs: r.Addrs, Username: r.Username, Password: r.Password, DB: r.DB,
		SentinelAddrs:    r.Sentinel.Hosts,
		SentinelUsername: r.Sentinel.Username, SentinelPassword: r.Sentinel.Password,
		Cluster: r.Cluster, DialTimeout: r.DialTimeout, WriteTimeout: r.WriteTimeout,
		LazyConnect: given("redis.fail_fast_start") && !r.FailFastStart,
	}
	if len(r.Sentinel.Hosts) > 0 {
		o.Redis.SentinelMaster = r.Sentinel.Master // REDIS_SERVICE_NAME alone selects nothing
	}
	var err error
	if o.Redis.TLS, err = tlsFromConfig(r.TLS); err != nil {
		return o, err
	}
	if o.Redis.enabled() {
		if err := o.Redis.validate(); err != nil {
			return o, err
		}
	}
	return o, nil
}

// offDuration maps the configuration's "negative turns it off" to the
// Options' negative values.
func offDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -1
	}
	return d
}
