package tiercache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/tiercache/tiercache/internal/envelope"
	"github.com/tiercache/tiercache/internal/l2"
)

// Inspection is what Inspect found in L2 under one key: the envelope's
// fields and whether the entry is valid now, with the reason when it is
// not. It reads L2 only, never L1, and changes nothing.
type Inspection struct {
	Key      string `json:"key"`       // the caller's key
	StoreKey string `json:"store_key"` // the key in Redis: "<namespace>:<key>"
	Size     int    `json:"size"`      // bytes stored, envelope included

	// Envelope is false when the stored bytes are not a tiercache
	// envelope (written by another program, or damaged); Reason then says
	// why and Preview shows the start of the bytes.
	Envelope bool   `json:"envelope"`
	Preview  string `json:"preview,omitempty"`

	Version     int            `json:"version,omitempty"` // wire format version
	Codec       string         `json:"codec,omitempty"`   // codec name, or "id N" when unknown
	Compressed  bool           `json:"compressed"`
	Negative    bool           `json:"negative"` // a cached absence
	ContentType string         `json:"content_type,omitempty"`
	PayloadSize int            `json:"payload_size"` // uncompressed
	CreatedAt   time.Time      `json:"created_at,omitzero"`
	ExpiresAt   time.Time      `json:"expires_at,omitzero"` // logical expiry; zero for none
	NsVersion   uint64         `json:"ns_version"`          // recorded at write time
	NsCurrent   uint64         `json:"ns_current"`          // in L2 now
	Tags        []InspectedTag `json:"tags,omitempty"`

	// Valid is true when a read would be answered with this entry now:
	// an envelope, not expired, written at the current namespace and tag
	// versions. Reason says why not.
	Valid  bool   `json:"valid"`
	Reason string `json:"reason,omitempty"`
}

// InspectedTag is one tag of an inspected entry: the version the entry
// recorded and the version in L2 now.
type InspectedTag struct {
	Tag      string `json:"tag"`
	Recorded uint64 `json:"recorded"`
	Current  uint64 `json:"current"`
}

// Inspect reads key's stored bytes from L2 and decodes them without
// judging them as a read would: it reports what an operator needs to know
// why a key reads as it does. A missing key is an error matching
// ErrNotFound; bytes that are not an envelope are not an error (see
// Inspection.Envelope).
func (c *Cache) Inspect(ctx context.Context, key string) (Inspection, error) {
	if err := c.check("inspect", key); err != nil {
		return Inspection{}, err
	}
	in := Inspection{Key: key, StoreKey: c.prefix + key}
	b, err := c.store.Get(ctx, in.StoreKey)
	if errors.Is(err, l2.ErrNotFound) {
		return in, keyErr("inspect", key, ErrNotFound)
	}
	if err != nil {
		return in, keyErr("inspect", key, err)
	}
	in.Size = len(b)
	env, err := envelope.Decode(b, c.opts.MaxValueSize)
	if err != nil {
		in.Preview = preview(b)
		in.Reason = "not a tiercache value: " + trimPrefix(err)
		return in, nil
	}
	in.Envelope = true
	if len(b) > 2 {
		in.Version = int(b[2])
	}
	in.Codec = "id " + strconv.Itoa(int(env.Codec))
	if cd, err := c.reg.ByID(env.Codec); err == nil {
		in.Codec = cd.Name()
	}
	in.Compressed = env.Flags&envelope.FlagCompressed != 0
	in.Negative = env.Flags&envelope.FlagNegative != 0
	in.ContentType = env.ContentType
	in.PayloadSize = len(env.Payload)
	in.CreatedAt = time.UnixMilli(env.CreatedAt).UTC()
	if env.ExpiresAt != 0 {
		in.ExpiresAt = time.UnixMilli(env.ExpiresAt).UTC()
	}
	in.NsVersion = env.NsVersion
	keys := []string{c.vers.nsKey}
	for _, t := range env.Tags {
		keys = append(keys, c.vers.tagKey(t.Tag))
	}
	cur, err := c.store.MGet(ctx, keys)
	if err != nil {
		return in, keyErr("inspect", key, fmt.Errorf("read the versions: %w", err))
	}
	vers := make([]uint64, len(cur))
	for i, v := range cur {
		if v != nil {
			vers[i], _ = strconv.ParseUint(string(v), 10, 64)
		}
	}
	in.NsCurrent = vers[0]
	for i, t := range env.Tags {
		in.Tags = append(in.Tags, InspectedTag{Tag: t.Tag, Recorded: t.Version, Current: vers[i+1]})
	}
	in.Valid, in.Reason = in.judge(c.opts.Now())
	return in, nil
}

// judge says whether a read would use the inspected entry at now.
func (in *Inspection) judge(now time.Time) (bool, string) {
	switch {
	case len(in.Codec) > 3 && in.Codec[:3] == "id ":
		return false, "unknown codec " + in.Codec + ": this build cannot decode it"
	case !in.ExpiresAt.IsZero() && !now.Before(in.ExpiresAt):
		return false, "expired " + now.Sub(in.ExpiresAt).Round(time.Millisecond).String() + " ago (kept for fail-safe until Redis expires it)"
	case relate(in.NsVersion, in.NsCurrent) == validNo:
		return false, fmt.Sprintf("the namespace was cleared since it was written (version %d, now %d)", in.NsVersion, in.NsCurrent)
	}
	for _, t := range in.Tags {
		if relate(t.Recorded, t.Current) == validNo {
			return false, fmt.Sprintf("tag %q was invalidated since it was written (version %d, now %d)", t.Tag, t.Recorded, t.Current)
		}
	}
	// Soft invalidations only: stale, a fail-safe fallback.
	if in.NsVersion != in.NsCurrent {
		return false, fmt.Sprintf("stale: the namespace was cleared softly since it was written (version %d, now %d); fail-safe may still answer it", in.NsVersion, in.NsCurrent)
	}
	for _, t := range in.Tags {
		if t.Recorded != t.Current {
			return false, fmt.Sprintf("stale: tag %q was invalidated softly since it was written (version %d, now %d); fail-safe may still answer it", t.Tag, t.Recorded, t.Current)
		}
	}
	if in.Negative {
		return true, "a cached absence: reads answer not found"
	}
	return true, ""
}

// preview shows up to 32 bytes of b, quoted.
func preview(b []byte) string {
	const n = 32
	if len(b) > n {
		return strconv.Quote(string(b[:n])) + "..."
	}
	return strconv.Quote(string(b))
}
