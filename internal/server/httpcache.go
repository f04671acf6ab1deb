package server

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tiercache/tiercache"
)

// HTTP caching (RFC 9110 section 13, RFC 9111) for the answers of GET and
// HEAD /v1/cache/{key...}, and the preconditions of PUT and DELETE.

// cacheControl is the Cache-Control of a value read at now, which Age
// says is age seconds old. A cache in front of the service counts Age
// against max-age (RFC 9111 section 4.2.3), so max-age is the value's
// remaining whole seconds of TTL plus age: such a cache keeps it for at
// most the whole seconds the tiercache keeps it fresh. A value without a
// TTL, and a fail-safe stale answer, get no-cache: a cache may store them
// but must revalidate (a conditional GET, answered 304 while the value is
// unchanged) before each use.
func cacheControl(res tiercache.Result, age int64, now time.Time) string {
	if res.Stale || res.ExpiresAt.IsZero() {
		return "no-cache"
	}
	left := max(int64(res.ExpiresAt.Sub(now)/time.Second), 0)
	var buf [32]byte
	return string(strconv.AppendInt(append(buf[:0], "max-age="...), left+age, 10))
}

// ageSeconds is the Age of a value: whole seconds since it was written, or
// -1 when the value does not record when.
func ageSeconds(res tiercache.Result, now time.Time) int64 {
	if res.CreatedAt.IsZero() {
		return -1
	}
	return max(0, int64(now.Sub(res.CreatedAt)/time.Second))
}

// etagMatches evaluates the entity-tag lists of the If-Match (strong
// comparison) or If-None-Match (weak comparison) header lines against
// etag, the current value's quoted ETag ("" when the key has no current
// value). "*" matches any current value. An unparsable list matches
// nothing.
func etagMatches(lines []string, etag string, weak bool) bool {
	if etag == "" {
		return false
	}
	for _, line := range lines {
		for item := range strings.SplitSeq(line, ",") {
			item = strings.TrimSpace(item)
			if item == "*" {
				return true
			}
			if strings.HasPrefix(item, "W/") {
				if !weak {
					continue // a weak tag never matches strongly
				}
				item = item[2:]
			}
			if item == etag {
				return true
			}
		}
	}
	return false
}

// precondition is what a PUT or DELETE requires of the key's current
// value.
type precondition struct {
	match  []string // If-Match: ETags without quotes, or "*"; nil for none
	absent bool     // "If-None-Match: *"
}

// options returns the library's options for a conditional Set.
func (p precondition) options() []tiercache.SetOption {
	var opts []tiercache.SetOption
	if p.match != nil {
		opts = append(opts, tiercache.IfMatch(p.match...))
	}
	if p.absent {
		opts = append(opts, tiercache.IfAbsent())
	}
	return opts
}

// precondition reads If-Match (a list of ETags, or "*") and, on PUT
// only, "If-None-Match: *". It answers 400 and returns false for what the
// endpoint does not take: If-None-Match with ETags, If-None-Match on
// DELETE, or an If-Match that is not "*" or a list of entity tags.
func (s *Server) precondition(w http.ResponseWriter, r *http.Request, put bool) (precondition, bool) {
	var p precondition
	if lines := r.Header.Values("If-Match"); len(lines) > 0 {
		tags, ok := entityTags(lines)
		if !ok {
			s.writeError(w, http.StatusBadRequest, codeInvalidCondition, `If-Match must be "*" or a list of entity tags such as "0123456789abcdef"`)
			return p, false
		}
		p.match = tags
	}
	if lines := r.Header.Values("If-None-Match"); len(lines) > 0 {
		if !put || len(lines) != 1 || strings.TrimSpace(lines[0]) != "*" {
			s.writeError(w, http.StatusBadRequest, codeInvalidCondition, `only PUT takes If-None-Match, and only as "If-None-Match: *" (create only)`)
			return p, false
		}
		p.absent = true
	}
	return p, true
}

// entityTags parses If-Match lines into the library's ETags: "*", or
// quoted tags. Weak tags are kept with their W/ prefix, so that they never
// match (If-Match compares strongly).
func entityTags(lines []string) ([]string, bool) {
	var tags []string
	for _, line := range lines {
		for item := range strings.SplitSeq(line, ",") {
			item = strings.TrimSpace(item)
			switch {
			case item == "":
				continue
			case item == "*":
				tags = append(tags, item)
			case strings.HasPrefix(item, "W/"):
				tags = append(tags, item)
			case len(item) >= 2 && item[0] == '"' && item[len(item)-1] == '"' && !strings.Contains(item[1:len(item)-1], `"`):
				tags = append(tags, item[1:len(item)-1])
			default:
				return nil, false
			}
		}
	}
	return tags, len(tags) > 0
}
