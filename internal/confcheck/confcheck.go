// Package confcheck checks a redis.conf or a sentinel.conf against the
// production checklist of a tiercache deployment (docs/operations.md):
// memory limit and eviction policy, persistence, authentication, protected
// mode and bind address, dangerous commands, replication safety, and for
// Sentinel the quorum and failover settings. `tiercache conf check` runs
// it.
package confcheck

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Severity grades a finding.
type Severity int

// Severities, from harmless to blocking.
const (
	OK    Severity = iota // the setting meets the checklist
	Warn                  // allowed, but worth a second look
	Error                 // unfit for production
)

func (s Severity) String() string {
	switch s {
	case OK:
		return "OK"
	case Warn:
		return "WARN"
	}
	return "ERROR"
}

// Finding is one result of a check.
type Finding struct {
	// Severity grades the finding.
	Severity Severity
	// Check names the checklist item: "memory", "persistence", "auth",
	// "network", "dangerous-commands", "replication", "quorum",
	// "failover".
	Check string
	// Message says what was found and, for WARN and ERROR, what to do.
	Message string
}

// Kind is the kind of a configuration file.
type Kind string

// Kinds of configuration files.
const (
	Redis    Kind = "redis"
	Sentinel Kind = "sentinel"
)

// Report is the result of checking one file.
type Report struct {
	// Path is the file checked.
	Path string
	// Kind is Sentinel when the file has a "sentinel monitor" line (or
	// is named sentinel*.conf), ACL when it holds only "user" lines (an
	// aclfile), Redis otherwise.
	Kind Kind
	// Findings are in checklist order.
	Findings []Finding
}

// Count returns how many findings have severity s.
func (r Report) Count(s Severity) int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == s {
			n++
		}
	}
	return n
}

// Worst returns the highest severity of the findings (OK when there are
// none).
func (r Report) Worst() Severity {
	w := OK
	for _, f := range r.Findings {
		w = max(w, f.Severity)
	}
	return w
}

// Write prints the report, one finding a line, then a summary line.
func (r Report) Write(w io.Writer) error {
	var b strings.Builder
	if r.Kind == ACL {
		fmt.Fprintf(&b, "%s (ACL file)\n", r.Path)
	} else {
		fmt.Fprintf(&b, "%s (%s configuration)\n", r.Path, r.Kind)
	}
	width := 0
	for _, f := range r.Findings {
		width = max(width, len(f.Check))
	}
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "  %-5s  %-*s  %s\n", f.Severity, width, f.Check, f.Message)
	}
	fmt.Fprintf(&b, "%d ok, %d warnings, %d errors\n", r.Count(OK), r.Count(Warn), r.Count(Error))
	_, err := io.WriteString(w, b.String())
	return err
}

// Options adjust a check.
type Options struct {
	// ACLFile is the ACL file to check the users of, instead of the one
	// that the configuration's aclfile names. Empty means that one, read
	// relative to the configuration's directory when the path is
	// relative.
	ACLFile string
}

// CheckFile reads and checks the configuration file at path.
func CheckFile(path string, opts Options) (Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Report{}, fmt.Errorf("confcheck: %w", err)
	}
	return Check(path, data, opts)
}

// Check checks the configuration data read from path. It fails only when
// the data is not a configuration file at all (a line that cannot be
// split into arguments).
func Check(path string, data []byte, opts Options) (Report, error) {
	c, err := parse(string(data))
	if err != nil {
		return Report{}, fmt.Errorf("confcheck: %s: %w", path, err)
	}
	c.dir = filepath.Dir(path)
	r := Report{Path: path, Kind: Redis}
	if c.has("sentinel", "monitor") || strings.HasPrefix(filepath.Base(path), "sentinel") {
		r.Kind = Sentinel
		r.Findings = checkSentinel(c)
		return r, nil
	}
	if isACLFile(c) {
		r.Kind = ACL
		r.Findings = checkACLFile(c)
		return r, nil
	}
	r.Findings = checkRedis(c, opts)
	return r, nil
}

// directive is one line of a configuration: its name in lower case and
// its arguments.
type directive struct {
	name string
	args []string
	line int
}

// config is a parsed configuration file.
type config struct {
	dirs []directive
	dir  string // directory of the file, for relative paths
}

// parse splits data into directives, the way Redis does.
func parse(data string) (*config, error) {
	c := &config{}
	n := 0
	for line := range strings.Lines(data) {
		n++
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		args, err := splitArgs(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if len(args) == 0 {
			continue
		}
		c.dirs = append(c.dirs, directive{name: strings.ToLower(args[0]), args: args[1:], line: n})
	}
	return c, nil
}

// last returns the last directive called name (the one in force), or false.
func (c *config) last(name string) (directive, bool) {
	for i := len(c.dirs) - 1; i >= 0; i-- {
		if c.dirs[i].name == name {
			return c.dirs[i], true
		}
	}
	return directive{}, false
}

// value returns the first argument of the last directive called name, or
// def when there is none.
func (c *config) value(name, def string) string {
	if d, ok := c.last(name); ok && len(d.args) > 0 {
		return d.args[0]
	}
	return def
}

// all returns every directive called name, in order.
func (c *config) all(name string) []directive {
	var out []directive
	for _, d := range c.dirs {
		if d.name == name {
			out = append(out, d)
		}
	}
	return out
}

// has reports whether a directive called name has sub as first argument.
func (c *config) has(name, sub string) bool {
	for _, d := range c.all(name) {
		if len(d.args) > 0 && strings.EqualFold(d.args[0], sub) {
			return true
		}
	}
	return false
}

var errUnbalanced = errors.New("unbalanced quotes")

// splitArgs splits a line into arguments like Redis's sdssplitargs:
// spaces separate them, "double quotes" allow \n, \t, \", \\ and \xHH
// escapes, 'single quotes' allow \'.
func splitArgs(line string) ([]string, error) {
	var args []string
	i := 0
	for {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i == len(line) {
			return args, nil
		}
		var (
			arg string
			err error
		)
		switch line[i] {
		case '"':
			arg, i, err = doubleQuoted(line, i+1)
		case '\'':
			arg, i, err = singleQuoted(line, i+1)
		default:
			j := i
			for j < len(line) && line[j] != ' ' && line[j] != '\t' {
				if line[j] == '"' || line[j] == '\'' {
					return nil, errUnbalanced
				}
				j++
			}
			arg, i = line[i:j], j
		}
		if err != nil {
			return nil, err
		}
		// A closing quote must be followed by a space or the end.
		if i < len(line) && line[i] != ' ' && line[i] != '\t' {
			return nil, errors.New("closing quote must be followed by a space")
		}
		args = append(args, arg)
	}
}

// doubleQuoted reads a double-quoted argument whose content starts at
// line[i], and returns it and the index after the closing quote.
func doubleQuoted(line string, i int) (string, int, error) {
	var b strings.Builder
	for ; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '"':
			return b.String(), i + 1, nil
		case c == '\\' && i+1 < len(line):
			i++
			switch e := line[i]; e {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'b':
				b.WriteByte('\b')
			case 'a':
				b.WriteByte('\a')
			case 'x':
				if v, err := strconv.ParseUint(line[i+1:min(i+3, len(line))], 16, 8); err == nil && i+2 < len(line) {
					b.WriteByte(byte(v))
					i += 2
				} else {
					b.WriteByte('x')
				}
			default:
				b.WriteByte(e)
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", i, errUnbalanced
}

// singleQuoted reads a single-quoted argument whose content starts at
// line[i], and returns it and the index after the closing quote.
func singleQuoted(line string, i int) (string, int, error) {
	var b strings.Builder
	for ; i < len(line); i++ {
		switch c := line[i]; {
		case c == '\'':
			return b.String(), i + 1, nil
		case c == '\\' && i+1 < len(line) && line[i+1] == '\'':
			b.WriteByte('\'')
			i++
		default:
			b.WriteByte(c)
		}
	}
	return "", i, errUnbalanced
}
