package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func TestMsgPack_CompactInts(t *testing.T) {
	t.Parallel()
	c := MsgPack()
	tests := []struct {
		in   any
		want []byte
	}{
		{in: int64(5), want: []byte{0x05}},
		{in: int64(-1), want: []byte{0xff}},
		{in: int64(300), want: []byte{0xcd, 0x01, 0x2c}},
		{in: uint64(70000), want: []byte{0xce, 0x00, 0x01, 0x11, 0x70}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.in), func(t *testing.T) {
			t.Parallel()
			got, err := c.Marshal(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("Marshal(%v) = % x, want % x", tt.in, got, tt.want)
			}
		})
	}
}

// Integers decoded into an interface are int64 or uint64 and floats are
// float64, whatever width they were written with. Compact encoding writes
// integers from 128 up as unsigned.
func TestMsgPack_InterfaceNumbers(t *testing.T) {
	t.Parallel()
	c := MsgPack()
	b, err := c.Marshal(map[string]any{"small": 1, "big": int64(1) << 40, "neg": -3, "f": 1.5, "u": uint64(1) << 63})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := c.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"small": int64(1), "big": uint64(1) << 40, "neg": int64(-3), "f": 1.5, "u": uint64(1) << 63}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v, want %#v", got, want)
	}
}

func TestMsgPack_Errors(t *testing.T) {
	t.Parallel()
	c := MsgPack()
	if _, err := c.Marshal(make(chan int)); err == nil || !strings.HasPrefix(err.Error(), "codec: msgpack: ") {
		t.Errorf("Marshal(chan) error = %v, want one starting with \"codec: msgpack: \"", err)
	}
	var s string
	if err := c.Unmarshal([]byte{0x05}, &s); err == nil {
		t.Error("Unmarshal of an int into a string succeeded")
	}
	if err := c.Unmarshal([]byte{0xa1, 'x'}, s); err == nil {
		t.Error("Unmarshal into a non-pointer succeeded")
	}
}

// allocated returns the bytes allocated while f runs. Callers must not run
// in parallel with other tests.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Each input is malformed. Left to msgpack v5.4.1 alone, most of them make
// it allocate gigabytes before it notices the input is short, recurse
// without bound, or panic.
func TestMsgPack_HostileInput(t *testing.T) { // not parallel: measures allocation
	huge := []byte{0xff, 0xff, 0xff, 0xff}
	extAsMap := []byte{0x81, 0xa1, 'k', 0xdd, 0xff, 0xff, 0xff, 0xff} // {"k": [4G elements]}
	deep := append(bytes.Repeat([]byte{0x91}, maxMsgpackDepth+10), 0xc0)
	tests := []struct {
		name   string
		in     []byte
		target func() any
	}{
		{name: "array32 into any", in: append([]byte{0xdd}, huge...), target: func() any { return new(any) }},
		{name: "map32 into map", in: append([]byte{0xdf}, huge...), target: func() any { return new(map[string]any) }},
		{name: "array32 into slice", in: append([]byte{0xdd}, huge...), target: func() any { return new([]int64) }},
		{name: "array32 into strings", in: append([]byte{0xdd}, huge...), target: func() any { return new([]string) }},
		{name: "map16 into map", in: []byte{0xde, 0xff, 0xff}, target: func() any { return new(map[string]string) }},
		{name: "str32", in: append([]byte{0xdb}, huge...), target: func() any { return new(string) }},
		{name: "bin32", in: append([]byte{0xc6}, huge...), target: func() any { return new([]byte) }},
		{name: "ext32", in: append([]byte{0xc9}, huge...), target: func() any { return new(any) }},
		{name: "extension read as map", in: append([]byte{0xd7, 0x05}, extAsMap...), target: func() any { return new(map[string]any) }},
		{name: "timestamp read as map", in: append([]byte{0xd7, 0xff}, extAsMap...), target: func() any { return new(map[string]any) }},
		{
			name:   "timestamp read as map field",
			in:     append([]byte{0x81, 0xa6, 'l', 'a', 'b', 'e', 'l', 's', 0xd7, 0xff}, extAsMap...),
			target: func() any { return new(user) },
		},
		{name: "nested too deep", in: deep, target: func() any { return new(any) }},
		{name: "trailing bytes", in: []byte{0x01, 0x02}, target: func() any { return new(int) }},
		{name: "reserved code", in: []byte{0xc1}, target: func() any { return new(any) }},
		{name: "empty", in: nil, target: func() any { return new(any) }},
		{name: "nil into time field", in: []byte{0x81, 0xaa, 'c', 'r', 'e', 'a', 't', 'e', 'd', '_', 'a', 't', 0xc0}, target: func() any { return new(user) }},
		{name: "truncated float", in: []byte{0xcb, 0x00}, target: func() any { return new(float64) }},
	}
	c := MsgPack()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			n := allocated(func() { err = c.Unmarshal(tt.in, tt.target()) })
			if err == nil {
				t.Error("Unmarshal succeeded")
			} else if !strings.HasPrefix(err.Error(), "codec: msgpack: ") {
				t.Errorf("error %q does not start with \"codec: msgpack: \"", err)
			}
			if n > 1<<20 {
				t.Errorf("Unmarshal of %d bytes allocated %d bytes", len(tt.in), n)
			}
		})
	}
}

// The guard against extension data read as a map must not reject genuine
// extensions whose data happens to start with a map code.
func TestMsgPack_TimestampsLookingLikeMaps(t *testing.T) {
	t.Parallel()
	type event struct {
		At    time.Time         `json:"at"`
		Attrs map[string]string `json:"attrs"`
		Any   map[string]any    `json:"any"`
	}
	c := MsgPack()
	for _, first := range []byte{0x80, 0x81, 0x8f, 0xde, 0xdf} {
		// The 8-byte timestamp keeps nanoseconds in its top 30 bits.
		at := time.Unix(1_700_000_000, int64(first)<<22).UTC()
		in := event{At: at, Attrs: map[string]string{"a": "b"}, Any: map[string]any{"at": at}}
		b, err := c.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, []byte{0xd7, 0xff, first}); i < 0 {
			t.Fatalf("encoding % x holds no timestamp starting with 0x%02x", b, first)
		}
		var out event
		if err := c.Unmarshal(b, &out); err != nil {
			t.Fatalf("timestamp starting with 0x%02x: %v", first, err)
		}
		got, _ := out.Any["at"].(time.Time)
		if !out.At.Equal(at) || !got.Equal(at) || out.Attrs["a"] != "b" {
			t.Fatalf("timestamp starting with 0x%02x: got %+v, want %+v", first, out, in)
		}
	}
}

// point is registered as a MessagePack extension by
// TestMsgPack_RegisteredExtension.
type point struct{ X, Y int32 }

func (p *point) MarshalMsgpack() ([]byte, error) {
	b := binary.BigEndian.AppendUint32(nil, uint32(p.X))
	return binary.BigEndian.AppendUint32(b, uint32(p.Y)), nil
}

func (p *point) UnmarshalMsgpack(b []byte) error {
	if len(b) != 8 {
		return errors.New("point: want 8 bytes")
	}
	p.X, p.Y = int32(binary.BigEndian.Uint32(b)), int32(binary.BigEndian.Uint32(b[4:]))
	return nil
}

// label is registered with a decoder that reads its extension data as
// MessagePack values, which MsgPack refuses.
type label struct{ S string }

func TestMsgPack_RegisteredExtension(t *testing.T) { // not parallel: msgpack's extension registry is global
	const pointID, labelID = 42, 43
	msgpack.RegisterExt(pointID, (*point)(nil))
	msgpack.RegisterExtEncoder(labelID, label{}, func(_ *msgpack.Encoder, v reflect.Value) ([]byte, error) {
		return msgpack.Marshal(v.Interface().(label).S)
	})
	msgpack.RegisterExtDecoder(labelID, label{}, func(d *msgpack.Decoder, v reflect.Value, _ int) error {
		s, err := d.DecodeString()
		v.Set(reflect.ValueOf(label{S: s}))
		return err
	})
	t.Cleanup(func() {
		msgpack.UnregisterExt(pointID)
		msgpack.UnregisterExt(labelID)
	})
	c := MsgPack()

	type shape struct {
		At   point          `json:"at"`
		Tags map[string]int `json:"tags"`
	}
	in := shape{At: point{X: -0x7f000000, Y: 3}, Tags: map[string]int{"a": 1}} // data starts with 0x81
	b, err := c.Marshal(&in)                                                   // msgpack calls pointer methods only on addressable values
	if err != nil {
		t.Fatal(err)
	}
	var out shape
	if err := c.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("got %+v, want %+v", out, in)
	}

	b, err = c.Marshal(label{S: "x"})
	if err != nil {
		t.Fatal(err)
	}
	var l label
	if err := c.Unmarshal(b, &l); !errors.Is(err, errExtAsValue) {
		t.Fatalf("Unmarshal of an extension read as values: error = %v, want errExtAsValue", err)
	}
}

func TestMsgPack_Concurrent(t *testing.T) {
	t.Parallel()
	c := MsgPack()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				in := sampleUser()
				in.ID = int64(g*1000 + i)
				in.Name = strings.Repeat("n", i*50) // some values outgrow the pools
				b, err := c.Marshal(in)
				if err != nil {
					t.Error(err)
					return
				}
				var out user
				if err := c.Unmarshal(b, &out); err != nil {
					t.Error(err)
					return
				}
				if !reflect.DeepEqual(in, out.inUTC()) {
					t.Errorf("goroutine %d: got %+v, want %+v", g, out, in)
					return
				}
			}
		})
	}
	wg.Wait()
}

// checkMsgpack must accept everything msgpack writes, in every width of
// every type.
func TestCheckMsgpack_AcceptsValid(t *testing.T) {
	t.Parallel()
	values := map[string]any{
		"ints":    []any{0, 127, 128, -32, -33, 255, 256, 65535, 65536, int64(-1) << 40, uint64(1) << 63},
		"floats":  []any{float32(1.5), 2.5},
		"consts":  []any{nil, true, false},
		"time4":   time.Unix(1, 0),
		"time8":   time.Unix(1, 5),
		"time12":  time.Unix(1<<35, 5),
		"nested":  map[string]any{"a": []any{map[string]any{"b": []any{}}}},
		"array16": make([]int, 16),
		"map16": func() map[string]int {
			m := map[string]int{}
			for i := range 16 {
				m[fmt.Sprint(i)] = i
			}
			return m
		}(),
	}
	for _, n := range []int{0, 31, 32, 255, 256, 65535, 65536} {
		values[fmt.Sprintf("str%d", n)] = strings.Repeat("s", n)
		values[fmt.Sprintf("bin%d", n)] = bytes.Repeat([]byte{0xdd}, n)
	}
	values["array32"] = make([]bool, 65536)
	m := make(map[int]bool, 65536)
	for i := range 65536 {
		m[i] = true
	}
	values["map32"] = m
	for name, v := range values {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := checkMsgpack(b); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
