package config

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Redacted replaces secrets in Print.
const Redacted = "(redacted)"

// Print writes the configuration as YAML, each setting followed by a
// comment that says where its value came from: default, the file and
// line, env NAME or flag --name. Passwords and tokens are replaced by
// Redacted, and the password of a URL by xxxxx. The warming strategies
// are written as the file gave them.
func (c *Config) Print(w io.Writer) error {
	var b bytes.Buffer
	var section []string
	for _, f := range Fields() {
		parts := strings.Split(f.Key, ".")
		parents := parts[:len(parts)-1]
		common := 0
		for common < len(parents) && common < len(section) && parents[common] == section[common] {
			common++
		}
		for i := common; i < len(parents); i++ {
			fmt.Fprintf(&b, "%s%s:\n", strings.Repeat("  ", i), parents[i])
		}
		section = parents
		indent := strings.Repeat("  ", len(parents))
		name := parts[len(parts)-1]
		origin := "# " + c.Origin(f.Key).String()
		v := f.value(c)
		switch {
		case f.Type == "strategies":
			writeStrategies(&b, indent, name, v.Interface().(yaml.Node), origin)
			continue
		case f.Type == "rules":
			writeRules(&b, indent, name, c.Cache.CodecRules, origin)
			continue
		}
		val := c.display(f, v)
		line := fmt.Sprintf("%s%s: %s", indent, name, val)
		fmt.Fprintf(&b, "%-56s %s\n", line, origin)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// display formats one value, hiding secrets.
func (c *Config) display(f Field, v reflect.Value) string {
	switch {
	case f.Secret && v.String() != "":
		return Redacted
	case f.isURL():
		return yamlString(redactURL(v.String()))
	}
	return formatValue(v)
}

func writeRules(b *bytes.Buffer, indent, name string, rules []CodecRule, origin string) {
	if rules == nil {
		fmt.Fprintf(b, "%-56s %s\n", indent+name+": null", origin+" (null: the built-in rules)")
		return
	}
	if len(rules) == 0 {
		fmt.Fprintf(b, "%-56s %s\n", indent+name+": []", origin)
		return
	}
	fmt.Fprintf(b, "%-56s %s\n", indent+name+":", origin)
	for _, r := range rules {
		fmt.Fprintf(b, "%s  - {pattern: %s, codec: %s}\n", indent, yamlString(r.Pattern), yamlString(r.Codec))
	}
}

func writeStrategies(b *bytes.Buffer, indent, name string, n yaml.Node, origin string) {
	if n.Kind == 0 {
		fmt.Fprintf(b, "%-56s %s\n", indent+name+": []", origin)
		return
	}
	fmt.Fprintf(b, "%-56s %s\n", indent+name+":", origin)
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		fmt.Fprintf(b, "%s  # %v\n", indent, err)
		return
	}
	for line := range strings.SplitSeq(strings.TrimRight(out.String(), "\n"), "\n") {
		fmt.Fprintf(b, "%s  %s\n", indent, line)
	}
}

// formatValue writes v as YAML.
func formatValue(v reflect.Value) string {
	switch v.Type() {
	case durationType:
		return formatDuration(time.Duration(v.Int()))
	case bytesType:
		return Bytes(v.Int()).String()
	}
	switch v.Kind() {
	case reflect.Slice:
		items := make([]string, v.Len())
		for i := range items {
			items[i] = yamlString(v.Index(i).String())
		}
		return "[" + strings.Join(items, ", ") + "]"
	case reflect.String:
		return yamlString(v.String())
	}
	return formatAny(v.Interface())
}

func formatAny(x any) string {
	switch t := x.(type) {
	case float64:
		return strconv.FormatFloat(t, 'g', -1, 64)
	case string:
		return yamlString(t)
	}
	return fmt.Sprint(x)
}

// yamlString quotes s when YAML would not read it back as the same string.
func yamlString(s string) string {
	var n yaml.Node
	if s != "" && yaml.Unmarshal([]byte(s), &n) == nil && len(n.Content) == 1 &&
		n.Content[0].Kind == yaml.ScalarNode && n.Content[0].Tag == "!!str" && n.Content[0].Value == s && !strings.ContainsAny(s, "#:") {
		return s
	}
	return strconv.Quote(s)
}

// formatDuration writes d without zero units: 1h, 1h30m, 500ms.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
