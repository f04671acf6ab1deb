package codec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Buffers and decoders that grew past this size are dropped instead of
// pooled, so that one large value does not pin memory.
const maxPooledSize = 64 << 10

// MsgPack returns the MessagePack codec (ID 1), the default, built on
// github.com/vmihailenco/msgpack/v5.
//
// Struct fields are named by their msgpack tag, else by their json tag, else
// by the Go field name, so one set of json tags serves both MsgPack and
// JSON. Integers are written in their most compact form, which is unsigned
// for values from 128 up. Decoded into an interface, such integers become
// uint64, smaller ones int64, and floats float64. A time.Time is stored as
// an instant without its zone and comes back in the local time zone.
//
// Unmarshal validates its input before decoding: the data must be exactly
// one MessagePack object, nested at most 10000 deep, whose declared lengths
// fit in the bytes that remain. This bounds what hostile input can make the
// decoder allocate to a multiple of the input's size. A panic inside the
// decoder becomes an error. Extension data is opaque: types registered with
// msgpack.RegisterExt decode as usual, but an extension decoder that reads
// its data through the Decoder's methods gets an error.
func MsgPack() Codec { return &msgpackCodec{} }

type msgpackCodec struct {
	encoders sync.Pool // *msgpackEncoder
	decoders sync.Pool // *msgpackDecoder
}

type msgpackEncoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

type msgpackDecoder struct {
	r   msgpackReader
	dec *msgpack.Decoder
}

func (*msgpackCodec) ID() byte     { return IDMsgPack }
func (*msgpackCodec) Name() string { return NameMsgPack }

func (c *msgpackCodec) Marshal(v any) ([]byte, error) {
	e, _ := c.encoders.Get().(*msgpackEncoder)
	if e == nil {
		e = new(msgpackEncoder)
		e.enc = msgpack.NewEncoder(&e.buf)
		e.enc.SetCustomStructTag("json")
		e.enc.UseCompactInts(true)
	}
	if err := catchPanic(func() error { return e.enc.Encode(v) }); err != nil {
		// The encoder may be mid-value; let it go rather than reuse it.
		return nil, fmt.Errorf("codec: %w", err)
	}
	out := bytes.Clone(e.buf.Bytes())
	e.buf.Reset()
	if e.buf.Cap() <= maxPooledSize {
		c.encoders.Put(e)
	}
	return out, nil
}

func (c *msgpackCodec) Unmarshal(data []byte, v any) error {
	extData, err := checkMsgpack(data)
	if err != nil {
		return err
	}
	d, _ := c.decoders.Get().(*msgpackDecoder)
	if d == nil {
		d = &msgpackDecoder{dec: msgpack.NewDecoder(nil)}
	}
	d.r = msgpackReader{b: data, extData: extData}
	// Reset clears the options, so they are set on every use.
	d.dec.Reset(&d.r)
	d.dec.SetCustomStructTag("json")
	d.dec.UseLooseInterfaceDecoding(true)
	if err := catchPanic(func() error { return d.dec.Decode(v) }); err != nil {
		return fmt.Errorf("codec: %w", err)
	}
	consumed := d.r.i
	d.r = msgpackReader{}
	d.dec.Reset(nil)
	if len(data) <= maxPooledSize {
		c.decoders.Put(d)
	}
	if consumed != len(data) {
		return fmt.Errorf("codec: msgpack: %d bytes left after the value", len(data)-consumed)
	}
	return nil
}

// catchPanic runs f and turns a panic into an error. msgpack v5.4.1 panics
// on some inputs, for example nil where a time.Time field is expected.
func catchPanic(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("msgpack: panic: %v", r)
		}
	}()
	return f()
}

// errExtAsValue stops the decoder from reading extension data as
// MessagePack. msgpack's DecodeMapLen skips an extension header and then
// reads a map from the extension data; that data was never validated, so
// its lengths could make the decoder allocate gigabytes.
var errExtAsValue = errors.New("msgpack: extension data read as a value")

// msgpackReader is the decoder's input. It refuses a ReadByte at the first
// byte of any non-empty extension data: the decoder's own extension paths
// read that data with Read, so only a read of it as a value reaches there.
type msgpackReader struct {
	b       []byte
	i       int
	extData []int // ascending offsets where extension data starts
}

func (r *msgpackReader) Read(p []byte) (int, error) {
	if r.i >= len(r.b) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := copy(p, r.b[r.i:])
	r.i += n
	return n, nil
}

func (r *msgpackReader) ReadByte() (byte, error) {
	if r.i >= len(r.b) {
		return 0, io.EOF
	}
	if len(r.extData) > 0 {
		if _, found := slices.BinarySearch(r.extData, r.i); found {
			return 0, errExtAsValue
		}
	}
	c := r.b[r.i]
	r.i++
	return c, nil
}

func (r *msgpackReader) UnreadByte() error {
	if r.i == 0 {
		return errors.New("msgpack: UnreadByte at the start of the input")
	}
	r.i--
	return nil
}
