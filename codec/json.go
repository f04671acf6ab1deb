package codec

import (
	"encoding/json"
	"fmt"
)

// JSON returns the JSON codec (ID 2), built on encoding/json. Values under
// the default Rules use it so that programs in other languages can read
// them. Numbers decoded into an interface become float64, as with
// encoding/json.
func JSON() Codec { return jsonCodec{} }

type jsonCodec struct{}

func (jsonCodec) ID() byte     { return IDJSON }
func (jsonCodec) Name() string { return NameJSON }

func (jsonCodec) Marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("codec: json: %w", err)
	}
	return b, nil
}

func (jsonCodec) Unmarshal(data []byte, v any) error {
	// encoding/json validates the whole input before it allocates, and
	// limits nesting, so hostile bytes cost at most linear work.
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("codec: json: %w", err)
	}
	return nil
}
