package codec

import (
	"encoding/json"
	"fmt"
)

// Raw returns the raw codec (ID 0). It stores bytes and strings unchanged.
// Marshal accepts []byte, json.RawMessage and string and returns a copy.
// Unmarshal accepts *[]byte, *json.RawMessage and *string and copies the
// data. Any other type yields an error matching ErrUnsupportedType.
func Raw() Codec { return rawCodec{} }

type rawCodec struct{}

func (rawCodec) ID() byte     { return IDRaw }
func (rawCodec) Name() string { return NameRaw }

func (rawCodec) Marshal(v any) ([]byte, error) {
	switch v := v.(type) {
	case []byte:
		return append([]byte{}, v...), nil
	case json.RawMessage:
		return append([]byte{}, v...), nil
	case string:
		return []byte(v), nil
	}
	return nil, fmt.Errorf("%w: raw codec cannot marshal %T", ErrUnsupportedType, v)
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	switch v := v.(type) {
	case *[]byte:
		if v != nil {
			*v = append([]byte{}, data...)
			return nil
		}
	case *json.RawMessage:
		if v != nil {
			*v = append(json.RawMessage{}, data...)
			return nil
		}
	case *string:
		if v != nil {
			*v = string(data)
			return nil
		}
	}
	return fmt.Errorf("%w: raw codec cannot unmarshal into %T", ErrUnsupportedType, v)
}
