package codec

import (
	"errors"
	"strings"
	"testing"
)

// fakeCodec is a user codec with a chosen ID and name.
type fakeCodec struct {
	id   byte
	name string
}

func (f fakeCodec) ID() byte                    { return f.id }
func (f fakeCodec) Name() string                { return f.name }
func (f fakeCodec) Marshal(any) ([]byte, error) { return nil, nil }
func (f fakeCodec) Unmarshal([]byte, any) error { return nil }

func TestNewRegistry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		extra []Codec
		err   string
	}{
		{name: "built-ins only"},
		{name: "user codecs", extra: []Codec{fakeCodec{128, "gob"}, fakeCodec{255, "cbor"}}},
		{name: "nil codec", extra: []Codec{nil}, err: "nil codec"},
		{name: "no name", extra: []Codec{fakeCodec{200, ""}}, err: "has no name"},
		{name: "reserved id", extra: []Codec{fakeCodec{3, "gob"}}, err: "reserved for tiercache"},
		{name: "built-in id", extra: []Codec{fakeCodec{IDJSON, "json2"}}, err: "reserved for tiercache"},
		{name: "duplicate id", extra: []Codec{fakeCodec{200, "a"}, fakeCodec{200, "b"}}, err: `which "a" already uses`},
		{name: "built-in name", extra: []Codec{fakeCodec{200, "json"}}, err: `two codecs are named "json"`},
		{name: "duplicate name", extra: []Codec{fakeCodec{200, "a"}, fakeCodec{201, "a"}}, err: `two codecs are named "a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := NewRegistry(tt.extra...)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "codec: registry: ") {
					t.Fatalf("NewRegistry error = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range append([]Codec{Raw(), MsgPack(), JSON()}, tt.extra...) {
				byID, err := r.ByID(want.ID())
				if err != nil || byID.Name() != want.Name() {
					t.Errorf("ByID(%d) = %v, %v; want %q", want.ID(), byID, err, want.Name())
				}
				byName, err := r.ByName(want.Name())
				if err != nil || byName.ID() != want.ID() {
					t.Errorf("ByName(%q) = %v, %v; want id %d", want.Name(), byName, err, want.ID())
				}
			}
		})
	}
}

func TestRegistry_Unknown(t *testing.T) {
	t.Parallel()
	r, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ByID(3); !errors.Is(err, ErrUnknownCodec) || err.Error() != "codec: unknown codec id 3" {
		t.Errorf("ByID(3) error = %v", err)
	}
	if _, err := r.ByName("xml"); !errors.Is(err, ErrUnknownCodec) || err.Error() != `codec: unknown codec "xml"` {
		t.Errorf(`ByName("xml") error = %v`, err)
	}
}
