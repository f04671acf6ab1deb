package config

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"strings"
)

// tracingFallbacks are the standard OpenTelemetry variables that set a
// tracing setting when neither its own variable, a flag nor the file
// does, first found first. OTEL_EXPORTER_OTLP_ENDPOINT is a base URL:
// /v1/traces is appended to its path, as the OTLP exporters do.
var tracingFallbacks = []struct {
	key, env string
	suffix   string
}{
	{"tracing.endpoint", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""},
	{"tracing.endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT", "/v1/traces"},
	{"tracing.service_name", "OTEL_SERVICE_NAME", ""},
}

// otelEnvironment applies tracingFallbacks: a standard variable beats the
// file and the default, not tiercache's own variable.
func (l *loader) otelEnvironment() {
	for _, fb := range tracingFallbacks {
		if l.cfg.origins[fb.key].Kind >= FromEnvironment {
			continue
		}
		v, ok := l.src.LookupEnv(fb.env)
		if v = strings.TrimSpace(v); !ok || v == "" {
			continue
		}
		if fb.suffix != "" {
			if u, err := url.Parse(v); err == nil {
				u.Path = path.Join("/", u.Path, fb.suffix)
				v = u.String()
			}
		}
		f, _ := lookupField(fb.key)
		f.value(l.cfg).SetString(v)
		l.cfg.origins[fb.key] = Origin{Kind: FromEnvironment, Where: fb.env}
	}
}

// validateTracing checks the tracing section when tracing is on, so that
// stray OTEL_* variables cannot stop a service that does not trace.
func (l *loader) validateTracing() {
	t := l.cfg.Tracing
	if !t.Enabled {
		return
	}
	if t.Exporter == "otlp-http" {
		const key = "tracing.endpoint"
		o := l.cfg.Origin(key)
		u, err := url.Parse(t.Endpoint)
		switch {
		case err != nil || u.Host == "":
			l.errorf(o, key, "%q is not a URL such as http://localhost:4318/v1/traces", redactURL(t.Endpoint))
		case u.Scheme != "http" && u.Scheme != "https":
			l.errorf(o, key, "scheme %q is not one of http, https", u.Scheme)
		case u.User != nil:
			l.errorf(o, key, "%q holds credentials: set them in tracing.headers instead", redactURL(t.Endpoint))
		case u.Scheme == "http" && !t.Insecure && !isLoopback(u.Hostname()):
			l.errorf(o, key, "%q sends spans unencrypted to another host: use https://, or set tracing.insecure to true", t.Endpoint)
		}
	}
	if t.Headers != "" {
		if _, err := ParseHeaders(t.Headers); err != nil {
			l.errorf(l.cfg.Origin("tracing.headers"), "tracing.headers", "%v", err)
		}
	}
	if strings.TrimSpace(t.ServiceName) == "" {
		l.errorf(l.cfg.Origin("tracing.service_name"), "tracing.service_name", "is empty")
	}
}

// isLoopback reports whether host names this machine.
func isLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ParseHeaders reads HTTP headers written as name=value pairs separated
// by commas, names and values URL-decoded and trimmed: the format of
// OTEL_EXPORTER_OTLP_HEADERS ("Authorization=Bearer%20xyz,X-Scope=a").
// Errors say which pair is wrong by its position, never its value.
func ParseHeaders(s string) (map[string]string, error) {
	h := map[string]string{}
	for i, pair := range strings.Split(s, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		name, value, ok := strings.Cut(pair, "=")
		n, errN := url.PathUnescape(strings.TrimSpace(name))
		v, errV := url.PathUnescape(strings.TrimSpace(value))
		switch {
		case !ok || errN != nil || n == "":
			return nil, fmt.Errorf("pair %d is not name=value", i+1)
		case errV != nil:
			return nil, fmt.Errorf("the value of %s is not URL-encoded correctly", n)
		case strings.ContainsAny(n, " \t\r\n:") || strings.ContainsAny(v, "\r\n"):
			return nil, fmt.Errorf("pair %d is not a valid HTTP header", i+1)
		}
		h[n] = v
	}
	if len(h) == 0 {
		return nil, fmt.Errorf("has no name=value pair")
	}
	return h, nil
}
