package codec

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestRules_For(t *testing.T) {
	t.Parallel()
	r, err := NewRegistry(fakeCodec{200, "gob"})
	if err != nil {
		t.Fatal(err)
	}
	rules, err := CompileRules(r, []Rule{
		{Pattern: "exact", Codec: "raw"},
		{Pattern: "user:*", Codec: "gob"},
		{Pattern: "*.json", Codec: "json"},
		{Pattern: "img/*/thumb*/*.png", Codec: "raw"},
		{Pattern: "a*b*a", Codec: "gob"},
		{Pattern: "x**y", Codec: "raw"},
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key  string
		want string
	}{
		{key: "exact", want: "raw"},
		{key: "exact!", want: "msgpack"},
		{key: "user:42", want: "gob"},
		{key: "user:", want: "gob"},
		{key: "users:42", want: "msgpack"},
		{key: "config/app.json", want: "json"},
		{key: "user:1.json", want: "gob"}, // the first match wins
		{key: ".json", want: "json"},
		{key: "img/a/b/thumbnail/x/y.png", want: "raw"},
		{key: "img/a/thumb/.png", want: "raw"},
		{key: "img/thumb/x.png", want: "msgpack"},
		{key: "aba", want: "gob"},
		{key: "aXbYa", want: "gob"},
		{key: "ab", want: "msgpack"},
		{key: "aa", want: "msgpack"},
		{key: "aab", want: "msgpack"},
		{key: "xy", want: "raw"},
		{key: "x:/y", want: "raw"},
		{key: "", want: "msgpack"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			t.Parallel()
			if got := rules.For(tt.key).Name(); got != tt.want {
				t.Errorf("For(%q) = %s, want %s", tt.key, got, tt.want)
			}
		})
	}
}

func TestRules_Default(t *testing.T) {
	t.Parallel()
	rules, err := CompileRules(nil, DefaultRules(), "")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key  string
		want byte
	}{
		{key: "api:users", want: IDJSON},
		{key: "v2/api:users/7", want: IDJSON},
		{key: "response:GET /x", want: IDJSON},
		{key: "http:response:42", want: IDJSON},
		{key: "config:flags", want: IDJSON},
		{key: "user:42", want: IDMsgPack},
		{key: "api", want: IDMsgPack},
		{key: "rapid:1", want: IDMsgPack},
		{key: "configs:1", want: IDMsgPack},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			t.Parallel()
			if got := rules.For(tt.key).ID(); got != tt.want {
				t.Errorf("For(%q) = codec %d, want %d", tt.key, got, tt.want)
			}
		})
	}

	d := DefaultRules()
	d[0].Codec = "raw"
	if DefaultRules()[0].Codec != NameJSON {
		t.Error("DefaultRules returned shared state")
	}
}

// matchReference is an obviously correct glob matcher to check the
// compiled one against.
func matchReference(pattern, key string) bool {
	if pattern == "" {
		return key == ""
	}
	if pattern[0] == '*' {
		for i := 0; i <= len(key); i++ {
			if matchReference(pattern[1:], key[i:]) {
				return true
			}
		}
		return false
	}
	return key != "" && key[0] == pattern[0] && matchReference(pattern[1:], key[1:])
}

func TestRules_MatchesReference(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	word := func(alphabet string, max int) string {
		var sb strings.Builder
		for range rng.IntN(max + 1) {
			sb.WriteByte(alphabet[rng.IntN(len(alphabet))])
		}
		return sb.String()
	}
	for range 20000 {
		pattern := word("ab*", 6)
		if pattern == "" {
			continue
		}
		key := word("ab", 8)
		cr := compilePattern(pattern, nil)
		if got, want := cr.match(key), matchReference(pattern, key); got != want {
			t.Fatalf("pattern %q key %q: match = %v, want %v", pattern, key, got, want)
		}
	}
}

func TestCompileRules_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		rules    []Rule
		fallback string
		unknown  bool
		err      string
	}{
		{name: "unknown codec", rules: []Rule{{Pattern: "a*", Codec: "xml"}}, unknown: true, err: `codec: rules: rule 0 ("a*"): codec: unknown codec "xml"`},
		{name: "unknown fallback", fallback: "xml", unknown: true, err: `codec: rules: fallback: codec: unknown codec "xml"`},
		{name: "empty pattern", rules: []Rule{{Pattern: "a", Codec: "json"}, {Codec: "json"}}, err: "codec: rules: rule 1: empty pattern"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := CompileRules(nil, tt.rules, tt.fallback)
			if err == nil || err.Error() != tt.err || errors.Is(err, ErrUnknownCodec) != tt.unknown {
				t.Fatalf("CompileRules error = %v, want %q (matches ErrUnknownCodec: %v)", err, tt.err, tt.unknown)
			}
		})
	}
}

func TestRules_ForDoesNotAllocate(t *testing.T) { // not parallel: AllocsPerRun
	rules, err := CompileRules(nil, append(DefaultRules(), Rule{Pattern: "a*b*c*d", Codec: "raw"}), "")
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"user:42", "v1/api:users", "a-b-c-d", "config:x", "zzzzzzzzzzzzzzzzzzzzzzzz"}
	if n := testing.AllocsPerRun(100, func() {
		for _, k := range keys {
			_ = rules.For(k)
		}
	}); n != 0 {
		t.Fatalf("For allocated %v times per run", n)
	}
}

// benchKeys returns n keys in the shapes applications use: mostly plain
// entity keys, some under the default JSON rules.
func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		switch i % 4 {
		case 0:
			keys[i] = fmt.Sprintf("api:v1/users/%d", i)
		case 1:
			keys[i] = fmt.Sprintf("session:%08x:profile", i)
		case 2:
			keys[i] = fmt.Sprintf("user:%d", i)
		default:
			keys[i] = fmt.Sprintf("org:%d/project:%d/settings", i/7, i)
		}
	}
	return keys
}

func BenchmarkRules_For(b *testing.B) {
	rules, err := CompileRules(nil, DefaultRules(), "")
	if err != nil {
		b.Fatal(err)
	}
	for _, key := range []string{"user:42", "api:v1/users/42", "org:7/project:12/settings:response:x"} {
		b.Run("rules=default,key="+key, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = rules.For(key)
			}
		})
	}
	keys := benchKeys(1 << 14)
	b.Run("rules=default,keys=zipf", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			z := rand.NewZipf(rand.New(rand.NewPCG(rand.Uint64(), 1)), 1.01, 1, uint64(len(keys)-1))
			for pb.Next() {
				_ = rules.For(keys[z.Uint64()])
			}
		})
	})
}
