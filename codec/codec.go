// Package codec turns cached values into bytes and back.
//
// Every value tiercache stores carries the ID of the codec that produced it,
// so a reader can decode it without knowing how it was written. Three codecs
// are built in: MsgPack (the default), JSON (for values other languages read)
// and Raw (bytes and strings stored as they are). Applications may add their
// own through a Registry, and Rules choose a codec from a key.
package codec

import (
	"errors"
	"fmt"
)

// Codec turns values into bytes and back. Implementations must be safe for
// concurrent use.
type Codec interface {
	// ID is stored with every value so that a reader knows how to decode
	// it. 0 is Raw, 1 MsgPack and 2 JSON; 3 to 127 are reserved for
	// tiercache and 128 to 255 are free for applications.
	ID() byte
	// Name identifies the codec in configuration and Rules, for example
	// "msgpack".
	Name() string
	// Marshal returns the encoding of v. The result is owned by the
	// caller.
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into the value v points to. It must not keep
	// data after it returns.
	Unmarshal(data []byte, v any) error
}

// IDs of the built-in codecs.
const (
	IDRaw     byte = 0
	IDMsgPack byte = 1
	IDJSON    byte = 2
)

// IDs from FirstUserID to 255 belong to codecs supplied by applications; the
// IDs below it are reserved for tiercache.
const FirstUserID byte = 128

// Names of the built-in codecs.
const (
	NameRaw     = "raw"
	NameMsgPack = "msgpack"
	NameJSON    = "json"
)

var (
	// ErrUnknownCodec is returned when a codec name or ID is not known.
	ErrUnknownCodec = errors.New("codec: unknown codec")
	// ErrUnsupportedType is returned when a codec cannot handle the Go type
	// it is given, for example Raw asked to marshal an int.
	ErrUnsupportedType = errors.New("codec: unsupported type")
)

// ByName returns a new instance of the built-in codec called name: "raw",
// "msgpack" or "json". Names are case-sensitive. Any other name yields an
// error matching ErrUnknownCodec.
func ByName(name string) (Codec, error) {
	switch name {
	case NameRaw:
		return Raw(), nil
	case NameMsgPack:
		return MsgPack(), nil
	case NameJSON:
		return JSON(), nil
	}
	return nil, unknownName(name)
}

func unknownName(name string) error {
	return fmt.Errorf("%w %q", ErrUnknownCodec, name)
}
