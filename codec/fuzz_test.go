package codec

import (
	"testing"
	"time"
)

// fuzzTarget has a field of every kind the decoders treat differently.
type fuzzTarget struct {
	User    user                      `json:"user"`
	Users   []user                    `json:"users"`
	ByName  map[string]*user          `json:"by_name"`
	Nested  map[string]map[string]int `json:"nested"`
	Matrix  [][]float64               `json:"matrix"`
	Fixed   [4]int16                  `json:"fixed"`
	Blob    []byte                    `json:"blob"`
	Any     any                       `json:"any"`
	Anys    []any                     `json:"anys"`
	When    *time.Time                `json:"when"`
	Flag    bool                      `json:"flag"`
	Counter uint32                    `json:"counter"`
}

// FuzzCodecs feeds arbitrary bytes to MsgPack and JSON. Decoding must never
// panic or exhaust memory, and whatever decodes into an interface must
// encode and decode again.
func FuzzCodecs(f *testing.F) {
	mp, js := MsgPack(), JSON()
	u := sampleUser()
	when := u.CreatedAt
	rich := fuzzTarget{
		User: u, Users: []user{u, {}}, ByName: map[string]*user{"ada": &u},
		Nested: map[string]map[string]int{"a": {"b": 1}}, Matrix: [][]float64{{1, 2}, {}},
		Blob: []byte{0, 1, 2}, Any: map[string]any{"k": []any{1, "x"}}, Anys: []any{nil, true, 1.5},
		When: &when, Flag: true, Counter: 7,
	}
	for _, c := range []Codec{mp, js} {
		for _, v := range []any{u, rich, map[string]any{"a": 1, "b": []any{"c"}}, []int{1, 2, 3}, "s", nil} {
			b, err := c.Marshal(v)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	for _, b := range [][]byte{
		{0xdd, 0xff, 0xff, 0xff, 0xff},
		{0xdf, 0xff, 0xff, 0xff, 0xff},
		{0xd7, 0xff, 0x81, 0xa1, 'k', 0xdd, 0xff, 0xff, 0xff, 0xff},
		{0x81, 0xa4, 'u', 's', 'e', 'r', 0x81, 0xa6, 'l', 'a', 'b', 'e', 'l', 's', 0xd7, 0xff, 0x81, 0xa1, 'k', 0xdd, 0xff, 0xff, 0xff, 0xff},
		[]byte(`{"user":{"labels":{"a":"b"}},"matrix":[[1e999]]}`),
		[]byte(`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[`),
	} {
		f.Add(b)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		for _, c := range []Codec{mp, js} {
			var m map[string]any
			_ = c.Unmarshal(data, &m)
			var s fuzzTarget
			_ = c.Unmarshal(data, &s)
			var v any
			if c.Unmarshal(data, &v) != nil {
				continue
			}
			b, err := c.Marshal(v)
			if err != nil {
				t.Fatalf("%s: Marshal of decoded %#v: %v", c.Name(), v, err)
			}
			var again any
			if err := c.Unmarshal(b, &again); err != nil {
				t.Fatalf("%s: Unmarshal of re-encoded % x: %v", c.Name(), b, err)
			}
		}
	})
}
