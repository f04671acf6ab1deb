package codec_test

import (
	"bytes"
	"encoding/gob"
	"fmt"

	"github.com/tiercache/tiercache/codec"
)

func ExampleCompileRules() {
	rules, err := codec.CompileRules(nil, append(codec.DefaultRules(),
		codec.Rule{Pattern: "blob:*", Codec: "raw"},
	), "")
	if err != nil {
		panic(err)
	}
	for _, key := range []string{"api:users/42", "v2/config:flags", "blob:avatar/7", "user:42"} {
		fmt.Println(key, "->", rules.For(key).Name())
	}
	// Output:
	// api:users/42 -> json
	// v2/config:flags -> json
	// blob:avatar/7 -> raw
	// user:42 -> msgpack
}

// gobCodec is an application codec built on encoding/gob.
type gobCodec struct{}

func (gobCodec) ID() byte     { return 200 }
func (gobCodec) Name() string { return "gob" }

func (gobCodec) Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	err := gob.NewEncoder(&buf).Encode(v)
	return buf.Bytes(), err
}

func (gobCodec) Unmarshal(data []byte, v any) error {
	return gob.NewDecoder(bytes.NewReader(data)).Decode(v)
}

func ExampleNewRegistry() {
	reg, err := codec.NewRegistry(gobCodec{})
	if err != nil {
		panic(err)
	}
	rules, err := codec.CompileRules(reg, []codec.Rule{{Pattern: "session:*", Codec: "gob"}}, "")
	if err != nil {
		panic(err)
	}
	c := rules.For("session:abc")
	b, _ := c.Marshal(map[string]int{"visits": 3})

	// A reader finds the codec from the ID stored with the value.
	byID, _ := reg.ByID(c.ID())
	var got map[string]int
	if err := byID.Unmarshal(b, &got); err != nil {
		panic(err)
	}
	fmt.Println(byID.Name(), got["visits"])

	_, err = codec.NewRegistry(gobCodec{}, gobCodec{})
	fmt.Println(err)
	// Output:
	// gob 3
	// codec: registry: codec "gob" has id 200, which "gob" already uses
}

func ExampleMsgPack() {
	type user struct {
		ID    int    `json:"id"`
		Name  string `json:"name"`
		Email string `json:"email,omitempty"`
	}
	mp := codec.MsgPack()
	b, err := mp.Marshal(user{ID: 42, Name: "Ada"})
	if err != nil {
		panic(err)
	}
	// The json tags name the fields, as they would in JSON.
	var doc map[string]any
	if err := mp.Unmarshal(b, &doc); err != nil {
		panic(err)
	}
	fmt.Println(len(b), "bytes:", doc)
	// Output:
	// 14 bytes: map[id:42 name:Ada]
}
