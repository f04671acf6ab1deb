package l1

import (
	"strings"
	"testing"
)

func TestEntry_ETag(t *testing.T) {
	t.Parallel()
	base := func() *Entry {
		return &Entry{Codec: 2, Payload: []byte(`{"a":1}`), CreatedAt: 1_700_000_000_000_000_000, ExpiresAt: 1_700_000_060_000_000_000,
			NsVer: 7, Tags: []string{"users"}, TagVers: []uint64{3}, ContentType: "application/json"}
	}
	tag := base().QuotedETag()
	if len(tag) != 18 || tag[0] != '"' || tag[17] != '"' || strings.Trim(tag[1:17], "0123456789abcdef") != "" {
		t.Fatalf("QuotedETag = %q, want 16 hex digits in quotes", tag)
	}
	if again := base().QuotedETag(); again != tag {
		t.Fatalf("the same stored value gave %q and %q", tag, again)
	}
	if e := base(); e.ETag() != tag[1:17] {
		t.Fatalf("ETag = %q, want %q", e.ETag(), tag[1:17])
	}
	for name, change := range map[string]func(*Entry){
		"payload":      func(e *Entry) { e.Payload = []byte(`{"a":2}`) },
		"codec":        func(e *Entry) { e.Codec = 0 },
		"negative":     func(e *Entry) { e.Negative = true },
		"created":      func(e *Entry) { e.CreatedAt += 1_000_000 },
		"expires":      func(e *Entry) { e.ExpiresAt = 0 },
		"namespace":    func(e *Entry) { e.NsVer++ },
		"tag":          func(e *Entry) { e.Tags = []string{"user"} },
		"tag version":  func(e *Entry) { e.TagVers = []uint64{4} },
		"content type": func(e *Entry) { e.ContentType = "text/plain" },
		"no tags":      func(e *Entry) { e.Tags, e.TagVers = nil, nil },
	} {
		e := base()
		change(e)
		if e.QuotedETag() == tag {
			t.Errorf("changing the %s kept the ETag %s", name, tag)
		}
	}
	// A fail-safe copy with another expiry is the same stored value.
	e := base()
	if c := e.StaleCopy(e.ExpiresAt + 1_000_000_000); c.QuotedETag() != tag {
		t.Fatalf("StaleCopy ETag = %q, want %q", c.QuotedETag(), tag)
	}
}
