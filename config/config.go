// Package config is the configuration of tiercache: one YAML file, the
// environment and the command line of `tiercache serve`, read into one
// Config.
//
// The struct tags of Config are the one table of names. Each setting has
// a key in the file (its path of yaml tags, such as cache.breaker.threshold),
// at most one environment variable (env), at most one flag of serve (flag),
// a default (default) and a description (help). The loader, `tiercache
// config print` and docs/configuration.md are all made from that table.
//
// Precedence: a flag beats the environment, which beats the file, which
// beats the default. Unknown keys, values of the wrong type and values
// out of range are errors that name the file and line, the variable or
// the flag, and the values allowed.
//
// The package imports no other tiercache package, so that all of them
// may use it; tiercache.OptionsFromConfig turns a Config into the
// library's Options.
package config

import (
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole configuration.
type Config struct {
	Cache      Cache      `yaml:"cache"`
	Redis      Redis      `yaml:"redis"`
	HTTP       HTTP       `yaml:"http"`
	Log        Log        `yaml:"log"`
	Monitoring Monitoring `yaml:"monitoring"`
	Tracing    Tracing    `yaml:"tracing"`
	Warming    Warming    `yaml:"warming"`

	// Path is the file the configuration was read from; empty when none.
	Path string `yaml:"-" env:"-"`

	origins    map[string]Origin // by key; absent means default
	noDefaults bool              // loaded with Sources.NoDefaults
}

// Cache holds the settings of tiercache.Options that are not about Redis.
type Cache struct {
	Namespace   string        `yaml:"namespace" env:"CACHE_NAMESPACE" flag:"namespace" default:"tiercache" opt:"Namespace" help:"prefix of every key in Redis (<namespace>:<key>); no white space, braces or #"`
	DefaultTTL  time.Duration `yaml:"default_ttl" env:"CACHE_DEFAULT_TTL" default:"1h" check:"positive" opt:"DefaultTTL" help:"lifetime of an entry written without a TTL"`
	NegativeTTL time.Duration `yaml:"negative_ttl" env:"CACHE_NEGATIVE_TTL" default:"30s" check:"off" opt:"NegativeTTL" help:"how long a loader's not-found is remembered; -1 turns negative caching off"`
	TTLJitter   float64       `yaml:"ttl_jitter" env:"CACHE_TTL_JITTER" default:"0" check:"fraction" opt:"TTLJitter" help:"in [0, 1): each TTL is shortened by a random fraction of up to this much"`

	Codec      string      `yaml:"codec" env:"CACHE_CODEC" default:"msgpack" check:"enum=msgpack|json|raw" opt:"Codec" help:"codec of the keys that match no codec rule"`
	CodecRules []CodecRule `yaml:"codec_rules" env:"-" opt:"CodecRules" help:"list of {pattern, codec}: the first rule whose pattern (path.Match syntax) matches a key picks its codec; unset means the built-in rules (json for api:*, response:*, config:*), [] means none"`

	CompressAbove Bytes `yaml:"compress_above" env:"CACHE_COMPRESS_ABOVE" default:"1KiB" check:"off" opt:"CompressAbove" help:"payload size from which values are compressed (s2); -1 turns compression off"`
	MaxKeyLength  int   `yaml:"max_key_length" env:"CACHE_MAX_KEY_LENGTH" default:"1024" check:"positive" opt:"MaxKeyLength" help:"longest key accepted, in bytes"`
	MaxValueSize  Bytes `yaml:"max_value_size" env:"CACHE_MAX_VALUE_SIZE" default:"4MiB" check:"positive" opt:"MaxValueSize" help:"largest encoded value accepted"`

	ReadPlainValues bool `yaml:"read_plain_values" env:"CACHE_READ_PLAIN_VALUES" default:"false" opt:"ReadPlainValues" help:"read keys holding bytes tiercache did not write (plain strings set by another program) as raw values, for migrating from another cache; false answers them with 422 not_tiercache_value"`

	OperationTimeout time.Duration `yaml:"operation_timeout" env:"CACHE_OPERATION_TIMEOUT" default:"1s" check:"positive" opt:"OperationTimeout" help:"bound of each attempt of a Redis operation"`
	LivenessInterval time.Duration `yaml:"liveness_interval" env:"CACHE_LIVENESS_INTERVAL" default:"0" check:"off" opt:"LivenessInterval" help:"how often Redis is probed while L1 (or, without L1, the cached tag versions) relies on its invalidations (no answer within operation_timeout/2 ends their freshness); 0 means operation_timeout/4 within 50ms to 250ms, -1 turns the probe off"`
	ReadTimeout      time.Duration `yaml:"read_timeout" env:"CACHE_READ_TIMEOUT" default:"500ms" check:"nonnegative" opt:"ReadTimeout" help:"one budget for the Redis part of a whole read, retries and backoff included; 0 means none (operation_timeout per attempt)"`
	Retries          int           `yaml:"retries" env:"CACHE_RETRIES" default:"2" check:"off" opt:"Retries" help:"retries of an idempotent Redis operation after Redis was unreachable; -1 means none"`
	RetryBackoff     time.Duration `yaml:"retry_backoff" env:"CACHE_RETRY_BACKOFF" default:"20ms" check:"positive" opt:"RetryBackoff" help:"first backoff between retries (exponential, full jitter)"`

	LoaderSoftTimeout     time.Duration `yaml:"loader_soft_timeout" env:"CACHE_LOADER_SOFT_TIMEOUT" default:"0" check:"nonnegative" opt:"LoaderSoftTimeout" help:"after this long a slow loader's caller gets the stale value, if any, while the loader finishes; 0 means none"`
	LoaderHardTimeout     time.Duration `yaml:"loader_hard_timeout" env:"CACHE_LOADER_HARD_TIMEOUT" default:"0" check:"nonnegative" opt:"LoaderHardTimeout" help:"a loader's context is cancelled after this long; 0 means none"`
	EagerRefreshThreshold float64       `yaml:"eager_refresh_threshold" env:"CACHE_EAGER_REFRESH_THRESHOLD" default:"0" check:"fraction" opt:"EagerRefreshThreshold" help:"in [0, 1): a Fetch of an entry older than this fraction of its TTL refreshes it in the background; 0 means never"`

	L1       L1       `yaml:"l1"`
	Breaker  Breaker  `yaml:"breaker"`
	FailSafe FailSafe `yaml:"fail_safe"`
	Lock     Lock     `yaml:"lock"`
	Recovery Recovery `yaml:"recovery"`
	Fleet    Fleet    `yaml:"fleet"`
	Canary   Canary   `yaml:"canary"`
}

// CodecRule maps keys matching Pattern to the codec Codec.
type CodecRule struct {
	Pattern string `yaml:"pattern"`
	Codec   string `yaml:"codec"`
}

// L1 configures the in-process tier.
type L1 struct {
	Enabled  bool          `yaml:"enabled" env:"CACHE_L1_ENABLED" default:"true" opt:"L1.Disabled" help:"false turns the in-process tier off: every read goes to Redis"`
	MaxBytes Bytes         `yaml:"max_bytes" env:"CACHE_L1_MAX_BYTES" default:"64MiB" check:"positive" opt:"L1.MaxBytes" help:"memory bound of the in-process tier (keys, values and overhead)"`
	MaxTTL   time.Duration `yaml:"max_ttl" env:"CACHE_L1_MAX_TTL" default:"5m" check:"positive" opt:"L1.MaxTTL" help:"longest an entry stays in the in-process tier, whatever its TTL"`
}

// Breaker configures the circuit breaker around Redis.
type Breaker struct {
	Enabled        bool          `yaml:"enabled" env:"CIRCUIT_BREAKER_ENABLED" default:"true" opt:"Breaker.Disabled" help:"false turns the circuit breaker off"`
	Threshold      int           `yaml:"threshold" env:"CIRCUIT_BREAKER_THRESHOLD" default:"5" check:"positive" opt:"Breaker.Threshold" help:"consecutive failed Redis operations that open the breaker"`
	OpenTimeout    time.Duration `yaml:"open_timeout" env:"CIRCUIT_BREAKER_TIMEOUT" default:"200ms" check:"positive" opt:"Breaker.OpenTimeout" help:"how long the breaker stays open before a probe; also the Retry-After of 503 answers unless http.retry_after is set"`
	HalfOpenProbes int           `yaml:"half_open_probes" env:"CIRCUIT_BREAKER_HALF_OPEN_PROBES" default:"1" check:"positive" opt:"Breaker.HalfOpenProbes" help:"operations that probe Redis while half-open; all must succeed to close it"`
}

// FailSafe configures stale serving.
type FailSafe struct {
	MaxDuration time.Duration `yaml:"max_duration" env:"CACHE_FAIL_SAFE_MAX_DURATION" default:"1h" check:"nonnegative" opt:"FailSafe.MaxDuration" help:"how long after its TTL an entry may still be served, flagged stale, while Redis or a loader fails; 0 turns fail-safe off"`
	Throttle    time.Duration `yaml:"throttle" env:"CACHE_FAIL_SAFE_THROTTLE" default:"30s" check:"positive" opt:"FailSafe.Throttle" help:"how long a stale value is reused before the loader is tried again"`
}

// Lock configures the fleet-wide stampede lock.
type Lock struct {
	Enabled bool          `yaml:"enabled" env:"CACHE_LOCK_ENABLED" default:"false" opt:"Lock.Enabled" help:"instances missing the same key at once elect one loader through a lock in Redis"`
	TTL     time.Duration `yaml:"ttl" env:"CACHE_LOCK_TTL" default:"10s" check:"positive" opt:"Lock.TTL" help:"how long a dead lock holder can block the others"`
	MaxWait time.Duration `yaml:"max_wait" env:"CACHE_LOCK_MAX_WAIT" default:"3s" check:"positive" opt:"Lock.MaxWait" help:"how long a waiter waits for the holder's value before loading itself"`
}

// Recovery configures the queue of writes that failed while Redis was
// unreachable.
type Recovery struct {
	QueueSize    int           `yaml:"queue_size" env:"CACHE_RECOVERY_QUEUE_SIZE" default:"10000" check:"off" opt:"RecoveryQueueSize" help:"operations (on distinct keys) the recovery queue holds; -1 turns it off and failed writes just fail"`
	ReplayWindow time.Duration `yaml:"replay_window" env:"CACHE_RECOVERY_REPLAY_WINDOW" default:"30s" check:"off" opt:"RecoveryReplayWindow" help:"invalidations acknowledged within this window are applied again after a lost link; -1 turns it off"`
	JournalDir   string        `yaml:"journal_dir" env:"TIERCACHE_RECOVERY_JOURNAL_DIR" default:"$STATE_DIRECTORY" opt:"RecoveryJournalDir" help:"directory of the recovery queue's on-disk journal (what a 202 promised survives a stop or crash); the default is $STATE_DIRECTORY, else $XDG_STATE_HOME/tiercache, else ~/.local/state/tiercache; \"\" in the file keeps the queue in memory only"`
}

// Fleet configures the heartbeat each instance publishes in Redis, which
// GET /v1/fleet, the dashboard and tiercache top --fleet list.
type Fleet struct {
	Enabled    bool          `yaml:"enabled" env:"CACHE_FLEET_ENABLED" default:"true" opt:"Fleet.Enabled" help:"publish this instance's heartbeat (id, version, address, health, epoch, L1 size, queue, link resets) in Redis, under <namespace>#fleet, so that every instance can list the fleet; false also turns the canary off"`
	InstanceID string        `yaml:"instance_id" env:"TIERCACHE_INSTANCE_ID" opt:"Fleet.InstanceID" help:"this instance's name in the fleet; unset means <hostname>-<pid>-<4 random hex digits>, new at each start; at most 128 bytes, no white space"`
	Address    string        `yaml:"address" env:"TIERCACHE_ADVERTISE_ADDR" opt:"Fleet.Address" help:"address the fleet view shows for this instance; unset means the listener's address, with this host's name when it listens on every interface"`
	Heartbeat  time.Duration `yaml:"heartbeat" env:"CACHE_FLEET_HEARTBEAT" default:"5s" check:"positive" opt:"Fleet.Heartbeat" help:"how often the heartbeat is published; an instance not heard from for 3 heartbeats is listed as silent, and dropped after 60"`
}

// Canary configures the coherence canary (docs/operations.md).
type Canary struct {
	Interval  time.Duration `yaml:"interval" env:"CACHE_CANARY_INTERVAL" default:"0" check:"nonnegative" opt:"Canary.Interval" help:"how often this instance writes its coherence marker, whose arrival every other instance times (tiercache_coherence_lag_seconds); 0 turns the canary off; needs cache.fleet.enabled"`
	MissAfter time.Duration `yaml:"miss_after" env:"CACHE_CANARY_MISS_AFTER" default:"2s" check:"positive" opt:"Canary.MissAfter" help:"a marker that has not reached an instance this long after it was written counts as missed (tiercache_coherence_markers_missed_total)"`
}

// Redis selects and configures the Redis L2.
type Redis struct {
	URL          string   `yaml:"url" env:"REDIS_URL" flag:"redis-url" secret:"url" opt:"Redis.URL" help:"redis://[user:password@]host:port[/db], rediss:// for TLS; unset (and no addrs or sentinel hosts) means an in-memory store private to the process"`
	Addrs        []string `yaml:"addrs" env:"REDIS_CLUSTER_NODES" opt:"Redis.Addrs" help:"host:port addresses: one for standalone, any number of Cluster seeds"`
	Username     string   `yaml:"username" env:"REDIS_USERNAME" opt:"Redis.Username" help:"ACL user name (overrides the one in url)"`
	Password     string   `yaml:"password" env:"REDIS_PASSWORD" secret:"true" opt:"Redis.Password" help:"password (overrides the one in url); prefer password_file"`
	PasswordFile string   `yaml:"password_file" env:"REDIS_PASSWORD_FILE" path:"true" help:"file holding the password instead (leading and trailing white space dropped)"`
	DB           int      `yaml:"db" env:"REDIS_DB" default:"0" check:"nonnegative" opt:"Redis.DB" help:"database number (standalone and Sentinel)"`
	Cluster      bool     `yaml:"cluster" env:"REDIS_CLUSTER_ENABLED" default:"false" opt:"Redis.Cluster" help:"Redis Cluster mode (url or addrs name seeds); also detected"`

	Sentinel Sentinel `yaml:"sentinel"`
	TLS      TLS      `yaml:"tls"`

	DialTimeout   time.Duration `yaml:"dial_timeout" env:"REDIS_DIAL_TIMEOUT" default:"0" check:"nonnegative" opt:"Redis.DialTimeout" help:"bound of a connection set-up; 0 means the driver's default (5s)"`
	WriteTimeout  time.Duration `yaml:"write_timeout" env:"REDIS_WRITE_TIMEOUT" default:"0" check:"nonnegative" opt:"Redis.WriteTimeout" help:"bound of a write to a connection; 0 means the driver's default (10s)"`
	FailFastStart bool          `yaml:"fail_fast_start" env:"REDIS_FAIL_FAST_START" default:"false" opt:"Redis.LazyConnect" help:"true makes the start fail when Redis does not answer; false starts anyway (/readyz answers 503) and connects when Redis appears"`
}

// Sentinel configures Redis Sentinel.
type Sentinel struct {
	Hosts        []string `yaml:"hosts" env:"REDIS_SENTINEL_HOSTS" opt:"Redis.SentinelAddrs" help:"sentinels' host:port addresses; setting them selects Sentinel (url then only gives credentials and the db)"`
	Master       string   `yaml:"master" env:"REDIS_SERVICE_NAME" opt:"Redis.SentinelMaster" help:"name of the master set; mymaster when hosts are set and it is not; ignored without hosts"`
	Username     string   `yaml:"username" env:"REDIS_SENTINEL_USERNAME" opt:"Redis.SentinelUsername" help:"user name the sentinels require, when it differs from the data nodes'"`
	Password     string   `yaml:"password" env:"REDIS_SENTINEL_PASSWORD" secret:"true" opt:"Redis.SentinelPassword" help:"password the sentinels require (their requirepass)"`
	PasswordFile string   `yaml:"password_file" env:"REDIS_SENTINEL_PASSWORD_FILE" path:"true" help:"file holding the sentinels' password instead"`
}

// TLS configures TLS to Redis and the sentinels. Any field set enables
// TLS; a rediss:// url enables it with the system's roots.
type TLS struct {
	CAFile     string `yaml:"ca_file" env:"REDIS_TLS_CA_FILE" path:"true" opt:"Redis.TLS" help:"PEM certificates of the CAs that sign the servers' certificates, instead of the system's roots"`
	CertFile   string `yaml:"cert_file" env:"REDIS_TLS_CERT_FILE" path:"true" help:"client certificate (PEM) for servers with tls-auth-clients; with key_file"`
	KeyFile    string `yaml:"key_file" env:"REDIS_TLS_KEY_FILE" path:"true" help:"private key (PEM) of cert_file"`
	ServerName string `yaml:"server_name" env:"REDIS_TLS_SERVER_NAME" help:"name the servers' certificates must carry, when they are reached by an address they do not name"`
}

// HTTP configures the listener of `tiercache serve`.
type HTTP struct {
	Addr      string `yaml:"addr" env:"TIERCACHE_ADDR" flag:"addr" default:":8080" help:"listen address: host:port, or a bare port for every interface"`
	Token     string `yaml:"token" env:"TIERCACHE_TOKEN" flag:"token" secret:"true" help:"bearer token that every request but /healthz, /readyz and the dashboard's page must present (reads too, unless open_reads); empty means no authentication"`
	TokenFile string `yaml:"token_file" env:"TIERCACHE_TOKEN_FILE" flag:"token-file" path:"true" help:"file holding the token instead (keeps it out of the process list and the environment)"`
	OpenReads bool   `yaml:"open_reads" env:"TIERCACHE_OPEN_READS" default:"false" help:"with a token, let GET and HEAD requests, and POST /v1/mget, through without it"`
	TLSCert   string `yaml:"tls_cert" env:"TIERCACHE_TLS_CERT" flag:"tls-cert" path:"true" help:"serve HTTPS with this certificate file (PEM, chain included); with tls_key"`
	TLSKey    string `yaml:"tls_key" env:"TIERCACHE_TLS_KEY" flag:"tls-key" path:"true" help:"private key file (PEM) of tls_cert"`

	RequestTimeout    time.Duration `yaml:"request_timeout" env:"TIERCACHE_REQUEST_TIMEOUT" default:"5s" check:"positive" help:"bound of the cache operation of each request, so that a Redis that does not answer gives a 503 instead of holding the request"`
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout" env:"TIERCACHE_READ_HEADER_TIMEOUT" default:"10s" check:"positive" help:"time a client has to send a request's headers"`
	ReadTimeout       time.Duration `yaml:"read_timeout" env:"TIERCACHE_HTTP_READ_TIMEOUT" default:"1m" check:"positive" help:"time a client has to send a whole request"`
	WriteTimeout      time.Duration `yaml:"write_timeout" env:"TIERCACHE_HTTP_WRITE_TIMEOUT" default:"1m" check:"positive" help:"time to write an answer"`
	IdleTimeout       time.Duration `yaml:"idle_timeout" env:"TIERCACHE_HTTP_IDLE_TIMEOUT" default:"2m" check:"positive" help:"how long an idle keep-alive connection stays open"`
	ShutdownTimeout   time.Duration `yaml:"shutdown_timeout" env:"TIERCACHE_SHUTDOWN_TIMEOUT" default:"10s" check:"positive" help:"on SIGTERM, how long requests in flight have to finish"`
	DrainTimeout      time.Duration `yaml:"drain_timeout" env:"TIERCACHE_DRAIN_TIMEOUT" default:"10s" check:"nonnegative" help:"on SIGTERM, after the requests, how long to try to apply the recovery queue before stopping (what is left stays in the journal)"`
	RetryAfter        time.Duration `yaml:"retry_after" env:"TIERCACHE_RETRY_AFTER" default:"0" check:"nonnegative" help:"Retry-After of 503 answers (rounded up to seconds); 0 means cache.breaker.open_timeout rounded up"`

	MaxBatchKeys  int   `yaml:"max_batch_keys" env:"TIERCACHE_MAX_BATCH_KEYS" default:"1000" check:"positive" help:"most keys (or items) in one POST /v1/mget, /v1/mset or /v1/mdelete; more answers 413"`
	MaxBatchBytes Bytes `yaml:"max_batch_bytes" env:"TIERCACHE_MAX_BATCH_BYTES" default:"0" check:"nonnegative" help:"largest body of a batch request, and largest total of the values an mget answers (values are base64, a third larger); more answers 413; 0 means 32MiB, or one value of cache.max_value_size in base64 plus 1MiB if larger"`
}

// Log configures the service's log, on standard error.
type Log struct {
	Level  string `yaml:"level" env:"TIERCACHE_LOG_LEVEL" flag:"log-level" default:"info" check:"enum=debug|info|warn|error" help:"least severe level logged"`
	Format string `yaml:"format" env:"TIERCACHE_LOG_FORMAT" flag:"log-format" default:"text" check:"enum=text|json" help:"text (key=value) or json (one object a line)"`
}

// Monitoring configures the Prometheus metrics.
type Monitoring struct {
	Enabled bool `yaml:"enabled" env:"CACHE_MONITORING_ENABLED" default:"true" help:"false removes the /metrics route and the Prometheus recorder"`
}

// Tracing configures the OpenTelemetry traces of serve
// (docs/observability.md). The endpoint and the service name also follow
// the standard OTEL_* variables; see tracingFallbacks.
type Tracing struct {
	Enabled     bool    `yaml:"enabled" env:"TIERCACHE_TRACING_ENABLED" default:"false" help:"true sends a span for each Redis operation attempt and each loader call"`
	Exporter    string  `yaml:"exporter" env:"TIERCACHE_TRACING_EXPORTER" default:"otlp-http" check:"enum=otlp-http|stdout" help:"otlp-http sends the spans to an OpenTelemetry collector (OTLP over HTTP, protobuf); stdout writes them to standard output, one JSON object each"`
	Endpoint    string  `yaml:"endpoint" env:"TIERCACHE_TRACING_ENDPOINT" default:"http://localhost:4318/v1/traces" help:"URL the otlp-http exporter posts to, path included; when neither this variable nor the file sets it, $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else $OTEL_EXPORTER_OTLP_ENDPOINT with /v1/traces appended, else the default"`
	Insecure    bool    `yaml:"insecure" env:"TIERCACHE_TRACING_INSECURE" default:"false" help:"allow an http:// endpoint on another host than this one (spans and headers then cross the network unencrypted); loopback endpoints never need it"`
	Headers     string  `yaml:"headers" env:"TIERCACHE_TRACING_HEADERS" secret:"true" help:"HTTP headers of each export, as name=value pairs separated by commas (the format of $OTEL_EXPORTER_OTLP_HEADERS, values URL-decoded), such as Authorization=Bearer%20xyz; unset means $OTEL_EXPORTER_OTLP_HEADERS, if any; prefer headers_file"`
	HeadersFile string  `yaml:"headers_file" env:"TIERCACHE_TRACING_HEADERS_FILE" path:"true" help:"file holding the headers instead, in the same format (leading and trailing white space dropped)"`
	SampleRatio float64 `yaml:"sample_ratio" env:"TIERCACHE_TRACING_SAMPLE_RATIO" default:"1" check:"ratio" help:"in [0, 1]: fraction of traces recorded, by trace id; a span whose parent was sampled (or not) follows its parent"`
	ServiceName string  `yaml:"service_name" env:"TIERCACHE_TRACING_SERVICE_NAME" default:"tiercache" help:"service.name of the spans; when neither this variable nor the file sets it, $OTEL_SERVICE_NAME, else the default"`
}

// Warming configures cache warming (docs/warming.md).
type Warming struct {
	Enabled bool          `yaml:"enabled" env:"CACHE_WARMING_ENABLED" default:"true" help:"false loads and checks the strategies but runs none"`
	LockTTL time.Duration `yaml:"lock_ttl" env:"CACHE_WARMING_LOCK_TTL" default:"0" check:"nonnegative" help:"how long a scheduled run's fleet lock lasts; 0 means the scheduler's default"`
	// Strategies is the strategies list as written in the file; package
	// internal/warmconfig reads it (docs/warming.md). Relative file paths
	// in it are relative to the directory of Config.Path.
	Strategies yaml.Node `yaml:"strategies" env:"-" help:"the warming strategies (docs/warming.md); file paths are relative to this file's directory"`
}
