package config

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestLoad_Tracing reads the tracing section from the file, tiercache's
// variables and the standard OTEL_* ones, and checks which wins.
func TestLoad_Tracing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := write(t, dir, "tiercache.yaml", `tracing:
  enabled: true
  exporter: STDOUT
  endpoint: https://file.example:4318/v1/traces
  sample_ratio: 0.25
  service_name: fromfile
  headers_file: headers
`)
	write(t, dir, "headers", "Authorization=Bearer%20s3cret, X-Scope = a\n")
	for _, tc := range []struct {
		name                  string
		env                   map[string]string
		endpoint, origin, svc string
	}{
		{"file", nil, "https://file.example:4318/v1/traces", path + ":4", "fromfile"},
		{"base endpoint gets the traces path",
			map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://base.example:4318/otlp", "OTEL_SERVICE_NAME": "fromotel"},
			"https://base.example:4318/otlp/v1/traces", "env OTEL_EXPORTER_OTLP_ENDPOINT", "fromotel"},
		{"traces endpoint as is, over the base one",
			map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://base.example", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces.example/x"},
			"https://traces.example/x", "env OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "fromfile"},
		{"tiercache's variables over OTEL_*",
			map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces.example/x", "TIERCACHE_TRACING_ENDPOINT": "https://own.example/v1/traces",
				"OTEL_SERVICE_NAME": "fromotel", "TIERCACHE_TRACING_SERVICE_NAME": "own"},
			"https://own.example/v1/traces", "env TIERCACHE_TRACING_ENDPOINT", "own"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load(Sources{File: path, LookupEnv: envOf(tc.env)})
			if err != nil {
				t.Fatal(err)
			}
			tr := c.Tracing
			if !tr.Enabled || tr.Exporter != "stdout" || tr.SampleRatio != 0.25 || tr.Endpoint != tc.endpoint || tr.ServiceName != tc.svc {
				t.Errorf("tracing = %+v, want endpoint %q and service name %q", tr, tc.endpoint, tc.svc)
			}
			if got := c.Origin("tracing.endpoint").String(); got != tc.origin {
				t.Errorf("endpoint from %q, want %q", got, tc.origin)
			}
			h, err := ParseHeaders(tr.Headers)
			if err != nil || h["Authorization"] != "Bearer s3cret" || h["X-Scope"] != "a" || len(h) != 2 {
				t.Errorf("headers %v (%v)", h, err)
			}
			var out bytes.Buffer
			if err := c.Print(&out); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out.String(), "s3cret") || !strings.Contains(out.String(), "headers: "+Redacted) {
				t.Errorf("config print shows the headers or does not say they are redacted:\n%s", out.String())
			}
		})
	}
}

// TestLoad_TracingDefaults checks the defaults: off, OTLP/HTTP to the
// local collector, everything sampled.
func TestLoad_TracingDefaults(t *testing.T) {
	t.Parallel()
	c, err := Load(Sources{LookupEnv: envOf(nil)})
	if err != nil {
		t.Fatal(err)
	}
	want := Tracing{Exporter: "otlp-http", Endpoint: "http://localhost:4318/v1/traces", SampleRatio: 1, ServiceName: "tiercache"}
	if c.Tracing != want {
		t.Errorf("defaults %+v, want %+v", c.Tracing, want)
	}
}

// TestLoad_TracingErrors checks that wrong tracing settings are refused
// with where they came from, and that no header value shows.
func TestLoad_TracingErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		file string
		env  map[string]string
		want string
	}{
		{"ratio above 1", "tracing:\n  sample_ratio: 1.5\n", nil, "c.yaml:2: tracing.sample_ratio: 1.5 is outside [0, 1]"},
		{"negative ratio", "", map[string]string{"TIERCACHE_TRACING_SAMPLE_RATIO": "-0.1"}, "TIERCACHE_TRACING_SAMPLE_RATIO: tracing.sample_ratio: -0.1 is outside [0, 1]"},
		{"exporter", "tracing:\n  exporter: jaeger\n", nil, `c.yaml:2: tracing.exporter: "jaeger" is not one of otlp-http, stdout`},
		{"endpoint scheme", "tracing:\n  enabled: true\n  endpoint: grpc://collector:4317\n", nil, `c.yaml:3: tracing.endpoint: scheme "grpc" is not one of http, https`},
		{"endpoint not a URL", "tracing:\n  enabled: true\n  endpoint: collector:4318\n", nil, "c.yaml:3: tracing.endpoint: "},
		{"plain HTTP to another host", "tracing:\n  enabled: true\n", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
			`OTEL_EXPORTER_OTLP_ENDPOINT: tracing.endpoint: "http://collector:4318/v1/traces" sends spans unencrypted to another host: use https://, or set tracing.insecure to true`},
		{"headers", "tracing:\n  enabled: true\n  headers: Authorization\n", nil, "c.yaml:3: tracing.headers: pair 1 is not name=value"},
		{"headers in two places", "tracing:\n  headers: a=s3cret\n  headers_file: h\n", nil, "tracing.headers is set too"},
		{"empty service name", "tracing:\n  enabled: true\n  service_name: \"\"\n", nil, "c.yaml:3: tracing.service_name: is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := write(t, t.TempDir(), "c.yaml", tc.file)
			_, err := Load(Sources{File: path, LookupEnv: envOf(tc.env)})
			var e *Error
			if !errors.As(err, &e) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want a *config.Error with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error shows a header value: %v", err)
			}
		})
	}
}

// TestLoad_TracingOffIgnoresOTEL checks that OTEL_* variables meant for
// another program cannot stop a service that does not trace.
func TestLoad_TracingOffIgnoresOTEL(t *testing.T) {
	t.Parallel()
	c, err := Load(Sources{LookupEnv: envOf(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})})
	if err != nil {
		t.Fatal(err)
	}
	if c.Tracing.Enabled || c.Tracing.Endpoint != "http://collector:4318/v1/traces" {
		t.Errorf("tracing %+v", c.Tracing)
	}
}

// TestLoad_TracingInsecure checks that tracing.insecure allows plain
// HTTP to another host, and that loopback never needs it.
func TestLoad_TracingInsecure(t *testing.T) {
	t.Parallel()
	for _, env := range []map[string]string{
		{"TIERCACHE_TRACING_ENABLED": "true", "TIERCACHE_TRACING_ENDPOINT": "http://collector:4318/v1/traces", "TIERCACHE_TRACING_INSECURE": "true"},
		{"TIERCACHE_TRACING_ENABLED": "true", "TIERCACHE_TRACING_ENDPOINT": "http://127.0.0.1:4318/v1/traces"},
		{"TIERCACHE_TRACING_ENABLED": "true", "TIERCACHE_TRACING_ENDPOINT": "http://[::1]:4318/v1/traces"},
	} {
		if _, err := Load(Sources{LookupEnv: envOf(env)}); err != nil {
			t.Errorf("%v: %v", env, err)
		}
	}
}

func TestParseHeaders(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"a=1":                      "map[a:1]",
		" a = 1 , b=x%2Cy ,":       "map[a:1 b:x,y]",
		"Authorization=Bearer xyz": "map[Authorization:Bearer xyz]",
	} {
		h, err := ParseHeaders(in)
		if err != nil || fmt.Sprint(h) != want {
			t.Errorf("ParseHeaders(%q) = %v, %v; want %s", in, h, err, want)
		}
	}
	for _, in := range []string{"", ",", "=v", "a", "a b=1", "a=%zz", "a:b=1"} {
		if h, err := ParseHeaders(in); err == nil {
			t.Errorf("ParseHeaders(%q) = %v, want an error", in, h)
		}
	}
}
