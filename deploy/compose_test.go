package deploy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/lab"
)

// requireTool returns the path of a tool the test needs, failing the test
// under CI=true and skipping it elsewhere when it is missing.
func requireTool(t *testing.T, name, hint string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		msg := name + " not found; " + hint
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// compose runs docker-compose on docker-compose.redis.yml with the
// monitoring profile on, and env added to an environment without
// CACHE_NAMESPACE, and returns its output. An empty .env file stands for
// deploy/.env, which make-secrets.sh may have written on this machine.
func compose(t *testing.T, env []string, args ...string) string {
	t.Helper()
	bin := requireTool(t, "docker-compose", "install the Debian package docker-compose (make test does)")
	envFile := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(envFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bin, append([]string{"-f", "docker-compose.redis.yml", "--env-file", envFile, "--profile", "monitoring"}, args...)...)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "CACHE_NAMESPACE=") })
	cmd.Env = append(cmd.Env, "COMPOSE_PROJECT_NAME=tiercache-test")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestComposeFile validates docker-compose.redis.yml with docker-compose,
// which scripts/install-redis.sh installs, and checks what the
// deployment must contain in the configuration docker-compose resolves.
// Without a Docker engine nothing more can be checked here; the
// processes the file describes are started by TestDeployFilesTopology.
func TestComposeFile(t *testing.T) {
	t.Parallel()
	if out := compose(t, nil, "config", "-q"); out != "" {
		t.Errorf("docker-compose config -q printed:\n%s", out)
	}
	services := strings.Fields(compose(t, nil, "config", "--services"))
	slices.Sort(services)
	want := []string{"grafana", "prometheus", "redis-commander", "redis-exporter", "redis-master", "redis-replica-1", "redis-replica-2",
		"redis-sentinel-1", "redis-sentinel-2", "redis-sentinel-3", "tiercache"}
	if !slices.Equal(services, want) {
		t.Errorf("services = %v, want %v", services, want)
	}
	var cfg composeConfig
	if err := yaml.Unmarshal([]byte(compose(t, nil, "config")), &cfg); err != nil {
		t.Fatalf("parse docker-compose config: %v", err)
	}
	checkCompose(t, cfg)
	checkComposeService(t, cfg)
	checkMonitoring(t, cfg)

	// The namespace follows CACHE_NAMESPACE, from the environment or from
	// the .env file beside the compose file, where make-secrets.sh writes
	// it with the ACL that allows it.
	var moved composeConfig
	if err := yaml.Unmarshal([]byte(compose(t, []string{"CACHE_NAMESPACE=pynomaly_prod"}, "config")), &moved); err != nil {
		t.Fatal(err)
	}
	if got := moved.Services["tiercache"].Environment["CACHE_NAMESPACE"]; got != "pynomaly_prod" {
		t.Errorf("with CACHE_NAMESPACE=pynomaly_prod, the service's CACHE_NAMESPACE = %q", got)
	}
	if got := namespaceFromEnvFile(t); got != "orders" {
		t.Errorf("make-secrets.sh --namespace orders, then docker-compose -f <dir>/docker-compose.redis.yml: CACHE_NAMESPACE = %q", got)
	}
}

// namespaceFromEnvFile copies the compose file to a directory, runs
// make-secrets.sh --namespace orders with the default .env file of a
// script in that directory, and returns the CACHE_NAMESPACE that
// docker-compose then gives the service, run from elsewhere as the
// documentation shows.
func namespaceFromEnvFile(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"docker-compose.redis.yml", "make-secrets.sh", "acl.conf"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gen := exec.CommandContext(t.Context(), "sh", filepath.Join(dir, "make-secrets.sh"), "--namespace", "orders")
	gen.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "CACHE_NAMESPACE=") })
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("make-secrets.sh: %v\n%s", err, out)
	}
	bin := requireTool(t, "docker-compose", "install the Debian package docker-compose")
	cmd := exec.CommandContext(t.Context(), bin, "-f", filepath.Join(dir, "docker-compose.redis.yml"), "config")
	cmd.Dir = t.TempDir()
	cmd.Env = append(gen.Env, "COMPOSE_PROJECT_NAME=tiercache-test")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker-compose config: %v", err)
	}
	var cfg composeConfig
	if err := yaml.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg.Services["tiercache"].Environment["CACHE_NAMESPACE"]
}

// composeConfig is the part of a resolved compose file the test checks.
type composeConfig struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Ports       []any             `yaml:"ports"`
		Volumes     []string          `yaml:"volumes"`
		Profiles    []string          `yaml:"profiles"`
		Secrets     []secretRef       `yaml:"secrets"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
	Secrets map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
	Volumes map[string]any `yaml:"volumes"`
}

// secretRef is a service's use of a secret.
type secretRef struct {
	Source string `yaml:"source"`
}

func hasKey[V any](m map[string]V, k string) bool {
	_, ok := m[k]
	return ok
}

// ports returns the published ports of a resolved service as
// "[ip:]published:target", whether docker-compose wrote them in the short
// syntax ("127.0.0.1:9121:9121/tcp") or the long one (a map).
func ports(list []any) []string {
	var out []string
	for _, p := range list {
		switch p := p.(type) {
		case string:
			out = append(out, strings.TrimSuffix(p, "/tcp"))
		case map[string]any:
			s := fmt.Sprintf("%v:%v", p["published"], p["target"])
			if ip, ok := p["host_ip"]; ok {
				s = fmt.Sprintf("%v:%s", ip, s)
			}
			out = append(out, s)
		}
	}
	return out
}

// mounts reports whether the service mounts the file (relative to deploy/)
// read-only at target ("" for any target).
func mounts(t *testing.T, cfg composeConfig, service, file, target string) bool {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	prefix := filepath.Join(wd, file) + ":" + target
	return slices.ContainsFunc(cfg.Services[service].Volumes, func(v string) bool {
		return strings.HasPrefix(v, prefix) && strings.HasSuffix(v, ":ro")
	})
}

// checkCompose checks the resolved compose file: the data nodes and
// sentinels run from the deploy files (the data nodes with active
// defragmentation included), the replicas follow the master, the exporter
// and the web UI are there, the secrets are files under deploy/secrets/
// that make-secrets.sh creates, and no service holds a secret in its
// environment.
func checkCompose(t *testing.T, cfg composeConfig) {
	t.Helper()
	for _, name := range []string{"redis-master", "redis-replica-1", "redis-replica-2"} {
		svc := cfg.Services[name]
		for _, f := range []string{"redis-production.conf", "redis-defrag.conf"} {
			if !mounts(t, cfg, name, f, "") {
				t.Errorf("%s does not mount %s read-only: %v", name, f, svc.Volumes)
			}
		}
		cmd := strings.Join(svc.Command, " ")
		if !strings.HasPrefix(svc.Image, "redis:7") || !strings.Contains(cmd, "redis-server /usr/local/etc/redis/redis.conf") ||
			!strings.Contains(cmd, "--include /usr/local/etc/redis/redis-defrag.conf") {
			t.Errorf("%s: image %q, command %q: want redis-server 7 from redis-production.conf and redis-defrag.conf", name, svc.Image, svc.Command)
		}
		wantReplicaOf := "--replicaof redis-master 6379"
		if name == "redis-master" {
			wantReplicaOf = ""
		}
		if got := svc.Environment["REPLICAOF"]; got != wantReplicaOf {
			t.Errorf("%s: REPLICAOF = %q, want %q", name, got, wantReplicaOf)
		}
	}
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("redis-sentinel-%d", i)
		if !mounts(t, cfg, name, "sentinel.conf", "") {
			t.Errorf("%s does not mount sentinel.conf read-only", name)
		}
		if !strings.Contains(strings.Join(cfg.Services[name].Command, " "), "exec redis-sentinel") {
			t.Errorf("%s does not run redis-sentinel: %q", name, cfg.Services[name].Command)
		}
	}
	if svc := cfg.Services["redis-exporter"]; !strings.Contains(svc.Image, "redis_exporter") || !slices.Contains(ports(svc.Ports), "127.0.0.1:9121:9121") {
		t.Errorf("redis-exporter: image %q, ports %v", svc.Image, svc.Ports)
	}
	if svc := cfg.Services["redis-commander"]; !strings.Contains(svc.Image, "redis-commander") || len(svc.Ports) == 0 {
		t.Errorf("redis-commander (web UI): image %q, ports %v", svc.Image, svc.Ports)
	}
	for name, svc := range cfg.Services {
		for k, v := range svc.Environment {
			if strings.HasSuffix(k, "_FILE") {
				if !strings.HasPrefix(v, "/run/secrets/") {
					t.Errorf("%s: %s = %q, want a Docker secret", name, k, v)
				}
				continue
			}
			if strings.Contains(k, "PASSWORD") || strings.Contains(k, "TOKEN") {
				t.Errorf("%s: %s holds a secret in the compose file; use %s_FILE", name, k, k)
			}
		}
		for _, sec := range svc.Secrets {
			if _, ok := cfg.Secrets[sec.Source]; !ok {
				t.Errorf("%s uses the undeclared secret %s", name, sec.Source)
			}
		}
	}
	wd, _ := os.Getwd()
	for name, sec := range cfg.Secrets {
		if filepath.Dir(sec.File) != filepath.Join(wd, "secrets") {
			t.Errorf("secret %s is %s, want a file under deploy/secrets/ (which .gitignore keeps out of the repository)", name, sec.File)
		}
		if !slices.Contains(secretFiles, filepath.Base(sec.File)) {
			t.Errorf("secret %s is %s, which make-secrets.sh does not create", name, filepath.Base(sec.File))
		}
	}
}

// checkComposeService checks the tiercache service: its API, dashboard
// and /metrics on 8080 with a health check on /readyz, its configuration
// file, its state directory on a volume, its secrets, its namespace, and
// a circuit breaker that reopens as fast as the library's default.
func checkComposeService(t *testing.T, cfg composeConfig) {
	t.Helper()
	tc := cfg.Services["tiercache"]
	if !slices.Contains(ports(tc.Ports), "8080:8080") || tc.Environment["TIERCACHE_ADDR"] != ":8080" {
		t.Errorf("tiercache does not publish its API, dashboard and /metrics on 8080: ports %v, TIERCACHE_ADDR %q", tc.Ports, tc.Environment["TIERCACHE_ADDR"])
	}
	if !strings.Contains(strings.Join(tc.Healthcheck.Test, " "), "http://127.0.0.1:8080/readyz") {
		t.Errorf("tiercache's health check does not ask /readyz: %q", tc.Healthcheck.Test)
	}
	for k, v := range map[string]string{
		"TIERCACHE_CONFIG":     "/etc/tiercache/tiercache.yaml",
		"STATE_DIRECTORY":      "/var/lib/tiercache",
		"REDIS_SENTINEL_HOSTS": "redis-sentinel-1:26379,redis-sentinel-2:26379,redis-sentinel-3:26379",
		"REDIS_SERVICE_NAME":   lab.MasterName,
		"REDIS_USERNAME":       lab.UserTiercache,
		"CACHE_NAMESPACE":      "tiercache", // without deploy/.env: acl.conf's namespace
	} {
		if tc.Environment[k] != v {
			t.Errorf("tiercache: %s = %q, want %q", k, tc.Environment[k], v)
		}
	}
	if !mounts(t, cfg, "tiercache", "tiercache.yaml", "/etc/tiercache/tiercache.yaml:") {
		t.Errorf("tiercache does not mount deploy/tiercache.yaml at $TIERCACHE_CONFIG: %v", tc.Volumes)
	}
	// The warming strategies read files relative to tiercache.yaml.
	if !mounts(t, cfg, "tiercache", "warming", "/etc/tiercache/warming:") {
		t.Errorf("tiercache does not mount deploy/warming beside tiercache.yaml: %v", tc.Volumes)
	}
	for _, f := range warmingFiles(t) {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("tiercache.yaml's warming source %s: %v", f, err)
		}
		if !strings.HasPrefix(f, "warming"+string(filepath.Separator)) {
			t.Errorf("tiercache.yaml's warming source %s is outside deploy/warming, which is all the compose file mounts", f)
		}
	}
	state := slices.IndexFunc(tc.Volumes, func(v string) bool { return strings.Contains(v, ":/var/lib/tiercache") })
	if state < 0 || strings.HasSuffix(tc.Volumes[state], ":ro") {
		t.Errorf("tiercache has no writable volume at its STATE_DIRECTORY: %v", tc.Volumes)
	} else if vol := strings.Split(tc.Volumes[state], ":")[0]; !hasKey(cfg.Volumes, vol) {
		t.Errorf("tiercache's state directory is on %q, not a named volume", vol)
	}
	// A breaker that stays open for a minute turns a 1 s blip into a
	// minute of 503s: the file keeps the library's default, or less.
	if v, ok := tc.Environment["CIRCUIT_BREAKER_TIMEOUT"]; ok {
		d, err := time.ParseDuration(v)
		if s, serr := strconv.Atoi(v); serr == nil {
			d, err = time.Duration(s)*time.Second, nil
		}
		if err != nil || d > tiercache.DefaultBreakerOpenTimeout {
			t.Errorf("CIRCUIT_BREAKER_TIMEOUT = %q: longer than the library's default %v", v, tiercache.DefaultBreakerOpenTimeout)
		}
	}
	for _, want := range []string{"redis_sentinels_password", "redis_tiercache_password", "tiercache_token"} {
		if !slices.Contains(tc.Secrets, secretRef{want}) {
			t.Errorf("tiercache lacks the secret %s", want)
		}
	}
}

// warmingFiles returns the file sources of tiercache.yaml's warming
// strategies, relative to deploy/.
func warmingFiles(t *testing.T) []string {
	t.Helper()
	var cfg struct {
		Warming struct {
			Strategies []struct {
				File struct {
					Path string `yaml:"path"`
				} `yaml:"file"`
			} `yaml:"strategies"`
		} `yaml:"warming"`
	}
	readYAML(t, "tiercache.yaml", &cfg)
	var out []string
	for _, s := range cfg.Warming.Strategies {
		if s.File.Path != "" {
			out = append(out, filepath.Clean(s.File.Path))
		}
	}
	if len(out) == 0 {
		t.Error("tiercache.yaml has no warming strategy that reads a file")
	}
	return out
}
