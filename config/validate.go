package config

import (
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
)

// Codecs are the codec names the configuration accepts: the built-in ones.
var Codecs = []string{"msgpack", "json", "raw"}

var namespacePattern = regexp.MustCompile(`^[^\s{}#]+$`)

// validate checks every value against its field's check tag, then the
// rules that tie settings together.
func (l *loader) validate() {
	for _, f := range Fields() {
		if f.check == "" || !l.cfg.Given(f.Key) {
			continue
		}
		v := f.value(l.cfg)
		o := l.cfg.origins[f.Key]
		if msg := checkValue(f, v); msg != "" {
			l.errorf(o, f.Key, "%s", msg)
		}
	}
	c := l.cfg
	if ns := c.Cache.Namespace; ns != "" && !namespacePattern.MatchString(ns) {
		l.errorf(c.Origin("cache.namespace"), "cache.namespace", "%q may not contain white space, braces or #", ns)
	}
	for _, r := range c.Cache.CodecRules {
		if !slices.Contains(Codecs, r.Codec) {
			l.errorf(c.Origin("cache.codec_rules"), "cache.codec_rules", "codec %q of pattern %q is not one of %s", r.Codec, r.Pattern, strings.Join(Codecs, ", "))
		}
	}
	if s, h := c.Cache.LoaderSoftTimeout, c.Cache.LoaderHardTimeout; h > 0 && s > h {
		l.errorf(c.Origin("cache.loader_soft_timeout"), "cache.loader_soft_timeout", "%v exceeds cache.loader_hard_timeout %v", s, h)
	}
	if c.Cache.Canary.Interval > 0 && !c.Cache.Fleet.Enabled && c.Given("cache.fleet.enabled") {
		l.errorf(c.Origin("cache.canary.interval"), "cache.canary.interval", "the canary needs cache.fleet.enabled: it learns from the fleet registry which instances write markers")
	}
	if id := c.Cache.Fleet.InstanceID; id != "" && (len(id) > 128 || strings.IndexFunc(id, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0) {
		l.errorf(c.Origin("cache.fleet.instance_id"), "cache.fleet.instance_id", "%q must be at most 128 bytes, without white space or control characters", id)
	}
	l.validateTracing()
	l.pair("redis.tls.cert_file", c.Redis.TLS.CertFile, "redis.tls.key_file", c.Redis.TLS.KeyFile)
	l.pair("http.tls_cert", c.HTTP.TLSCert, "http.tls_key", c.HTTP.TLSKey)
	if u := c.Redis.URL; u != "" {
		p, err := url.Parse(u)
		switch {
		case err != nil:
			l.errorf(c.Origin("redis.url"), "redis.url", "%q is a malformed Redis URL", redactURL(u))
		case p.Scheme != "redis" && p.Scheme != "rediss" && p.Scheme != "unix":
			l.errorf(c.Origin("redis.url"), "redis.url", "scheme %q is not one of redis, rediss, unix", p.Scheme)
		case p.Scheme != "unix" && p.Host == "":
			l.errorf(c.Origin("redis.url"), "redis.url", "%q has no host", redactURL(u))
		}
	}
}

// pair reports one of two settings that go together set without the
// other.
func (l *loader) pair(a, av, b, bv string) {
	switch {
	case av != "" && bv == "":
		l.errorf(l.cfg.Origin(a), a, "needs %s too", b)
	case bv != "" && av == "":
		l.errorf(l.cfg.Origin(b), b, "needs %s too", a)
	}
}

// checkValue returns what is wrong with v, or "".
func checkValue(f Field, v reflect.Value) string {
	for c := range strings.SplitSeq(f.check, ",") {
		name, arg, _ := strings.Cut(c, "=")
		switch name {
		case "enum":
			allowed := strings.Split(arg, "|")
			if s := strings.ToLower(v.String()); !slices.Contains(allowed, s) {
				return quote(v) + " is not one of " + strings.Join(allowed, ", ")
			}
			v.SetString(strings.ToLower(v.String()))
		case "positive":
			if number(v) <= 0 {
				return show(v) + " is not positive (want more than 0)"
			}
		case "nonnegative":
			if number(v) < 0 {
				return show(v) + " is negative (want 0 or more)"
			}
		case "off":
			// Durations: any negative value turns the feature off; numbers:
			// -1 does.
			if v.Type() != durationType && number(v) < -1 {
				return show(v) + " is out of range (want -1 to turn it off, or 0 or more)"
			}
		case "ratio":
			if x := v.Float(); x < 0 || x > 1 {
				return show(v) + " is outside [0, 1]"
			}
		case "fraction":
			if x := v.Float(); x < 0 || x >= 1 {
				return show(v) + " is outside [0, 1)"
			}
		}
	}
	return ""
}

func number(v reflect.Value) float64 {
	switch v.Kind() {
	case reflect.Int, reflect.Int64:
		return float64(v.Int())
	case reflect.Float64:
		return v.Float()
	}
	return 0
}

func quote(v reflect.Value) string { return `"` + v.String() + `"` }

// show formats a value for messages and config print.
func show(v reflect.Value) string {
	switch v.Type() {
	case durationType:
		return formatDuration(time.Duration(v.Int()))
	case bytesType:
		return Bytes(v.Int()).String()
	}
	switch v.Kind() {
	case reflect.Slice:
		if v.IsNil() {
			return "[]"
		}
	}
	return formatAny(v.Interface())
}

// redactURL hides the password and the query values of a URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.LastIndex(raw, "@"); i >= 0 {
			return "xxxxx" + raw[i:]
		}
		return raw
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			if strings.Contains(strings.ToLower(k), "pass") || strings.Contains(strings.ToLower(k), "token") {
				q.Set(k, "xxxxx")
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
