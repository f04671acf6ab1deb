package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// checkMonitoring checks the "monitoring" profile of the resolved compose
// file: Prometheus runs prometheus/prometheus.yml with the shipped
// alerting rules and the service's token, Grafana runs the provisioning
// files with the shipped dashboard and its admin password from a secret,
// and neither starts without the profile.
func checkMonitoring(t *testing.T, cfg composeConfig) {
	t.Helper()
	for _, name := range []string{"prometheus", "grafana"} {
		if svc := cfg.Services[name]; !slices.Equal(svc.Profiles, []string{"monitoring"}) {
			t.Errorf("%s: profiles %v, want [monitoring]", name, svc.Profiles)
		}
	}
	for name, svc := range cfg.Services {
		if name != "prometheus" && name != "grafana" && len(svc.Profiles) > 0 {
			t.Errorf("%s needs the profiles %v: it must start without one", name, svc.Profiles)
		}
	}
	prom := cfg.Services["prometheus"]
	if !strings.HasPrefix(prom.Image, "prom/prometheus:") || !slices.Contains(prom.Command, "--config.file=/etc/prometheus/prometheus.yml") {
		t.Errorf("prometheus: image %q, command %q", prom.Image, prom.Command)
	}
	for file, target := range map[string]string{
		"prometheus/prometheus.yml": "/etc/prometheus/prometheus.yml:",
		"prometheus/alerts.yml":     "/etc/prometheus/alerts.yml:",
	} {
		if !mounts(t, cfg, "prometheus", file, target) {
			t.Errorf("prometheus does not mount %s read-only at %s: %v", file, target, prom.Volumes)
		}
	}
	if !slices.Contains(prom.Secrets, secretRef{"tiercache_token"}) {
		t.Error("prometheus lacks the secret tiercache_token: /metrics needs the token")
	}

	graf := cfg.Services["grafana"]
	if !strings.HasPrefix(graf.Image, "grafana/grafana:") || graf.Environment["GF_SECURITY_ADMIN_PASSWORD__FILE"] != "/run/secrets/grafana_admin_password" ||
		!slices.Contains(graf.Secrets, secretRef{"grafana_admin_password"}) {
		t.Errorf("grafana: image %q, environment %v, secrets %v", graf.Image, graf.Environment, graf.Secrets)
	}
	if !mounts(t, cfg, "grafana", "grafana/provisioning", "/etc/grafana/provisioning:") {
		t.Errorf("grafana does not mount grafana/provisioning: %v", graf.Volumes)
	}
	if !mounts(t, cfg, "grafana", "grafana/tiercache.json", "/etc/grafana/dashboards/tiercache.json:") {
		t.Errorf("grafana does not mount the dashboard where the provisioning reads it: %v", graf.Volumes)
	}
}

// TestPrometheusConfig checks prometheus/prometheus.yml with promtool
// (with the token's path moved to a temporary file, since promtool
// checks that it exists): it loads the shipped rules and scrapes the
// service with its token and redis_exporter.
func TestPrometheusConfig(t *testing.T) {
	t.Parallel()
	promtool := requireTool(t, "promtool", "install the Debian package prometheus (make test does)")
	b, err := os.ReadFile("prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			Authorization struct {
				Type            string `yaml:"type"`
				CredentialsFile string `yaml:"credentials_file"`
			} `yaml:"authorization"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.RuleFiles, []string{"alerts.yml"}) {
		t.Errorf("rule_files = %v, want [alerts.yml] (mounted beside prometheus.yml)", cfg.RuleFiles)
	}
	targets := map[string][]string{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			targets[sc.JobName] = append(targets[sc.JobName], st.Targets...)
		}
		if sc.JobName == "tiercache" && (sc.Authorization.Type != "Bearer" || sc.Authorization.CredentialsFile != "/run/secrets/tiercache_token") {
			t.Errorf("job tiercache: authorization %+v, want the Bearer token of /run/secrets/tiercache_token", sc.Authorization)
		}
	}
	if !slices.Equal(targets["tiercache"], []string{"tiercache:8080"}) || !slices.Equal(targets["redis"], []string{"redis-exporter:9121"}) {
		t.Errorf("scrape targets = %v", targets)
	}

	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	conf := strings.ReplaceAll(string(b), "/run/secrets/tiercache_token", token)
	alerts, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"prometheus.yml": conf, "alerts.yml": string(alerts), "token": "x"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.CommandContext(t.Context(), promtool, "check", "config", filepath.Join(dir, "prometheus.yml")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "rules found") {
		t.Errorf("promtool check config: %v\n%s", err, out)
	}
}

// TestGrafanaProvisioning checks the provisioning files: the data source
// is the compose file's Prometheus, and the dashboard provider reads the
// directory where the compose file mounts grafana/tiercache.json, whose
// panels pick that data source through their variable.
func TestGrafanaProvisioning(t *testing.T) {
	t.Parallel()
	var ds struct {
		Datasources []struct {
			Type, URL string
			IsDefault bool `yaml:"isDefault"`
		} `yaml:"datasources"`
	}
	readYAML(t, "grafana/provisioning/datasources/prometheus.yml", &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != "http://prometheus:9090" || !ds.Datasources[0].IsDefault {
		t.Errorf("datasources = %+v, want the default Prometheus at http://prometheus:9090", ds.Datasources)
	}
	var dash struct {
		Providers []struct {
			Type    string
			Options struct{ Path string }
		} `yaml:"providers"`
	}
	readYAML(t, "grafana/provisioning/dashboards/tiercache.yml", &dash)
	if len(dash.Providers) != 1 || dash.Providers[0].Type != "file" || dash.Providers[0].Options.Path != "/etc/grafana/dashboards" {
		t.Errorf("dashboard providers = %+v, want files from /etc/grafana/dashboards", dash.Providers)
	}
	b, err := os.ReadFile("grafana/tiercache.json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"query": "prometheus"`) || !strings.Contains(string(b), `"uid": "${datasource}"`) {
		t.Error("grafana/tiercache.json does not pick its Prometheus data source through a datasource variable")
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
