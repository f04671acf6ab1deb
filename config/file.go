package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// oldWarmingKeys are the top-level keys of the warming files of earlier
// versions, which are now the warming section.
var oldWarmingKeys = []string{"strategies", "lock_ttl"}

// file reads the YAML file at path over the defaults.
func (l *loader) file(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config: %s: %v", path, err)
	}
	if len(doc.Content) == 0 || len(bytes.TrimSpace(data)) == 0 {
		return nil // an empty file sets nothing
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("config: %s:%d: the top level must be a mapping of sections (%s)", path, root.Line, strings.Join(sectionKeys(reflect.TypeFor[Config]()), ", "))
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := root.Content[i]; slices.Contains(oldWarmingKeys, k.Value) {
			return fmt.Errorf("config: %s:%d: %q at the top level is the warming file of earlier versions; "+
				"indent the file's content under a \"warming:\" key (warming:\\n  strategies:\\n    - name: ...) "+
				"to make it the warming section of the configuration (docs/configuration.md)", path, k.Line, k.Value)
		}
	}
	f := &fileReader{l: l, path: path, dir: filepath.Dir(path)}
	f.section(root, reflect.ValueOf(l.cfg).Elem(), "")
	return nil
}

type fileReader struct {
	l    *loader
	path string
	dir  string
}

func (f *fileReader) at(n *yaml.Node) Origin {
	return Origin{Kind: FromFile, Where: f.path + ":" + strconv.Itoa(n.Line)}
}

// sectionKeys lists the yaml keys of a section type.
func sectionKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		if k := t.Field(i).Tag.Get("yaml"); k != "" && k != "-" {
			keys = append(keys, k)
		}
	}
	return keys
}

// section reads the mapping m into the section v at prefix.
func (f *fileReader) section(m *yaml.Node, v reflect.Value, prefix string) {
	t := v.Type()
	known := sectionKeys(t)
	where := "the top level"
	if prefix != "" {
		where = prefix
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, n := m.Content[i], m.Content[i+1]
		idx := slices.Index(known, k.Value)
		if idx < 0 {
			f.l.errorf(f.at(k), where, "unknown key %q (known: %s)", k.Value, strings.Join(known, ", "))
			continue
		}
		key := k.Value
		if prefix != "" {
			key = prefix + "." + key
		}
		if line, dup := seen[k.Value]; dup {
			f.l.errorf(f.at(k), key, "set twice (first on line %d)", line)
			continue
		}
		seen[k.Value] = k.Line
		sf, _ := t.FieldByName(fieldName(t, k.Value))
		fv := v.FieldByIndex(sf.Index)
		switch {
		case isSection(sf.Type):
			if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
				continue // an empty section
			}
			if n.Kind != yaml.MappingNode {
				f.l.errorf(f.at(n), key, "must be a mapping of %s", strings.Join(sectionKeys(sf.Type), ", "))
				continue
			}
			f.section(n, fv, key)
		default:
			f.leaf(n, fv, key)
		}
	}
}

func fieldName(t reflect.Type, yamlKey string) string {
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("yaml") == yamlKey {
			return t.Field(i).Name
		}
	}
	return ""
}

// leaf reads one setting.
func (f *fileReader) leaf(n *yaml.Node, v reflect.Value, key string) {
	o := f.at(n)
	field, _ := lookupField(key)
	switch v.Type() {
	case nodeType:
		if n.Kind != yaml.SequenceNode {
			f.l.errorf(o, key, "must be a list of strategies (docs/warming.md)")
			return
		}
		v.Set(reflect.ValueOf(*n))
	case codecRulesType:
		rules, ok := f.rules(n, key)
		if !ok {
			return
		}
		v.Set(reflect.ValueOf(rules))
	default:
		if v.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode {
			var list []string
			for _, item := range n.Content {
				if item.Kind != yaml.ScalarNode {
					f.l.errorf(f.at(item), key, "must be a list of strings")
					return
				}
				list = append(list, strings.TrimSpace(item.Value))
			}
			v.Set(reflect.ValueOf(list))
			break
		}
		if n.Kind != yaml.ScalarNode {
			f.l.errorf(o, key, "must be %s, not a %s", kindPhrase(field.Type), nodeKind(n))
			return
		}
		s := n.Value
		if n.Tag == "!!null" {
			s = ""
		}
		if s == "" && v.Kind() != reflect.String {
			f.l.errorf(o, key, "has no value; want %s", kindPhrase(field.Type))
			return
		}
		if err := setString(v, s); err != nil {
			f.l.errorf(o, key, "%v", err)
			return
		}
		if field.Path && s != "" && !filepath.IsAbs(s) {
			v.SetString(filepath.Join(f.dir, s))
		}
	}
	f.l.cfg.origins[key] = o
}

// rules reads codec_rules: a list of {pattern, codec}.
func (f *fileReader) rules(n *yaml.Node, key string) ([]CodecRule, bool) {
	if n.Kind != yaml.SequenceNode {
		f.l.errorf(f.at(n), key, "must be a list of {pattern: ..., codec: ...}")
		return nil, false
	}
	rules := []CodecRule{}
	for _, item := range n.Content {
		var r CodecRule
		if item.Kind != yaml.MappingNode {
			f.l.errorf(f.at(item), key, "each rule must be a mapping {pattern: ..., codec: ...}")
			return nil, false
		}
		for i := 0; i+1 < len(item.Content); i += 2 {
			k, v := item.Content[i], item.Content[i+1]
			switch {
			case v.Kind != yaml.ScalarNode:
				f.l.errorf(f.at(v), key, "%s must be a string", k.Value)
				return nil, false
			case k.Value == "pattern":
				r.Pattern = v.Value
			case k.Value == "codec":
				r.Codec = v.Value
			default:
				f.l.errorf(f.at(k), key, "unknown key %q in a rule (known: pattern, codec)", k.Value)
				return nil, false
			}
		}
		if r.Pattern == "" || r.Codec == "" {
			f.l.errorf(f.at(item), key, "a rule needs both pattern and codec")
			return nil, false
		}
		if _, err := filepath.Match(r.Pattern, ""); err != nil {
			f.l.errorf(f.at(item), key, "pattern %q: %v", r.Pattern, err)
			return nil, false
		}
		rules = append(rules, r)
	}
	return rules, true
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}

// kindPhrase describes a kind of value for messages.
func kindPhrase(kind string) string {
	return map[string]string{
		"bool":     "true or false",
		"int":      "a whole number",
		"number":   "a number",
		"duration": "a duration: seconds (90) or a Go duration (90s, 1h30m, 250ms)",
		"size":     "a size: bytes (4194304) or with a unit (4MiB, 64KiB)",
		"list":     "a list of strings",
		"string":   "a string",
	}[kind]
}

// setString parses s into v with the parser of v's kind.
func setString(v reflect.Value, s string) error {
	switch v.Type() {
	case durationType:
		d, err := ParseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
		return nil
	case bytesType:
		b, err := ParseSize(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(b))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(strings.TrimSpace(s))
	case reflect.Bool:
		b, err := ParseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case reflect.Int:
		n, err := ParseInt(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(n))
	case reflect.Float64:
		x, err := ParseFloat(s)
		if err != nil {
			return err
		}
		v.SetFloat(x)
	case reflect.Slice:
		v.Set(reflect.ValueOf(ParseList(s)))
	default:
		return fmt.Errorf("cannot be set from text")
	}
	return nil
}
