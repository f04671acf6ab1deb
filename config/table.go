package config

import (
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// Field describes one setting: a row of the table that the struct tags of
// Config make.
type Field struct {
	Key     string // path in the file: "cache.breaker.threshold"
	Env     string // environment variable; empty when none
	Flag    string // flag of serve, without "--"; empty when none
	Default string // as written in the file; empty when none
	Help    string // what it does
	// Option is the tiercache.Options field it sets ("Breaker.Threshold");
	// empty for the service's own settings.
	Option string
	// Type names the kind of value: string, bool, int, number, duration,
	// size, list, rules or strategies.
	Type string
	// Secret is true for values never printed (passwords, tokens); "url"
	// fields have their password hidden.
	Secret bool
	// Path is true for file names: relative ones in the file are relative
	// to the file's directory.
	Path bool

	check string
	index []int
}

var (
	fieldsOnce sync.Once
	fields     []Field
)

// Fields returns the table of settings in file order.
func Fields() []Field {
	fieldsOnce.Do(func() { fields = walkFields(reflect.TypeFor[Config](), "", nil) })
	return slices.Clone(fields)
}

// lookupField returns the field at key.
func lookupField(key string) (Field, bool) {
	for _, f := range Fields() {
		if f.Key == key {
			return f, true
		}
	}
	return Field{}, false
}

var (
	durationType   = reflect.TypeFor[time.Duration]()
	bytesType      = reflect.TypeFor[Bytes]()
	nodeType       = reflect.TypeFor[yaml.Node]()
	codecRulesType = reflect.TypeFor[[]CodecRule]()
)

// isSection reports whether t is a section of settings.
func isSection(t reflect.Type) bool { return t.Kind() == reflect.Struct && t != nodeType }

func walkFields(t reflect.Type, prefix string, index []int) []Field {
	var out []Field
	for i := range t.NumField() {
		sf := t.Field(i)
		name := sf.Tag.Get("yaml")
		if !sf.IsExported() || name == "" || name == "-" {
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		idx := append(slices.Clone(index), i)
		if isSection(sf.Type) {
			out = append(out, walkFields(sf.Type, key, idx)...)
			continue
		}
		env := sf.Tag.Get("env")
		if env == "-" {
			env = ""
		}
		out = append(out, Field{
			Key: key, Env: env, Flag: sf.Tag.Get("flag"), Default: sf.Tag.Get("default"),
			Help: sf.Tag.Get("help"), Option: sf.Tag.Get("opt"), Type: typeName(sf.Type),
			Secret: sf.Tag.Get("secret") == "true", Path: sf.Tag.Get("path") == "true",
			check: sf.Tag.Get("check"), index: idx,
		})
		if sf.Tag.Get("secret") == "url" {
			out[len(out)-1].check = strings.TrimPrefix(out[len(out)-1].check+",url", ",")
		}
	}
	return out
}

func typeName(t reflect.Type) string {
	switch t {
	case durationType:
		return "duration"
	case bytesType:
		return "size"
	case nodeType:
		return "strategies"
	case codecRulesType:
		return "rules"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "bool"
	case reflect.Int:
		return "int"
	case reflect.Float64:
		return "number"
	case reflect.Slice:
		return "list"
	}
	return "string"
}

// value returns the field's value in c.
func (f Field) value(c *Config) reflect.Value {
	return reflect.ValueOf(c).Elem().FieldByIndex(f.index)
}

// isURL reports whether the field is a URL whose password is hidden.
func (f Field) isURL() bool { return strings.Contains(f.check, "url") }
