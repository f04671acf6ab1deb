package tiercache

import (
	"encoding/json"
	"fmt"
	"mime"
	"strings"

	"github.com/tiercache/tiercache/codec"
	"github.com/tiercache/tiercache/internal/envelope"
)

// rawValue reports whether a value to write is a Raw (or a non-nil *Raw).
func rawValue(v any) (Raw, bool) {
	switch r := v.(type) {
	case Raw:
		return r, true
	case *Raw:
		if r != nil {
			return *r, true
		}
	}
	return Raw{}, false
}

// rawCodec checks a Raw value to write and returns its codec: the codec
// must be registered, the payload valid for it (checked for json and
// msgpack), and the media type valid.
func (c *Cache) rawCodec(r Raw) (codec.Codec, error) {
	if err := CheckContentType(r.ContentType); err != nil {
		return nil, err
	}
	name := r.Codec
	if name == "" {
		name = codec.NameRaw
	}
	cd, err := c.reg.ByName(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidValue, err)
	}
	switch cd.ID() {
	case codec.IDJSON:
		if !json.Valid(r.Data) {
			return nil, fmt.Errorf("%w: the payload is not valid JSON", ErrInvalidValue)
		}
	case codec.IDMsgPack:
		var v any
		if err := cd.Unmarshal(r.Data, &v); err != nil {
			return nil, fmt.Errorf("%w: the payload is not one MessagePack object: %w", ErrInvalidValue, err)
		}
	}
	return cd, nil
}

// CheckContentType reports whether ct can be stored as Raw.ContentType:
// empty, or a type/subtype media type, with parameters, that
// mime.ParseMediaType accepts, of at most 255 bytes of printable ASCII. The error matches ErrInvalidValue.
func CheckContentType(ct string) error {
	if ct == "" {
		return nil
	}
	if len(ct) > envelope.MaxContentTypeLen {
		return fmt.Errorf("%w: a content type of %d bytes, at most %d", ErrInvalidValue, len(ct), envelope.MaxContentTypeLen)
	}
	for i := 0; i < len(ct); i++ {
		if ct[i] < 0x20 || ct[i] > 0x7e {
			return fmt.Errorf("%w: the content type holds a byte outside printable ASCII", ErrInvalidValue)
		}
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("%w: content type %q: %w", ErrInvalidValue, ct, err)
	}
	// ParseMediaType also takes a lone token, as Content-Disposition has.
	if typ, sub, ok := strings.Cut(mt, "/"); !ok || typ == "" || sub == "" {
		return fmt.Errorf("%w: content type %q is not type/subtype", ErrInvalidValue, ct)
	}
	return nil
}
