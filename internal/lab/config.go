package lab

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// directive is one configuration line to set: key holds the words that
// name it ("port", or "sentinel monitor mymaster" for a per-master
// setting) and args its values.
type directive struct {
	key  []string
	args []string
}

// set returns the directive "key args...", where key may hold several
// space-separated words.
func set(key string, args ...string) directive {
	return directive{key: strings.Fields(key), args: args}
}

func (d directive) String() string {
	parts := append([]string(nil), d.key...)
	for _, a := range d.args {
		parts = append(parts, quote(a))
	}
	return strings.Join(parts, " ")
}

// renderConfig returns base with each of dirs set: the first line that
// the directive names is replaced in place (so that order-sensitive lines,
// such as "sentinel monitor" before the other per-master lines, keep their
// place), later lines naming it are commented out, and directives that no
// line names are appended.
func renderConfig(base string, dirs []directive) string {
	placed := make([]bool, len(dirs))
	var b strings.Builder
	for line := range strings.Lines(base) {
		i := matchDirective(line, dirs)
		switch {
		case i < 0:
			b.WriteString(line)
			if !strings.HasSuffix(line, "\n") {
				b.WriteByte('\n')
			}
		case !placed[i]:
			placed[i] = true
			b.WriteString(dirs[i].String() + "\n")
		default:
			b.WriteString("# set above: " + strings.TrimRight(line, "\n") + "\n")
		}
	}
	for i, d := range dirs {
		if !placed[i] {
			b.WriteString(d.String() + "\n")
		}
	}
	return b.String()
}

// matchDirective returns the index of the directive that line sets, or -1.
// Comments and blank lines set nothing.
func matchDirective(line string, dirs []directive) int {
	f := strings.Fields(line)
	if len(f) == 0 || strings.HasPrefix(f[0], "#") {
		return -1
	}
	for i, d := range dirs {
		if len(f) < len(d.key) {
			continue
		}
		ok := true
		for j, w := range d.key {
			if !strings.EqualFold(f[j], w) {
				ok = false
				break
			}
		}
		if ok {
			return i
		}
	}
	return -1
}

// quote returns v as a Redis configuration argument: bare when it is
// plain, double-quoted with escapes otherwise.
func quote(v string) string {
	plain := v != ""
	for _, r := range v {
		if r <= ' ' || r > '~' || r == '"' || r == '\'' || r == '\\' || r == '#' {
			plain = false
			break
		}
	}
	if plain {
		return v
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			fmt.Fprintf(&b, "\\x%02x", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// PlaceholderHash is the password hash that deploy/acl.conf ships for
// every user. No password hashes to it, so such a user cannot log in
// until an operator sets its real hash.
const PlaceholderHash = "#0000000000000000000000000000000000000000000000000000000000000000"

// RenderACL returns the ACL file tmpl with the password of each user named
// in passwords set, as a SHA-256 hash, in place of the user's password
// rules. Users not in passwords keep their rules (the template's
// placeholder keeps them locked). It fails when a user in passwords has no
// line in tmpl.
func RenderACL(tmpl string, passwords map[string]string) (string, error) {
	seen := make(map[string]bool)
	var b strings.Builder
	for line := range strings.Lines(tmpl) {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "user" {
			b.WriteString(line)
			continue
		}
		pw, ok := passwords[f[1]]
		if !ok {
			b.WriteString(line)
			continue
		}
		seen[f[1]] = true
		sum := sha256.Sum256([]byte(pw))
		out := []string{"user", f[1], "#" + hex.EncodeToString(sum[:])}
		for _, rule := range f[2:] {
			if isPasswordRule(rule) {
				continue
			}
			out = append(out, rule)
		}
		b.WriteString(strings.Join(out, " ") + "\n")
	}
	for name := range passwords {
		if !seen[name] {
			return "", fmt.Errorf("lab: the ACL file has no user %q", name)
		}
	}
	return b.String(), nil
}

// isPasswordRule reports whether an ACL rule sets or clears passwords.
func isPasswordRule(rule string) bool {
	switch rule {
	case "nopass", "resetpass":
		return true
	}
	return rule != "" && strings.ContainsRune("><#!", rune(rule[0]))
}

// newPassword returns a random password of 32 hex digits.
func newPassword() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
