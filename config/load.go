package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	env "github.com/caarlos0/env/v11"
)

// Sources are where Load reads settings from, lowest precedence first:
// the defaults, the file, the environment and the flags.
type Sources struct {
	// File is the YAML file; empty means none.
	File string

	// LookupEnv reads the environment. Nil means os.LookupEnv. Values are
	// trimmed, and an empty one counts as unset.
	LookupEnv func(string) (string, bool)

	// Flags are the flags given on serve's command line, by name without
	// "--" (Field.Flag), as typed.
	Flags map[string]string

	// NoDefaults leaves the settings no source sets at their zero value,
	// which tiercache.Options reads as the library's defaults, instead of
	// the service's defaults (the default tags). OptionsFromEnv uses it.
	NoDefaults bool
}

// Load reads the configuration from src. The error lists every problem
// found, each with where the value came from.
func Load(src Sources) (*Config, error) {
	if src.LookupEnv == nil {
		src.LookupEnv = os.LookupEnv
	}
	l := &loader{cfg: &Config{Path: src.File, origins: map[string]Origin{}, noDefaults: src.NoDefaults}, src: src}
	if !src.NoDefaults {
		l.defaults()
	}
	if src.File != "" {
		if err := l.file(src.File); err != nil {
			return nil, err // one error at a time past a broken file
		}
	}
	l.environment()
	l.otelEnvironment()
	l.flags()
	l.secrets()
	l.derive()
	l.validate()
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}
	return l.cfg, nil
}

// FromEnv is Load from the environment only, without the service's
// defaults (Sources.NoDefaults).
func FromEnv(lookup func(string) (string, bool)) (*Config, error) {
	return Load(Sources{LookupEnv: lookup, NoDefaults: true})
}

// OriginKind says which source set a value.
type OriginKind int

// Sources of a value, lowest precedence first.
const (
	FromDefault OriginKind = iota
	FromFile
	FromEnvironment
	FromFlag
)

// Origin is where a value came from.
type Origin struct {
	Kind OriginKind
	// Where is "file.yaml:12", the variable's name, or "--flag".
	Where string
}

func (o Origin) String() string {
	switch o.Kind {
	case FromFile:
		return o.Where
	case FromEnvironment:
		return "env " + o.Where
	case FromFlag:
		return "flag " + o.Where
	}
	return "default"
}

// Origin returns where the setting at key got its value; the zero Origin
// (default) when no source set it.
func (c *Config) Origin(key string) Origin { return c.origins[key] }

// Given reports whether the setting at key has a value: one a source
// set, or its default unless the configuration was loaded with
// Sources.NoDefaults. A setting not given leaves its tiercache.Options
// field zero, which means the library's default.
func (c *Config) Given(key string) bool { return !c.noDefaults || c.Set(key) }

// Set reports whether a source other than the defaults set key.
func (c *Config) Set(key string) bool { return c.origins[key].Kind != FromDefault }

type loader struct {
	cfg  *Config
	src  Sources
	errs []error
}

func (l *loader) errorf(o Origin, key, format string, args ...any) {
	l.errs = append(l.errs, &Error{Origin: o, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// Error is a setting that Load refused.
type Error struct {
	Origin Origin // where the value came from
	Key    string // the setting ("cache.breaker.threshold")
	Msg    string // what is wrong, with the values allowed
}

func (e *Error) Error() string {
	where := e.Origin.Where
	if e.Origin.Kind == FromDefault {
		where = "default"
	}
	return where + ": " + e.Key + ": " + e.Msg
}

// defaults sets every field from its default tag.
func (l *loader) defaults() {
	for _, f := range Fields() {
		d := f.Default
		if strings.HasPrefix(d, "$STATE_DIRECTORY") {
			d = stateDir(l.src.LookupEnv)
		}
		if d == "" {
			continue
		}
		if err := setString(f.value(l.cfg), d); err != nil {
			panic(fmt.Sprintf("config: default of %s: %v", f.Key, err)) // a bug in the table
		}
	}
}

// stateDir is serve's default journal directory: $STATE_DIRECTORY (set
// by systemd's StateDirectory=), else $XDG_STATE_HOME/tiercache, else
// ~/.local/state/tiercache. Empty when none can be found.
func stateDir(lookup func(string) (string, bool)) string {
	get := func(k string) string { v, _ := lookup(k); return strings.TrimSpace(v) }
	if d := get("STATE_DIRECTORY"); d != "" {
		// systemd may list several directories, separated by colons.
		return strings.Split(d, ":")[0]
	}
	if d := get("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "tiercache")
	}
	if home := get("HOME"); home != "" {
		return filepath.Join(home, ".local", "state", "tiercache")
	}
	return ""
}

// environment overlays the environment with caarlos0/env, reading each
// kind of value with the parsers of this package.
func (l *loader) environment() {
	vars := map[string]string{}
	for _, f := range Fields() {
		if f.Env == "" {
			continue
		}
		if v, ok := l.src.LookupEnv(f.Env); ok && strings.TrimSpace(v) != "" {
			vars[f.Env] = strings.TrimSpace(v)
		}
	}
	byEnv := map[string]string{}
	for _, f := range Fields() {
		if f.Env != "" {
			byEnv[f.Env] = f.Key
		}
	}
	var current string // the variable being read: env calls OnSet, then the parser
	funcs := map[reflect.Type]env.ParserFunc{}
	for _, t := range []reflect.Type{durationType, bytesType, reflect.TypeFor[bool](), reflect.TypeFor[int](),
		reflect.TypeFor[float64](), reflect.TypeFor[string](), reflect.TypeFor[[]string]()} {
		funcs[t] = func(v string) (any, error) {
			p := reflect.New(t)
			if err := setString(p.Elem(), v); err != nil {
				return nil, &varError{name: current, key: byEnv[current], err: err}
			}
			return p.Elem().Interface(), nil
		}
	}
	err := env.ParseWithOptions(l.cfg, env.Options{
		Environment: vars,
		FuncMap:     funcs,
		OnSet: func(name string, value any, isDefault bool) {
			if s, _ := value.(string); s != "" && !isDefault {
				current = name
				l.cfg.origins[byEnv[name]] = Origin{Kind: FromEnvironment, Where: name}
			}
		},
	})
	for _, e := range unwrapAll(err) {
		var ve *varError
		if pe, ok := e.(env.ParseError); ok {
			e = pe.Err
		}
		if errors.As(e, &ve) {
			l.errorf(Origin{Kind: FromEnvironment, Where: ve.name}, ve.key, "%v", ve.err)
		} else {
			l.errs = append(l.errs, e)
		}
	}
}

// varError is a variable that its parser refused.
type varError struct {
	name, key string
	err       error
}

func (e *varError) Error() string { return e.name + ": " + e.err.Error() }

// unwrapAll flattens env's AggregateError.
func unwrapAll(err error) []error {
	if err == nil {
		return nil
	}
	var agg env.AggregateError
	if errors.As(err, &agg) {
		return agg.Errors
	}
	return []error{err}
}

// flags overlays the command line's flags.
func (l *loader) flags() {
	for _, f := range Fields() {
		v, ok := l.src.Flags[f.Flag]
		if f.Flag == "" || !ok {
			continue
		}
		o := Origin{Kind: FromFlag, Where: "--" + f.Flag}
		if err := setString(f.value(l.cfg), v); err != nil {
			l.errorf(o, f.Key, "%v", err)
			continue
		}
		l.cfg.origins[f.Key] = o
	}
}

// secrets reads the *_file settings. Of a value and its file, the one
// from the stronger source wins; both from the same source is an error.
func (l *loader) secrets() {
	for _, pair := range [][2]string{
		{"redis.password", "redis.password_file"},
		{"redis.sentinel.password", "redis.sentinel.password_file"},
		{"http.token", "http.token_file"},
		{"tracing.headers", "tracing.headers_file"},
	} {
		val, _ := lookupField(pair[0])
		file, _ := lookupField(pair[1])
		path := file.value(l.cfg).String()
		if path == "" {
			continue
		}
		vo, fo := l.cfg.origins[val.Key], l.cfg.origins[file.Key]
		if val.value(l.cfg).String() != "" && vo.Kind >= fo.Kind {
			if vo.Kind == fo.Kind {
				l.errorf(fo, file.Key, "%s is set too (%s); set only one", val.Key, vo)
			}
			continue
		}
		secret, err := ReadSecretFile(path)
		if err != nil {
			l.errorf(fo, file.Key, "%v", err)
			continue
		}
		val.value(l.cfg).SetString(secret)
		l.cfg.origins[val.Key] = fo
	}
}

// derive fills settings that depend on others.
func (l *loader) derive() {
	s := &l.cfg.Redis.Sentinel
	if len(s.Hosts) > 0 && s.Master == "" {
		s.Master = "mymaster"
	}
	// A bare port ("18083"), from the file, the environment or --addr,
	// means that port on every interface, as an operator means it;
	// net.Listen would refuse it as "missing port in address".
	if a := l.cfg.HTTP.Addr; a != "" && strings.Trim(a, "0123456789") == "" {
		l.cfg.HTTP.Addr = ":" + a
	}
}
