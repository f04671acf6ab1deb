package l1

import (
	"encoding/binary"
	"encoding/hex"

	"github.com/cespare/xxhash/v2"
)

// QuotedETag returns the entity tag of the stored value the entry holds,
// in double quotes as an HTTP ETag header carries it: a 64-bit xxHash of
// everything the stored envelope records (codec, negative flag, times,
// namespace and tag versions, media type and the uncompressed payload),
// in 16 hex digits. Every process that reads the same stored value
// computes the same tag, and every write stores a new creation time, so
// the tag changes whenever the value does. It is computed once per entry.
func (e *Entry) QuotedETag() string {
	if p := e.etag.Load(); p != nil {
		return *p
	}
	var buf [128]byte
	h := append(buf[:0], e.Codec)
	if e.Negative {
		h = append(h, 1)
	} else {
		h = append(h, 0)
	}
	h = binary.AppendUvarint(h, uint64(e.CreatedAt))
	h = binary.AppendUvarint(h, uint64(e.ExpiresAt))
	h = binary.AppendUvarint(h, e.NsVer)
	h = binary.AppendUvarint(h, uint64(len(e.Tags)))
	for i, t := range e.Tags {
		h = binary.AppendUvarint(h, uint64(len(t)))
		h = append(h, t...)
		if i < len(e.TagVers) {
			h = binary.AppendUvarint(h, e.TagVers[i])
		}
	}
	h = binary.AppendUvarint(h, uint64(len(e.ContentType)))
	h = append(h, e.ContentType...)
	h = binary.LittleEndian.AppendUint64(h, xxhash.Sum64(e.Payload))
	var out [18]byte
	out[0], out[17] = '"', '"'
	var sum [8]byte
	binary.BigEndian.PutUint64(sum[:], xxhash.Sum64(h))
	hex.Encode(out[1:17], sum[:])
	tag := string(out[:])
	e.etag.CompareAndSwap(nil, &tag)
	return *e.etag.Load()
}

// ETag returns QuotedETag without its quotes.
func (e *Entry) ETag() string {
	q := e.QuotedETag()
	return q[1 : len(q)-1]
}
