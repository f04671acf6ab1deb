package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

// user is a typical cached value. Its json tags name the fields for both
// MsgPack and JSON.
type user struct {
	ID        int64             `json:"id"`
	Name      string            `json:"name"`
	Email     string            `json:"email,omitempty"`
	Roles     []string          `json:"roles"`
	Labels    map[string]string `json:"labels"`
	Manager   *user             `json:"manager,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	Score     float64           `json:"score"`
	Secret    string            `json:"-"`
}

func sampleUser() user {
	return user{
		ID:        42,
		Name:      "Ada",
		Roles:     []string{"admin", "dev"},
		Labels:    map[string]string{"team": "core", "region": "eu"},
		Manager:   &user{ID: 7, Name: "Grace", CreatedAt: time.Unix(1, 0).UTC()},
		CreatedAt: time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC),
		Score:     0.5,
	}
}

// inUTC returns u with its times in UTC: MsgPack does not store a time
// zone, so its times come back in the local one.
func (u user) inUTC() user {
	u.CreatedAt = u.CreatedAt.UTC()
	if u.Manager != nil {
		m := u.Manager.inUTC()
		u.Manager = &m
	}
	return u
}

func TestByName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		wantID byte
		err    string
	}{
		{name: "raw", wantID: IDRaw},
		{name: "msgpack", wantID: IDMsgPack},
		{name: "json", wantID: IDJSON},
		{name: "xml", err: `codec: unknown codec "xml"`},
		{name: "JSON", err: `codec: unknown codec "JSON"`},
		{name: "", err: `codec: unknown codec ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := ByName(tt.name)
			if tt.err != "" {
				if !errors.Is(err, ErrUnknownCodec) || err.Error() != tt.err {
					t.Fatalf("ByName(%q) error = %v, want %q matching ErrUnknownCodec", tt.name, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.ID() != tt.wantID || c.Name() != tt.name {
				t.Fatalf("ByName(%q) = id %d name %q, want id %d", tt.name, c.ID(), c.Name(), tt.wantID)
			}
		})
	}
}

func TestCodecs_RoundTrip(t *testing.T) {
	t.Parallel()
	for _, c := range []Codec{MsgPack(), JSON()} {
		t.Run(c.Name(), func(t *testing.T) {
			t.Parallel()
			in := sampleUser()
			in.Secret = "not stored"
			b, err := c.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			var out user
			if err := c.Unmarshal(b, &out); err != nil {
				t.Fatal(err)
			}
			in.Secret = ""
			if !reflect.DeepEqual(in, out.inUTC()) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", out, in)
			}
		})
	}
}

// Both codecs name fields by their json tags, so a value written by one
// reads back through the other as the same document.
func TestCodecs_SameFieldNames(t *testing.T) {
	t.Parallel()
	in := sampleUser()
	in.Secret = "hidden"
	keys := map[string][]string{}
	for _, c := range []Codec{MsgPack(), JSON()} {
		b, err := c.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := c.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for k := range m {
			keys[c.Name()] = append(keys[c.Name()], k)
		}
		if _, ok := m["Secret"]; ok {
			t.Errorf("%s: field tagged json:\"-\" was stored", c.Name())
		}
		if _, ok := m["email"]; ok {
			t.Errorf("%s: empty field tagged omitempty was stored", c.Name())
		}
		if _, ok := m["created_at"]; !ok {
			t.Errorf("%s: no created_at key in %v", c.Name(), m)
		}
	}
	if len(keys["msgpack"]) != len(keys["json"]) {
		t.Fatalf("msgpack keys %v, json keys %v", keys["msgpack"], keys["json"])
	}
}

func TestRaw(t *testing.T) {
	t.Parallel()
	c := Raw()
	marshal := []struct {
		name string
		in   any
		want []byte
		err  error
	}{
		{name: "bytes", in: []byte("abc"), want: []byte("abc")},
		{name: "nil bytes", in: []byte(nil), want: []byte{}},
		{name: "string", in: "héllo", want: []byte("héllo")},
		{name: "raw json", in: json.RawMessage(`{"a":1}`), want: []byte(`{"a":1}`)},
		{name: "int", in: 5, err: ErrUnsupportedType},
		{name: "nil", in: nil, err: ErrUnsupportedType},
	}
	for _, tt := range marshal {
		t.Run("marshal "+tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := c.Marshal(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Marshal error = %v, want %v", err, tt.err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("Marshal = %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("marshal copies", func(t *testing.T) {
		t.Parallel()
		in := []byte("abc")
		out, _ := c.Marshal(in)
		in[0] = 'X'
		if string(out) != "abc" {
			t.Fatalf("Marshal result changed with its input: %q", out)
		}
	})

	t.Run("unmarshal", func(t *testing.T) {
		t.Parallel()
		data := []byte("payload")
		var b []byte
		var s string
		var r json.RawMessage
		for _, v := range []any{&b, &s, &r} {
			if err := c.Unmarshal(data, v); err != nil {
				t.Fatalf("Unmarshal into %T: %v", v, err)
			}
		}
		data[0] = 'X'
		if string(b) != "payload" || s != "payload" || string(r) != "payload" {
			t.Fatalf("got %q %q %q, want copies of the input", b, s, r)
		}
		var n int
		var nilBytes *[]byte
		for _, v := range []any{&n, nilBytes, nil, b} {
			if err := c.Unmarshal(data, v); !errors.Is(err, ErrUnsupportedType) {
				t.Errorf("Unmarshal into %T: error = %v, want ErrUnsupportedType", v, err)
			}
		}
	})
}

func TestJSON_Errors(t *testing.T) {
	t.Parallel()
	c := JSON()
	if _, err := c.Marshal(make(chan int)); err == nil {
		t.Error("Marshal(chan) succeeded")
	}
	var v map[string]any
	for _, in := range []string{``, `{`, `{"a":1} x`, `[1,2]`} {
		if err := c.Unmarshal([]byte(in), &v); err == nil {
			t.Errorf("Unmarshal(%q) succeeded", in)
		}
	}
}

func BenchmarkCodecs(b *testing.B) {
	in := sampleUser()
	for _, c := range []Codec{MsgPack(), JSON()} {
		data, err := c.Marshal(in)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("codec="+c.Name()+",op=marshal", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.Marshal(in); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		b.Run("codec="+c.Name()+",op=unmarshal", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					var out user
					if err := c.Unmarshal(data, &out); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
