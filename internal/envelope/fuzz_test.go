package envelope

import (
	"bytes"
	"errors"
	"testing"
)

// fuzzMaxPayload keeps decompression small enough for fast fuzzing.
const fuzzMaxPayload = 1 << 20

// FuzzDecode checks that Decode never panics, that every error it returns
// is one of its documented kinds, and that whatever it accepts survives
// Encode and Decode again unchanged.
func FuzzDecode(f *testing.F) {
	for _, tc := range seedEnvelopes() {
		b, err := Encode(nil, &tc.env, tc.compressAbove)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	for _, b := range [][]byte{
		nil,
		[]byte("TC"),
		{'T', 'C', 3, 1, 0, 0, 0, 0, 0},
		{'T', 'C', 2, 1, 0, 0, 0, 0, 0, 0},
		{'T', 'C', 2, 1, 0, 0, 0, 0, 0, 2, '\r', '\n', 0},
		{'T', 'C', 1, 1, 0x04, 0, 0, 0, 0, 0},
		{'T', 'C', 1, 1, 0, 0x80, 0x00, 0, 0, 0, 0},
		{'T', 'C', 1, 1, byte(FlagCompressed), 0, 0, 0, 0, 6, 0x80, 0x80, 0x80, 0x80, 0x0f, 0x00},
		{'T', 'C', 1, 1, byte(FlagCompressed), 0, 0, 0, 0, 4, 0x0a, 0x00, 0x61, 0xfe},
	} {
		f.Add(b)
	}

	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b, fuzzMaxPayload)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Decode error %v is none of ErrCorrupt, ErrVersion, ErrTooLarge", err)
			}
			return
		}
		for _, compressAbove := range []int{0, 1} {
			re, err := Encode(nil, &e, compressAbove)
			if err != nil {
				t.Fatalf("Encode of decoded %+v: %v", e, err)
			}
			got, err := Decode(re, fuzzMaxPayload)
			if err != nil {
				t.Fatalf("Decode of re-encoded % x: %v", re, err)
			}
			if !equal(got, e) {
				t.Fatalf("re-encoding changed the envelope:\n got %+v\nwant %+v", got, e)
			}
			// Shortest-form varints and an exact payload length leave one
			// encoding per uncompressed envelope.
			if compressAbove == 0 && e.Flags&FlagCompressed == 0 && !bytes.Equal(re, b) {
				t.Fatalf("re-encoding is not byte-identical:\n got % x\nwant % x", re, b)
			}
		}
	})
}

// seedEnvelopes returns one envelope of each shape, for the fuzz corpus.
func seedEnvelopes() []benchCase {
	return append(benchCases(),
		benchCase{name: "zero"},
		benchCase{name: "negative", env: Envelope{Codec: 1, Flags: FlagNegative, CreatedAt: created, ExpiresAt: created + 30_000, NsVersion: 1}},
		benchCase{name: "tags", env: Envelope{Codec: 2, CreatedAt: created, NsVersion: nsVersion, Tags: []TagVersion{{"users", 1}, {"org:7", 1 << 40}}, Payload: []byte(`{"id":1}`)}},
		benchCase{name: "compressed tags", env: Envelope{Codec: 200, Tags: []TagVersion{{"a", 1}}, Payload: compressible}, compressAbove: 1},
		benchCase{name: "content type", env: Envelope{Codec: 2, CreatedAt: created, Tags: []TagVersion{{"a", 1}}, ContentType: "application/json; charset=utf-8", Payload: []byte(`{"id":1}`)}},
		benchCase{name: "compressed content type", env: Envelope{ContentType: "text/plain", Payload: compressible}, compressAbove: 1},
	)
}
