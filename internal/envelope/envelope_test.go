package envelope

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

// created is a fixed write time: 2025-01-01T00:00:00Z.
const created = 1735689600000

// nsVersion is a typical namespace or tag version: version counters start
// at a random base below 2^62.
const nsVersion = 3_141_592_653_589_793_238

// equal reports whether two decoded envelopes hold the same value, ignoring
// FlagCompressed, which only says how the payload was stored.
func equal(a, b Envelope) bool {
	return a.Codec == b.Codec &&
		a.Flags&^FlagCompressed == b.Flags&^FlagCompressed &&
		a.CreatedAt == b.CreatedAt &&
		a.ExpiresAt == b.ExpiresAt &&
		a.NsVersion == b.NsVersion &&
		slices.Equal(a.Tags, b.Tags) &&
		a.ContentType == b.ContentType &&
		bytes.Equal(a.Payload, b.Payload)
}

func mustEncode(t testing.TB, e *Envelope, compressAbove int) []byte {
	t.Helper()
	b, err := Encode(nil, e, compressAbove)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	compressible   = bytes.Repeat([]byte(`{"id":42,"name":"Ada","roles":["admin"]},`), 100)
	incompressible = func() []byte {
		b := make([]byte, 4096)
		x := uint32(2463534242)
		for i := range b {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			b[i] = byte(x)
		}
		return b
	}()
)

func TestEncodeDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		env            Envelope
		compressAbove  int
		wantCompressed bool
	}{
		{name: "zero"},
		{name: "typical", env: Envelope{Codec: 1, CreatedAt: created, ExpiresAt: created + 3600_000, Payload: []byte("\x82\xa2id\x2a")}},
		{name: "no expiry", env: Envelope{Codec: 2, CreatedAt: created, Payload: []byte(`{"a":1}`)}},
		{name: "negative", env: Envelope{Codec: 1, Flags: FlagNegative, CreatedAt: created, ExpiresAt: created + 30_000}},
		{name: "tags", env: Envelope{Codec: 1, CreatedAt: created, Tags: []TagVersion{{"users", 1}, {"org:7", math.MaxUint64}, {strings.Repeat("t", MaxTagLen), 0}}, Payload: []byte("x")}},
		{name: "max tags", env: Envelope{Tags: slices.Repeat([]TagVersion{{"t", 9}}, MaxTags)}},
		{name: "max times", env: Envelope{CreatedAt: math.MaxInt64, ExpiresAt: math.MaxInt64}},
		{name: "namespace version", env: Envelope{CreatedAt: created, NsVersion: nsVersion, Payload: []byte("x")}},
		{name: "max namespace version", env: Envelope{NsVersion: math.MaxUint64}},
		{name: "compressed", env: Envelope{Codec: 1, CreatedAt: created, Payload: compressible}, compressAbove: 64, wantCompressed: true},
		{name: "compressed at threshold", env: Envelope{Payload: compressible}, compressAbove: len(compressible), wantCompressed: true},
		{name: "below threshold", env: Envelope{Payload: compressible}, compressAbove: len(compressible) + 1},
		{name: "compression off", env: Envelope{Payload: compressible}, compressAbove: 0},
		{name: "incompressible", env: Envelope{Payload: incompressible}, compressAbove: 1},
		{name: "tiny payload", env: Envelope{Payload: []byte("ab")}, compressAbove: 1},
		{name: "empty payload", env: Envelope{Payload: []byte{}}, compressAbove: 1},
		{name: "compressed with tags", env: Envelope{Codec: 200, Flags: FlagNegative, NsVersion: nsVersion, Tags: []TagVersion{{"a", 1}}, Payload: compressible}, compressAbove: 1, wantCompressed: true},
		{name: "caller's compressed flag ignored", env: Envelope{Flags: FlagCompressed, Payload: []byte("plain")}},
		{name: "content type", env: Envelope{Codec: 2, CreatedAt: created, ContentType: "application/json; charset=utf-8", Payload: []byte(`{"a":1}`)}},
		{name: "content type with tags", env: Envelope{CreatedAt: created, NsVersion: nsVersion, Tags: []TagVersion{{"a", 1}}, ContentType: "text/plain", Payload: []byte("hi")}},
		{name: "longest content type", env: Envelope{ContentType: "x/" + strings.Repeat("y", MaxContentTypeLen-2)}},
		{name: "compressed with content type", env: Envelope{ContentType: "application/json", Payload: compressible}, compressAbove: 1, wantCompressed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			prefix := []byte("prefix")
			b, err := Encode(slices.Clone(prefix), &tt.env, tt.compressAbove)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b, prefix) {
				t.Fatalf("Encode did not append: % x", b)
			}
			b = b[len(prefix):]
			got, err := Decode(b, 0)
			if err != nil {
				t.Fatalf("Decode(% x): %v", b, err)
			}
			if !equal(got, tt.env) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tt.env)
			}
			if compressed := got.Flags&FlagCompressed != 0; compressed != tt.wantCompressed {
				t.Fatalf("compressed = %v, want %v", compressed, tt.wantCompressed)
			}
			if wantVersion := map[bool]byte{false: Version, true: VersionContentType}[tt.env.ContentType != ""]; b[2] != wantVersion {
				t.Fatalf("version byte = %d, want %d", b[2], wantVersion)
			}
			if tt.wantCompressed && len(b) >= len(tt.env.Payload) {
				t.Fatalf("compressed envelope of %d bytes for a %d-byte payload", len(b), len(tt.env.Payload))
			}
		})
	}
}

// The layout is part of the contract with readers in other languages, so
// pin it byte by byte.
func TestEncode_Layout(t *testing.T) {
	t.Parallel()
	e := Envelope{Codec: 2, Flags: FlagNegative, CreatedAt: 300, ExpiresAt: 0, NsVersion: 7, Tags: []TagVersion{{"ab", 5}}, Payload: []byte("{}")}
	want := []byte{'T', 'C', 1, 2, 0x02, 0xac, 0x02, 0x00, 0x07, 0x01, 0x02, 'a', 'b', 0x05, 0x02, '{', '}'}
	if got := mustEncode(t, &e, 0); !bytes.Equal(got, want) {
		t.Fatalf("Encode = % x, want % x", got, want)
	}
	// Version 2: the media type sits between the tags and the payload.
	e.Flags, e.ContentType = 0, "a/b"
	want = []byte{'T', 'C', 2, 2, 0x00, 0xac, 0x02, 0x00, 0x07, 0x01, 0x02, 'a', 'b', 0x05, 0x03, 'a', '/', 'b', 0x02, '{', '}'}
	if got := mustEncode(t, &e, 0); !bytes.Equal(got, want) {
		t.Fatalf("Encode = % x, want % x", got, want)
	}
}

func TestEncode_HeaderSize(t *testing.T) {
	t.Parallel()
	ttl := Envelope{Codec: 1, CreatedAt: created, ExpiresAt: created + 3600_000, NsVersion: nsVersion}
	tests := []struct {
		name    string
		env     Envelope
		payload int
		want    int
	}{
		{name: "ttl, 100-byte payload", env: ttl, payload: 100, want: 28},
		{name: "ttl, 1000-byte payload", env: ttl, payload: 1000, want: 29},
		{name: "no ttl, 100-byte payload", env: Envelope{Codec: 1, CreatedAt: created, NsVersion: nsVersion}, payload: 100, want: 23},
		{name: "ttl, small namespace version", env: Envelope{Codec: 1, CreatedAt: created, ExpiresAt: created + 1, NsVersion: 1}, payload: 100, want: 20},
		{
			name:    "ttl, two tags",
			env:     Envelope{Codec: 1, CreatedAt: created, ExpiresAt: created + 1, NsVersion: nsVersion, Tags: []TagVersion{{"users", nsVersion}, {"org:7", nsVersion}}},
			payload: 100,
			want:    28 + 2*(1+5+9),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.env.Payload = make([]byte, tt.payload)
			if got := len(mustEncode(t, &tt.env, 0)) - tt.payload; got != tt.want {
				t.Fatalf("header is %d bytes, want %d", got, tt.want)
			}
		})
	}
}

func TestEncode_Invalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  Envelope
	}{
		{name: "negative created", env: Envelope{CreatedAt: -1}},
		{name: "negative expires", env: Envelope{ExpiresAt: -1}},
		{name: "unknown flag", env: Envelope{Flags: 1 << 2}},
		{name: "too many tags", env: Envelope{Tags: slices.Repeat([]TagVersion{{"t", 1}}, MaxTags+1)}},
		{name: "empty tag", env: Envelope{Tags: []TagVersion{{"", 1}}}},
		{name: "long tag", env: Envelope{Tags: []TagVersion{{strings.Repeat("t", MaxTagLen+1), 1}}}},
		{name: "long content type", env: Envelope{ContentType: "x/" + strings.Repeat("y", MaxContentTypeLen-1)}},
		{name: "content type with a newline", env: Envelope{ContentType: "text/plain\r\nX-Evil: 1"}},
		{name: "content type not ASCII", env: Envelope{ContentType: "text/plain; x=\u00e9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dst := []byte("keep")
			got, err := Encode(dst, &tt.env, 0)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Encode error = %v, want ErrInvalid", err)
			}
			if string(got) != "keep" {
				t.Fatalf("Encode changed dst to %q", got)
			}
		})
	}
}

// Every proper prefix of a valid envelope must be rejected as corrupt:
// Redis never returns part of a value, so a short one is damage.
func TestDecode_Truncated(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		env           Envelope
		compressAbove int
	}{
		{name: "plain", env: Envelope{Codec: 1, CreatedAt: created, ExpiresAt: created + 1, NsVersion: nsVersion, Tags: []TagVersion{{"users", 300}, {"org:7", nsVersion}}, Payload: []byte("payload")}},
		{name: "compressed", env: Envelope{Codec: 2, CreatedAt: created, Tags: []TagVersion{{"a", 1}}, Payload: compressible}, compressAbove: 1},
		{name: "empty payload", env: Envelope{CreatedAt: created}},
		{name: "content type", env: Envelope{Codec: 2, CreatedAt: created, Tags: []TagVersion{{"a", 1}}, ContentType: "application/json", Payload: []byte("{}")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := mustEncode(t, &tc.env, tc.compressAbove)
			for i := range len(b) {
				_, err := Decode(b[:i], 0)
				var ce *CorruptError
				if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) {
					t.Fatalf("Decode of the first %d of %d bytes: error = %v, want ErrCorrupt", i, len(b), err)
				}
			}
		})
	}
}

func TestDecode_Errors(t *testing.T) {
	t.Parallel()
	valid := mustEncode(t, &Envelope{Codec: 1, CreatedAt: created, Payload: []byte("abc")}, 0)
	with := func(i int, c byte) []byte { b := slices.Clone(valid); b[i] = c; return b }
	header := []byte{'T', 'C', 1, 1, 0}
	build := func(parts ...[]byte) []byte { return slices.Concat(append([][]byte{header}, parts...)...) }
	bomb := []byte{0x80, 0x80, 0x80, 0x80, 0x0f, 0x00} // a Snappy block claiming 4 GiB
	compressedHeader := []byte{'T', 'C', 1, 1, byte(FlagCompressed), 0, 0, 0, 0}
	big := mustEncode(t, &Envelope{Payload: compressible}, 1)
	v2 := func(rest ...byte) []byte { return slices.Concat([]byte{'T', 'C', 2, 1, 0, 0, 0, 0, 0}, rest) }
	tests := []struct {
		name       string
		in         []byte
		maxPayload int
		want       error
		reason     string
	}{
		{name: "empty", in: nil, want: ErrCorrupt, reason: "no magic"},
		{name: "bad magic", in: with(0, 'X'), want: ErrCorrupt, reason: "no magic"},
		{name: "plain string", in: []byte("hello world"), want: ErrCorrupt, reason: "no magic"},
		{name: "version 0", in: with(2, 0), want: ErrVersion},
		{name: "version 3", in: with(2, 3), want: ErrVersion},
		{name: "short version 3", in: []byte{'T', 'C', 3}, want: ErrVersion},
		{name: "version 2 without content type", in: with(2, 2), want: ErrCorrupt, reason: "truncated payload length"},
		{name: "version 2 empty content type", in: v2(0), want: ErrCorrupt, reason: "content type of 0 bytes"},
		{name: "version 2 long content type", in: v2(0x80, 0x02), want: ErrCorrupt, reason: "content type of 256 bytes"},
		{name: "version 2 content type past end", in: v2(0x05, 'a'), want: ErrCorrupt, reason: "truncated content type"},
		{name: "version 2 content type with a newline", in: v2(0x02, '\r', '\n', 0x00), want: ErrCorrupt, reason: "printable ASCII"},
		{name: "unknown flag", in: with(4, 0x04), want: ErrCorrupt, reason: "unknown flags"},
		{name: "high flag", in: with(4, 0x80), want: ErrCorrupt, reason: "unknown flags"},
		{name: "trailing byte", in: append(slices.Clone(valid), 0), want: ErrCorrupt, reason: "bytes after the payload"},
		{name: "created overflows", in: build([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}), want: ErrCorrupt, reason: "overflows"},
		{name: "created beyond int64", in: build([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, []byte{0, 0, 0, 0}), want: ErrCorrupt, reason: "out of range"},
		{name: "long form varint", in: build([]byte{0x80, 0x00}, []byte{0, 0, 0, 0}), want: ErrCorrupt, reason: "shortest form"},
		{name: "namespace version overflows", in: build([]byte{0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}), want: ErrCorrupt, reason: "namespace version overflows"},
		{name: "too many tags", in: build([]byte{0, 0, 0, MaxTags + 1}), want: ErrCorrupt, reason: "65 tags"},
		{name: "huge tag count", in: build([]byte{0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}), want: ErrCorrupt, reason: "tags"},
		{name: "empty tag", in: build([]byte{0, 0, 0, 1, 0, 1, 0}), want: ErrCorrupt, reason: "tag name of 0 bytes"},
		{name: "long tag", in: build([]byte{0, 0, 0, 1, 0x81, 0x08}), want: ErrCorrupt, reason: "tag name of 1025 bytes"},
		{name: "tag past end", in: build([]byte{0, 0, 0, 1, 0x05, 'a'}), want: ErrCorrupt, reason: "truncated tag name"},
		{name: "payload length too long", in: build([]byte{0, 0, 0, 0, 0x05, 'a'}), want: ErrCorrupt, reason: "truncated payload"},
		{name: "payload length huge", in: build([]byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}), want: ErrCorrupt, reason: "truncated payload"},
		{name: "bad compressed block", in: append(slices.Concat(compressedHeader, []byte{3}), 0x05, 0xff, 0xff), want: ErrCorrupt, reason: "bad compressed payload"},
		{name: "bad compressed length", in: append(slices.Concat(compressedHeader, []byte{1}), 0x80), want: ErrCorrupt, reason: "bad compressed length"},
		{name: "empty compressed", in: slices.Concat(compressedHeader, []byte{0}), want: ErrCorrupt, reason: "bad compressed length"},
		{name: "decompression bomb", in: slices.Concat(compressedHeader, []byte{byte(len(bomb))}, bomb), want: ErrCorrupt, reason: "claim to hold"},
		{name: "payload over limit", in: valid, maxPayload: 2, want: ErrTooLarge},
		{name: "uncompressed over limit", in: big, maxPayload: len(compressible) - 1, want: ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Decode(tt.in, tt.maxPayload)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode(% x) error = %v, want %v", tt.in, err, tt.want)
			}
			if !strings.Contains(fmt.Sprint(err), tt.reason) {
				t.Fatalf("Decode(% x) error = %q, want it to mention %q", tt.in, err, tt.reason)
			}
			if errors.Is(err, ErrCorrupt) != (tt.want == ErrCorrupt) {
				t.Fatalf("error %v matches ErrCorrupt = %v", err, errors.Is(err, ErrCorrupt))
			}
		})
	}
}

func TestDecode_Aliasing(t *testing.T) {
	t.Parallel()
	b := mustEncode(t, &Envelope{Payload: []byte("abc")}, 0)
	e, err := Decode(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	if &e.Payload[0] != &b[len(b)-3] {
		t.Error("an uncompressed payload was copied")
	}
	if cap(e.Payload) != len(e.Payload) {
		t.Error("an aliased payload has spare capacity, so appending to it could write into b")
	}

	b = mustEncode(t, &Envelope{Payload: compressible}, 1)
	e, err = Decode(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.Payload[0] = 'X'
	if again, _ := Decode(b, 0); again.Payload[0] == 'X' {
		t.Error("a decompressed payload shares memory with b")
	}
}

func TestDecode_ZeroAllocs(t *testing.T) { // not parallel: AllocsPerRun
	b := mustEncode(t, &Envelope{Codec: 1, CreatedAt: created, ExpiresAt: created + 1, Payload: make([]byte, 256)}, 0)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := Decode(b, 0); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("Decode of an untagged, uncompressed envelope allocated %v times", n)
	}
	e := Envelope{Codec: 1, CreatedAt: created, Tags: []TagVersion{{"a", 1}}, Payload: compressible}
	dst := make([]byte, 0, 2*len(compressible)+256)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := Encode(dst, &e, 1); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("Encode into a large enough buffer allocated %v times", n)
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, bc := range benchCases() {
		b.Run(bc.name, func(b *testing.B) {
			dst := make([]byte, 0, 2*len(bc.env.Payload)+256)
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.env.Payload)))
			for b.Loop() {
				var err error
				if dst, err = Encode(dst[:0], &bc.env, bc.compressAbove); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, bc := range benchCases() {
		enc := mustEncode(b, &bc.env, bc.compressAbove)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.env.Payload)))
			for b.Loop() {
				if _, err := Decode(enc, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type benchCase struct {
	name          string
	env           Envelope
	compressAbove int
}

func benchCases() []benchCase {
	tags := []TagVersion{{"users", nsVersion}, {"org:7", nsVersion + 1}}
	json4k := compressible[:4096]
	return []benchCase{
		{name: "payload=128B,tags=0,compress=off", env: Envelope{Codec: 1, CreatedAt: created, ExpiresAt: created + 1, NsVersion: nsVersion, Payload: compressible[:128]}},
		{name: "payload=128B,tags=2,compress=off", env: Envelope{Codec: 1, CreatedAt: created, ExpiresAt: created + 1, NsVersion: nsVersion, Tags: tags, Payload: compressible[:128]}},
		{name: "payload=4KiB,tags=0,compress=off", env: Envelope{Codec: 1, CreatedAt: created, Payload: json4k}},
		{name: "payload=4KiB,tags=0,compress=s2", env: Envelope{Codec: 1, CreatedAt: created, Payload: json4k}, compressAbove: 1024},
		{name: "payload=4KiB-random,tags=0,compress=s2", env: Envelope{Codec: 1, CreatedAt: created, Payload: incompressible}, compressAbove: 1024},
	}
}

func TestIncompressible(t *testing.T) {
	random := make([]byte, 4096)
	_, _ = rand.Read(random)
	text := []byte(strings.Repeat(`{"id":1234,"name":"Ada Lovelace","email":"ada@example.com","tags":["math","engines"]} `, 40))
	prose := []byte(strings.Repeat("The quick brown fox jumps over the lazy dog, then naps in the sun. ", 30))
	for _, tc := range []struct {
		name string
		p    []byte
		want bool
	}{
		{"random 1 KiB", random[:1024], true},
		{"random 4 KiB", random, true},
		{"random 256 B", random[:256], true},
		{"random too short to judge", random[:255], false},
		{"JSON", text, false},
		{"prose", prose, false},
		{"zeros", make([]byte, 2048), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Incompressible(tc.p); got != tc.want {
				t.Fatalf("Incompressible(%d bytes) = %v, want %v", len(tc.p), got, tc.want)
			}
		})
	}
}

// TestEncode_SkipsIncompressible: random payloads are stored as they are,
// compressible ones of the same size compressed, and both decode back.
func TestEncode_SkipsIncompressible(t *testing.T) {
	random := make([]byte, 2048)
	_, _ = rand.Read(random)
	text := []byte(strings.Repeat("tiercache warms the cache before it is asked. ", 50))
	for _, tc := range []struct {
		name       string
		p          []byte
		compressed bool
	}{{"random", random, false}, {"text", text, true}} {
		b, err := Encode(nil, &Envelope{CreatedAt: 1, Payload: tc.p}, 1024)
		if err != nil {
			t.Fatal(err)
		}
		e, err := Decode(b, 0)
		if err != nil || !bytes.Equal(e.Payload, tc.p) {
			t.Fatalf("%s: decode: %v", tc.name, err)
		}
		if got := e.Flags&FlagCompressed != 0; got != tc.compressed {
			t.Fatalf("%s: compressed %v, want %v", tc.name, got, tc.compressed)
		}
		if cap(b) > len(b)+len(tc.p)/2+64 && !tc.compressed {
			t.Fatalf("%s: %d bytes of capacity for %d", tc.name, cap(b), len(b))
		}
	}
}
