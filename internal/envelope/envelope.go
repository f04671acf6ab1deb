// Package envelope defines the versioned wire format of every value
// tiercache stores in its second tier. docs/wire-format.md describes it byte
// by byte.
//
// Layout of version 1 (uvarint is encoding/binary's unsigned varint, in its
// shortest form):
//
//	offset  size     field
//	0       2        magic 'T' 'C' (0x54 0x43)
//	2       1        version (1)
//	3       1        codec ID (see package codec)
//	4       1        flags: bit 0 compressed, bit 1 negative; others zero
//	5       uvarint  created-at, Unix milliseconds
//	.       uvarint  expires-at, Unix milliseconds, 0 = none
//	.       uvarint  namespace version when written
//	.       uvarint  tag count, at most MaxTags
//	.       per tag  uvarint name length (1..MaxTagLen), name, uvarint version
//	.       uvarint  payload length n
//	.       n        payload, running to the last byte of the value
//
// Version 2 is version 1 with one more field between the tags and the
// payload length: the media type the value was stored with (uvarint length
// 1..MaxContentTypeLen, then that many bytes of printable ASCII). Encode
// writes version 2 only for an envelope with a ContentType, so that every
// other value stays readable by version 1 readers.
//
// A compressed payload is a Snappy block written by s2.EncodeSnappy.
package envelope

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"

	"github.com/klauspost/compress/s2"
)

// Version is the wire format version that Encode writes for an envelope
// without a ContentType. Decode reads it and VersionContentType.
const Version byte = 1

// VersionContentType is the version Encode writes for an envelope with a
// ContentType.
const VersionContentType byte = 2

// Magic bytes that open every envelope.
const (
	magic0 = 'T'
	magic1 = 'C'
)

// Limits that bound what Decode accepts from hostile input.
const (
	// MaxTags is the most tags one envelope may carry.
	MaxTags = 64
	// MaxTagLen is the longest tag name, in bytes.
	MaxTagLen = 1024
	// MaxContentTypeLen is the longest ContentType, in bytes.
	MaxContentTypeLen = 255
	// DefaultMaxPayload is the payload limit Decode applies when given
	// maxPayload <= 0: 512 MiB, the largest string Redis stores.
	DefaultMaxPayload = 512 << 20
	// maxExpansion bounds how many bytes a Snappy block of n bytes may
	// claim to decode to. A Snappy copy element of 3 bytes yields at most
	// 64, so no valid block expands more than about 22-fold; the margin
	// leaves room for the length header.
	maxExpansion = 32
)

// Flags describe the payload.
type Flags byte

const (
	// FlagCompressed marks a payload stored as a Snappy block. Encode sets
	// it; Decode reports it but returns the payload decompressed.
	FlagCompressed Flags = 1 << 0
	// FlagNegative marks a cached "not found": the key is known to have no
	// value. Its payload is normally empty.
	FlagNegative Flags = 1 << 1

	knownFlags = FlagCompressed | FlagNegative
)

// TagVersion is the version of a tag when the value was written. A reader
// that finds a tag's current version higher knows the value was
// invalidated.
type TagVersion struct {
	Tag     string
	Version uint64
}

// Envelope is a decoded value. The zero value is a valid, empty envelope
// written with the Raw codec.
type Envelope struct {
	// Codec is the ID of the codec that produced Payload.
	Codec byte
	// Flags describe the payload; see FlagCompressed and FlagNegative.
	Flags Flags
	// CreatedAt is when the value was written, in Unix milliseconds.
	CreatedAt int64
	// ExpiresAt is the logical expiry in Unix milliseconds; 0 means none.
	ExpiresAt int64
	// NsVersion is the namespace version current when the value was
	// written; Clear increments the namespace version.
	NsVersion uint64
	// Tags are the tag versions current when the value was written; nil
	// when there are none.
	Tags []TagVersion
	// ContentType is the media type the value was stored with, such as
	// "application/json"; empty for none. It is at most
	// MaxContentTypeLen bytes of printable ASCII (0x20 to 0x7e).
	ContentType string
	// Payload is the codec output, uncompressed.
	Payload []byte
}

var (
	// ErrCorrupt matches every error Decode returns for bytes that are not
	// a well-formed envelope. The concrete error is a *CorruptError.
	ErrCorrupt = errors.New("envelope: corrupt value")
	// ErrVersion is returned by Decode for an envelope of a version this
	// package does not read.
	ErrVersion = errors.New("envelope: unsupported version")
	// ErrTooLarge is returned by Decode when the payload exceeds the
	// caller's limit.
	ErrTooLarge = errors.New("envelope: payload too large")
	// ErrInvalid is returned by Encode for an envelope it cannot write.
	ErrInvalid = errors.New("envelope: invalid envelope")
)

// CorruptError says where and why Decode rejected a value. It matches
// ErrCorrupt with errors.Is.
type CorruptError struct {
	Offset int    // byte at which decoding failed
	Reason string // what was wrong there
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("envelope: corrupt value at byte %d: %s", e.Offset, e.Reason)
}

// Is reports whether target is ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

func corrupt(at int, reason string) error { return &CorruptError{Offset: at, Reason: reason} }

// Encode appends the encoding of e to dst and returns the extended slice.
//
// The payload is compressed when compressAbove > 0, it is at least
// compressAbove bytes long, it does not look incompressible (see
// Incompressible), and compression makes it smaller; FlagCompressed in the
// output says which happened, whatever e.Flags holds. e.Payload must not
// overlap dst's spare capacity. dst grows at most once.
//
// Encode returns dst unchanged and an error matching ErrInvalid when e has
// negative times, unknown flags, more than MaxTags tags, or a tag name that
// is empty or longer than MaxTagLen.
func Encode(dst []byte, e *Envelope, compressAbove int) ([]byte, error) {
	if err := e.validate(); err != nil {
		return dst, err
	}
	p := e.Payload
	try := compressAbove > 0 && len(p) >= compressAbove && !Incompressible(p)
	// One allocation for the whole value: the header, then room for the
	// payload as it is or for the longest Snappy block of it.
	need := e.headerLen() + uvarintLen(uint64(len(p))) + len(p)
	if try {
		if limit := s2.MaxEncodedLen(len(p)); limit < 0 {
			try = false
		} else {
			need = max(need, e.headerLen()+uvarintLen(uint64(limit))+limit)
		}
	}
	dst = slices.Grow(dst, need)
	flags := e.Flags &^ FlagCompressed
	flagsAt := len(dst) + 4
	version := Version
	if e.ContentType != "" {
		version = VersionContentType
	}
	dst = append(dst, magic0, magic1, version, e.Codec, byte(flags))
	dst = binary.AppendUvarint(dst, uint64(e.CreatedAt))
	dst = binary.AppendUvarint(dst, uint64(e.ExpiresAt))
	dst = binary.AppendUvarint(dst, e.NsVersion)
	dst = binary.AppendUvarint(dst, uint64(len(e.Tags)))
	for _, t := range e.Tags {
		dst = binary.AppendUvarint(dst, uint64(len(t.Tag)))
		dst = append(dst, t.Tag...)
		dst = binary.AppendUvarint(dst, t.Version)
	}
	if e.ContentType != "" {
		dst = binary.AppendUvarint(dst, uint64(len(e.ContentType)))
		dst = append(dst, e.ContentType...)
	}
	if try {
		var ok bool
		if dst, ok = appendCompressed(dst, p); ok {
			dst[flagsAt] |= byte(FlagCompressed)
			return dst, nil
		}
	}
	dst = binary.AppendUvarint(dst, uint64(len(p)))
	return append(dst, p...), nil
}

// headerLen is the length of e's encoding up to the payload length.
func (e *Envelope) headerLen() int {
	n := 5 + uvarintLen(uint64(e.CreatedAt)) + uvarintLen(uint64(e.ExpiresAt)) +
		uvarintLen(e.NsVersion) + uvarintLen(uint64(len(e.Tags)))
	for _, t := range e.Tags {
		n += uvarintLen(uint64(len(t.Tag))) + len(t.Tag) + uvarintLen(t.Version)
	}
	if e.ContentType != "" {
		n += uvarintLen(uint64(len(e.ContentType))) + len(e.ContentType)
	}
	return n
}

// incompressibleSample is the most bytes Incompressible looks at; a
// payload shorter than twice that is never judged: it is cheap to just try.
const incompressibleSample = 128

// Incompressible reports whether p looks like random bytes: compressed,
// encrypted or otherwise high-entropy data that Snappy cannot shrink, so
// that Encode does not spend a compression attempt on it. It looks at up
// to 128 bytes spread evenly over p and stops as soon as more than 64 of
// them are distinct byte values: random data reaches that within about
// 96 bytes (128 random bytes hold about 100 distinct values), while text,
// JSON and msgpack stay far below (printable ASCII has 95 values in all,
// and a sample of text shows 30 to 50). A payload shorter than 256 bytes
// is never judged incompressible. The check can miss compressible data
// made of repeated random blocks; such data is then stored uncompressed,
// which is still correct.
func Incompressible(p []byte) bool {
	const n, limit = incompressibleSample, incompressibleSample / 2
	if len(p) < 2*n {
		return false
	}
	var seen [4]uint64
	step := len(p) / n
	for i := 0; i < n; i += 32 {
		for j := i; j < i+32; j++ {
			b := p[j*step]
			seen[b>>6] |= 1 << (b & 63)
		}
		if bits.OnesCount64(seen[0])+bits.OnesCount64(seen[1])+bits.OnesCount64(seen[2])+bits.OnesCount64(seen[3]) > limit {
			return true
		}
	}
	return false
}

// appendCompressed appends the length-prefixed Snappy block of p to dst if
// it is shorter than p. Otherwise it returns dst as it was and false.
func appendCompressed(dst, p []byte) ([]byte, bool) {
	limit := s2.MaxEncodedLen(len(p))
	if limit < 0 {
		return dst, false
	}
	// Compress straight into dst, past room for the longest length prefix,
	// then slide the block down next to its actual prefix.
	room := uvarintLen(uint64(limit))
	start := len(dst)
	grown := slices.Grow(dst, room+limit)
	block := s2.EncodeSnappy(grown[start+room:start+room+limit], p)
	if len(block) >= len(p) {
		return grown[:start], false
	}
	out := binary.AppendUvarint(grown[:start], uint64(len(block)))
	return append(out, block...), true
}

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

func (e *Envelope) validate() error {
	switch {
	case e.CreatedAt < 0 || e.ExpiresAt < 0:
		return fmt.Errorf("%w: negative time (created %d, expires %d)", ErrInvalid, e.CreatedAt, e.ExpiresAt)
	case e.Flags&^knownFlags != 0:
		return fmt.Errorf("%w: unknown flags %#x", ErrInvalid, byte(e.Flags&^knownFlags))
	case len(e.Tags) > MaxTags:
		return fmt.Errorf("%w: %d tags, at most %d allowed", ErrInvalid, len(e.Tags), MaxTags)
	case len(e.ContentType) > MaxContentTypeLen:
		return fmt.Errorf("%w: content type of %d bytes, at most %d allowed", ErrInvalid, len(e.ContentType), MaxContentTypeLen)
	case !printable(e.ContentType):
		return fmt.Errorf("%w: the content type holds a byte outside printable ASCII", ErrInvalid)
	}
	for _, t := range e.Tags {
		if t.Tag == "" || len(t.Tag) > MaxTagLen {
			return fmt.Errorf("%w: tag name of %d bytes, want 1 to %d", ErrInvalid, len(t.Tag), MaxTagLen)
		}
	}
	return nil
}

// printable reports whether s holds only printable ASCII, 0x20 to 0x7e.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// HasMagic reports whether b begins with the envelope's magic bytes: a
// value without them was not written by tiercache at all.
func HasMagic(b []byte) bool { return len(b) >= 2 && b[0] == magic0 && b[1] == magic1 }

// Decode parses an envelope of version 1 or 2. It never panics. Errors
// match ErrCorrupt for malformed bytes, ErrVersion for another version, and
// ErrTooLarge when the
// uncompressed payload would exceed maxPayload bytes (DefaultMaxPayload when
// maxPayload <= 0); the size is checked before anything is allocated for it.
//
// An uncompressed payload aliases b, so the caller must not modify b while
// it uses the envelope. A compressed one is decompressed into new memory.
func Decode(b []byte, maxPayload int) (Envelope, error) {
	var e Envelope
	if maxPayload <= 0 {
		maxPayload = DefaultMaxPayload
	}
	if len(b) < 2 || b[0] != magic0 || b[1] != magic1 {
		return e, corrupt(0, "no magic bytes")
	}
	if len(b) < 3 {
		return e, corrupt(2, "truncated header")
	}
	version := b[2]
	if version != Version && version != VersionContentType {
		return e, fmt.Errorf("%w %d (this reader reads %d and %d)", ErrVersion, version, Version, VersionContentType)
	}
	if len(b) < 5 {
		return e, corrupt(len(b), "truncated header")
	}
	e.Codec = b[3]
	e.Flags = Flags(b[4])
	if e.Flags&^knownFlags != 0 {
		return Envelope{}, corrupt(4, "unknown flags")
	}

	d := decoder{b: b, i: 5}
	e.CreatedAt = d.time("created-at")
	e.ExpiresAt = d.time("expires-at")
	e.NsVersion = d.uvarint("namespace version")
	if n := d.uvarint("tag count"); n > MaxTags {
		d.fail(fmt.Sprintf("%d tags, at most %d allowed", n, MaxTags))
	} else if n > 0 && d.err == nil {
		e.Tags = make([]TagVersion, n)
		for i := range e.Tags {
			e.Tags[i].Tag = d.tag()
			e.Tags[i].Version = d.uvarint("tag version")
		}
	}
	if version == VersionContentType {
		e.ContentType = d.contentType()
	}
	n := d.uvarint("payload length")
	if d.err != nil {
		return Envelope{}, d.err
	}
	switch rest := uint64(len(b) - d.i); {
	case n > rest:
		return Envelope{}, corrupt(len(b), "truncated payload")
	case n < rest:
		return Envelope{}, corrupt(d.i+int(n), "bytes after the payload")
	}
	p := b[d.i:len(b):len(b)]

	if e.Flags&FlagCompressed == 0 {
		if len(p) > maxPayload {
			return Envelope{}, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(p), maxPayload)
		}
		e.Payload = p
		return e, nil
	}
	size, err := s2.DecodedLen(p)
	switch {
	case err != nil:
		return Envelope{}, corrupt(d.i, "bad compressed length")
	case size > maxExpansion*len(p):
		return Envelope{}, corrupt(d.i, fmt.Sprintf("%d compressed bytes claim to hold %d", len(p), size))
	case size > maxPayload:
		return Envelope{}, fmt.Errorf("%w: %d bytes uncompressed, the limit is %d", ErrTooLarge, size, maxPayload)
	}
	if e.Payload, err = s2.Decode(make([]byte, size), p); err != nil {
		return Envelope{}, corrupt(d.i, "bad compressed payload")
	}
	return e, nil
}

// decoder reads the header fields. After the first failure it keeps
// returning zero values, so that Decode checks for an error once.
type decoder struct {
	b   []byte
	i   int
	err error
}

func (d *decoder) fail(reason string) {
	if d.err == nil {
		d.err = corrupt(d.i, reason)
	}
}

// uvarint reads a uvarint and insists on its shortest form, so that every
// envelope has exactly one encoding for a given compression choice.
func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Uvarint(d.b[d.i:])
	switch {
	case n == 0:
		d.fail("truncated " + field)
		return 0
	case n < 0:
		d.fail(field + " overflows 64 bits")
		return 0
	case n > 1 && d.b[d.i+n-1] == 0:
		d.fail(field + " is not in shortest form")
		return 0
	}
	d.i += n
	return x
}

func (d *decoder) time(field string) int64 {
	x := d.uvarint(field)
	if x > math.MaxInt64 {
		d.fail(field + " out of range")
		return 0
	}
	return int64(x)
}

// contentType reads the media type of a version 2 envelope: never empty,
// so that an envelope without one has only its version 1 encoding.
func (d *decoder) contentType() string {
	n := d.uvarint("content type length")
	switch {
	case d.err != nil:
		return ""
	case n == 0 || n > MaxContentTypeLen:
		d.fail(fmt.Sprintf("content type of %d bytes, want 1 to %d", n, MaxContentTypeLen))
		return ""
	case n > uint64(len(d.b)-d.i):
		d.i = len(d.b)
		d.fail("truncated content type")
		return ""
	}
	s := string(d.b[d.i : d.i+int(n)])
	if !printable(s) {
		d.fail("content type holds a byte outside printable ASCII")
		return ""
	}
	d.i += int(n)
	return s
}

func (d *decoder) tag() string {
	n := d.uvarint("tag length")
	switch {
	case d.err != nil:
		return ""
	case n == 0 || n > MaxTagLen:
		d.fail(fmt.Sprintf("tag name of %d bytes, want 1 to %d", n, MaxTagLen))
		return ""
	case n > uint64(len(d.b)-d.i):
		d.i = len(d.b)
		d.fail("truncated tag name")
		return ""
	}
	s := string(d.b[d.i : d.i+int(n)])
	d.i += int(n)
	return s
}
