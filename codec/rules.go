package codec

import (
	"errors"
	"fmt"
	"strings"
)

// Rule maps keys that match Pattern to the codec named Codec.
//
// Pattern is a glob in which '*' matches any run of characters, ':' and '/'
// included; every other character matches itself. "*api:*" matches any key
// that contains "api:", "user:*" any key that starts with "user:", and a
// pattern without '*' only the key equal to it.
type Rule struct {
	Pattern string
	Codec   string
}

// DefaultRules returns the rules tiercache starts with: keys that contain
// "api:", "response:" or "config:" are stored as JSON, so that programs in
// other languages can read them. The caller owns the returned slice.
func DefaultRules() []Rule {
	return []Rule{
		{Pattern: "*api:*", Codec: NameJSON},
		{Pattern: "*response:*", Codec: NameJSON},
		{Pattern: "*config:*", Codec: NameJSON},
	}
}

// Rules chooses a codec for a key. It does not change after CompileRules
// returns, so it is safe for concurrent use. The zero value is not usable;
// use CompileRules.
type Rules struct {
	rules    []compiledRule
	fallback Codec
}

// compiledRule is a pattern split at its stars: the key must start with
// prefix, end with suffix, and hold each of middle in order between them.
type compiledRule struct {
	prefix, suffix string
	middle         []string
	star           bool // false: the key must equal prefix
	minLen         int
	codec          Codec
}

// CompileRules resolves rules against r and returns them ready for For. The
// first rule whose pattern matches a key wins; keys that match none get the
// codec named fallback, or MsgPack when fallback is "". A nil r means the
// built-in codecs only. An unknown codec name yields an error matching
// ErrUnknownCodec, and an empty pattern is an error.
func CompileRules(r *Registry, rules []Rule, fallback string) (*Rules, error) {
	if r == nil {
		var err error
		if r, err = NewRegistry(); err != nil {
			return nil, err
		}
	}
	if fallback == "" {
		fallback = NameMsgPack
	}
	fb, err := r.ByName(fallback)
	if err != nil {
		return nil, fmt.Errorf("codec: rules: fallback: %w", err)
	}
	out := &Rules{rules: make([]compiledRule, 0, len(rules)), fallback: fb}
	for i, rule := range rules {
		if rule.Pattern == "" {
			return nil, fmt.Errorf("codec: rules: rule %d: %w", i, errEmptyPattern)
		}
		c, err := r.ByName(rule.Codec)
		if err != nil {
			return nil, fmt.Errorf("codec: rules: rule %d (%q): %w", i, rule.Pattern, err)
		}
		out.rules = append(out.rules, compilePattern(rule.Pattern, c))
	}
	return out, nil
}

var errEmptyPattern = errors.New("empty pattern")

func compilePattern(pattern string, c Codec) compiledRule {
	parts := strings.Split(pattern, "*")
	cr := compiledRule{prefix: parts[0], codec: c}
	if len(parts) > 1 {
		cr.star = true
		cr.suffix = parts[len(parts)-1]
		for _, p := range parts[1 : len(parts)-1] {
			if p != "" { // "**" means the same as "*"
				cr.middle = append(cr.middle, p)
			}
		}
	}
	cr.minLen = len(cr.prefix) + len(cr.suffix)
	for _, m := range cr.middle {
		cr.minLen += len(m)
	}
	return cr
}

func (cr *compiledRule) match(key string) bool {
	if !cr.star {
		return key == cr.prefix
	}
	if len(key) < cr.minLen || !strings.HasPrefix(key, cr.prefix) || !strings.HasSuffix(key, cr.suffix) {
		return false
	}
	// Between a fixed prefix and suffix, taking each middle part at its
	// first occurrence leaves the most room for the parts after it, so a
	// greedy scan finds a match whenever one exists.
	rest := key[len(cr.prefix) : len(key)-len(cr.suffix)]
	for _, m := range cr.middle {
		j := strings.Index(rest, m)
		if j < 0 {
			return false
		}
		rest = rest[j+len(m):]
	}
	return true
}

// For returns the codec for key. It does not allocate.
func (r *Rules) For(key string) Codec {
	for i := range r.rules {
		if r.rules[i].match(key) {
			return r.rules[i].codec
		}
	}
	return r.fallback
}
