// Package warmconfig reads the warming section of tiercache's configuration
// file (`tiercache serve --config FILE`, `tiercache warm --config FILE`):
// a list of strategies whose items come from built-in generators, a JSON
// Lines file or an HTTP URL. docs/warming.md describes the format.
// FromConfig reads it from a loaded configuration; Load and Parse read a
// mapping of lock_ttl and strategies on its own.
//
// It is strict: an unknown field, a bad cron expression, a priority out
// of range or a missing path is an error that names the file, the line,
// the strategy and the field.
package warmconfig

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tiercache/tiercache/config"
	"github.com/tiercache/tiercache/warm"
)

// Config is a parsed configuration file.
type Config struct {
	// LockTTL configures the Scheduler (warm.SchedulerOptions); zero
	// means its default.
	LockTTL time.Duration

	// Strategies are ready for warm.NewRunner, in file order.
	Strategies []warm.Strategy
}

// Options adjust how a configuration is turned into strategies.
type Options struct {
	// HTTPClient sends the requests of http sources. Nil means
	// http.DefaultClient.
	HTTPClient *http.Client

	// Getenv expands ${VAR} in http header values. Nil means os.Getenv.
	Getenv func(string) string
}

// Load reads and parses the file at path. Relative file paths in it are
// relative to the file's directory.
func Load(path string, opts Options) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("warmconfig: %w", err)
	}
	return Parse(path, data, opts)
}

// Parse parses data, the content of the file at path (used in messages
// and to resolve relative file paths).
func Parse(path string, data []byte, opts Options) (*Config, error) {
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	p := &parser{path: path, dir: filepath.Dir(path), opts: opts}
	cfg, err := p.parse(data)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// parser turns YAML nodes into a Config, with positions in its errors.
type parser struct {
	path string
	dir  string
	opts Options
}

// errorf formats an error at node's line, about strategy (when not empty).
func (p *parser) errorf(n *yaml.Node, strategy, format string, args ...any) error {
	where := p.path
	if n != nil && n.Line > 0 {
		where += ":" + strconv.Itoa(n.Line)
	}
	if strategy != "" {
		where += fmt.Sprintf(": strategy %q", strategy)
	}
	return fmt.Errorf("warmconfig: %s: "+format, append([]any{where}, args...)...)
}

func (p *parser) parse(data []byte) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("warmconfig: %s: %v", p.path, err)
	}
	if len(doc.Content) == 0 || len(bytes.TrimSpace(data)) == 0 {
		return nil, p.errorf(nil, "", "the file is empty; it needs a strategies list")
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, p.errorf(root, "", "the top level must be a mapping with a strategies list")
	}
	cfg := &Config{}
	var strategies *yaml.Node
	err := fields(root, []string{"lock_ttl", "strategies"}, func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case "lock_ttl":
			cfg.LockTTL, err = p.duration(v, "", key)
		case "strategies":
			strategies = v
		}
		return err
	}, p.unknown(""))
	if err != nil {
		return nil, err
	}
	if strategies == nil {
		return nil, p.errorf(root, "", "strategies must be a non-empty list")
	}
	if cfg.Strategies, err = p.strategies(strategies); err != nil {
		return nil, err
	}
	return cfg, nil
}

// strategies reads the list of strategies.
func (p *parser) strategies(list *yaml.Node) ([]warm.Strategy, error) {
	if list.Kind != yaml.SequenceNode || len(list.Content) == 0 {
		return nil, p.errorf(list, "", "strategies must be a non-empty list")
	}
	var out []warm.Strategy
	seen := map[string]int{}
	for _, n := range list.Content {
		s, err := p.strategy(n)
		if err != nil {
			return nil, err
		}
		if line, dup := seen[s.Name]; dup {
			return nil, p.errorf(n, s.Name, "name: already used by the strategy on line %d", line)
		}
		seen[s.Name] = n.Line
		out = append(out, s)
	}
	return out, nil
}

// FromConfig reads the warming section of a configuration (package
// config): warming.lock_ttl and the strategies of warming.strategies,
// whose relative file paths are relative to the directory of cfg.Path.
// A configuration without strategies has none.
func FromConfig(cfg *config.Config, opts Options) (*Config, error) {
	out := &Config{LockTTL: cfg.Warming.LockTTL}
	n := cfg.Warming.Strategies
	if n.Kind == 0 {
		return out, nil
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	p := &parser{path: cfg.Path, dir: filepath.Dir(cfg.Path), opts: opts}
	var err error
	if out.Strategies, err = p.strategies(&n); err != nil {
		return nil, err
	}
	return out, nil
}

func cmpNode(n, fallback *yaml.Node) *yaml.Node {
	if n != nil {
		return n
	}
	return fallback
}

// unknown returns the error for an unknown field.
func (p *parser) unknown(strategy string) func(k *yaml.Node, known []string) error {
	return func(k *yaml.Node, known []string) error {
		return p.errorf(k, strategy, "unknown field %q (known: %s)", k.Value, strings.Join(known, ", "))
	}
}

// fields walks a mapping's keys, calling set for known ones and unknown
// for the others.
func fields(m *yaml.Node, known []string, set func(key string, k, v *yaml.Node) error, unknown func(*yaml.Node, []string) error) error {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if !slices.Contains(known, k.Value) {
			return unknown(k, known)
		}
		if err := set(k.Value, k, v); err != nil {
			return err
		}
	}
	return nil
}

// strategyFields are the keys of a strategy, in documentation order.
var strategyFields = []string{
	"name", "priority", "enabled", "schedule", "warm_on_startup", "warm_on_demand",
	"batch_size", "delay_between_batches", "ttl", "tags", "file", "http",
}

func (p *parser) strategy(n *yaml.Node) (warm.Strategy, error) {
	if n.Kind != yaml.MappingNode {
		return warm.Strategy{}, p.errorf(n, "", "each strategy must be a mapping")
	}
	// Defaults as in the seed: enabled, and run on start-up and on demand.
	s := warm.Strategy{Enabled: true, WarmOnStartup: true, WarmOnDemand: true}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "name" {
			if err := n.Content[i+1].Decode(&s.Name); err != nil || s.Name == "" {
				return s, p.errorf(n.Content[i+1], "", "name must be a non-empty string")
			}
		}
	}
	if s.Name == "" {
		return s, p.errorf(n, "", "a strategy has no name")
	}
	var file, web *yaml.Node
	err := fields(n, strategyFields, func(key string, _, v *yaml.Node) error {
		switch key {
		case "file":
			file = v
		case "http":
			web = v
		default:
			return p.field(&s, key, v)
		}
		return nil
	}, p.unknown(s.Name))
	if err != nil {
		return s, err
	}
	switch {
	case file == nil && web == nil:
		return s, p.errorf(n, s.Name, "no source: add file: {path: ...} or http: {url: ...}")
	case file != nil && web != nil:
		return s, p.errorf(web, s.Name, "both file and http: a strategy has one source")
	case file != nil:
		s.Generator, err = p.file(file, s.Name)
	default:
		s.Generator, err = p.http(web, s.Name)
	}
	return s, err
}

// field sets one of a strategy's scalar or list fields.
func (p *parser) field(s *warm.Strategy, key string, v *yaml.Node) error {
	var err error
	switch key {
	case "priority":
		if err = p.decode(v, s.Name, key, &s.Priority); err == nil && (s.Priority < warm.MinPriority || s.Priority > warm.MaxPriority) {
			err = p.errorf(v, s.Name, "priority: %d is out of range %d..%d (1 runs first)", s.Priority, warm.MinPriority, warm.MaxPriority)
		}
	case "enabled":
		err = p.decode(v, s.Name, key, &s.Enabled)
	case "schedule":
		if err = p.decode(v, s.Name, key, &s.Schedule); err == nil && s.Schedule != "" {
			if cerr := warm.CheckSchedule(s.Schedule, time.Now()); cerr != nil {
				err = p.errorf(v, s.Name, "%v", cerr)
			}
		}
	case "warm_on_startup":
		err = p.decode(v, s.Name, key, &s.WarmOnStartup)
	case "warm_on_demand":
		err = p.decode(v, s.Name, key, &s.WarmOnDemand)
	case "batch_size":
		if err = p.decode(v, s.Name, key, &s.BatchSize); err == nil && s.BatchSize < 1 {
			err = p.errorf(v, s.Name, "batch_size: %d is not positive", s.BatchSize)
		}
	case "delay_between_batches":
		if s.DelayBetweenBatches, err = p.duration(v, s.Name, key); err == nil && s.DelayBetweenBatches == 0 {
			s.DelayBetweenBatches = -1 // an explicit 0 means none
		}
	case "ttl":
		s.TTL, err = p.duration(v, s.Name, key)
	case "tags":
		if err = p.decode(v, s.Name, key, &s.Tags); err == nil && slices.Contains(s.Tags, "") {
			err = p.errorf(v, s.Name, "tags: a tag is empty")
		}
	}
	return err
}

// decode decodes a scalar or list field, naming it on error.
func (p *parser) decode(v *yaml.Node, strategy, field string, dst any) error {
	if err := v.Decode(dst); err != nil {
		want := map[string]string{"bool": "true or false", "int": "a whole number", "string": "a string", "[]string": "a list of strings"}[fmt.Sprintf("%T", dst)[1:]]
		return p.errorf(v, strategy, "%s: %q is not %s", field, v.Value, cmpStr(want, "valid"))
	}
	return nil
}

func cmpStr(s, fallback string) string {
	if s != "" {
		return s
	}
	return fallback
}

// duration reads a duration with config.ParseDuration: seconds or a Go
// duration.
func (p *parser) duration(v *yaml.Node, strategy, field string) (time.Duration, error) {
	if v.Kind != yaml.ScalarNode {
		return 0, p.errorf(v, strategy, "%s must be a duration such as 30s or 2h, or seconds", field)
	}
	d, err := config.ParseDuration(v.Value)
	if err != nil {
		return 0, p.errorf(v, strategy, "%s: %q is not a duration such as 30s or 2h, or seconds", field, v.Value)
	}
	if d < 0 {
		return 0, p.errorf(v, strategy, "%s: %v is negative", field, d)
	}
	return d, nil
}

func (p *parser) file(n *yaml.Node, strategy string) (warm.Generator, error) {
	if n.Kind != yaml.MappingNode {
		return nil, p.errorf(n, strategy, "file must be a mapping such as {path: items.jsonl}")
	}
	var path string
	var maxLine int
	err := fields(n, []string{"path", "max_line_bytes"}, func(key string, _, v *yaml.Node) error {
		if key == "path" {
			return p.decode(v, strategy, "file.path", &path)
		}
		return p.size(v, strategy, "file."+key, &maxLine)
	}, p.unknownIn(strategy, "file"))
	if err != nil {
		return nil, err
	}
	if path == "" {
		return nil, p.errorf(n, strategy, "file.path is required")
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(p.dir, path)
	}
	return File(path, maxLine), nil
}

func (p *parser) http(n *yaml.Node, strategy string) (warm.Generator, error) {
	if n.Kind != yaml.MappingNode {
		return nil, p.errorf(n, strategy, "http must be a mapping such as {url: https://...}")
	}
	src := HTTPSource{Client: p.opts.HTTPClient, Header: http.Header{}}
	var headers map[string]string
	err := fields(n, []string{"url", "timeout", "max_bytes", "max_line_bytes", "headers"}, func(key string, _, v *yaml.Node) error {
		var err error
		switch key {
		case "url":
			err = p.decode(v, strategy, "http.url", &src.URL)
			if u, perr := url.Parse(src.URL); err == nil && (perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
				err = p.errorf(v, strategy, "http.url: %q is not an http:// or https:// URL", redact(src.URL))
			}
		case "timeout":
			src.Timeout, err = p.duration(v, strategy, "http.timeout")
		case "max_bytes":
			var n int
			err = p.size(v, strategy, "http.max_bytes", &n)
			src.MaxBytes = int64(n)
		case "max_line_bytes":
			err = p.size(v, strategy, "http.max_line_bytes", &src.MaxLineBytes)
		case "headers":
			err = p.decode(v, strategy, "http.headers", &headers)
		}
		return err
	}, p.unknownIn(strategy, "http"))
	if err != nil {
		return nil, err
	}
	if src.URL == "" {
		return nil, p.errorf(n, strategy, "http.url is required")
	}
	for k, v := range headers {
		src.Header.Set(k, os.Expand(v, p.opts.Getenv))
	}
	return HTTP(src), nil
}

func (p *parser) unknownIn(strategy, section string) func(*yaml.Node, []string) error {
	return func(k *yaml.Node, known []string) error {
		return p.errorf(k, strategy, "%s: unknown field %q (known: %s)", section, k.Value, strings.Join(known, ", "))
	}
}

// size reads a positive byte count.
func (p *parser) size(v *yaml.Node, strategy, field string, dst *int) error {
	if err := v.Decode(dst); err != nil || *dst < 1 {
		return p.errorf(v, strategy, "%s: %q is not a positive number of bytes", field, v.Value)
	}
	return nil
}

// redact hides a URL's password and query values, which may hold tokens.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(malformed URL)"
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q.Set(k, "xxxxx")
		}
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
