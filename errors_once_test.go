package tiercache

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestErrors_ReadOnce: an error names the package once, whatever it wraps,
// and still matches its sentinel; TryLock tells a missing name (an invalid
// key) from a bad TTL (invalid options).
func TestErrors_ReadOnce(t *testing.T) {
	ctx := context.Background()
	c := newCache(t, "memory")
	_, lockTTL := c.TryLock(ctx, "x", 0)
	_, lockName := c.TryLock(ctx, "", time.Second)
	_, nilLoader := FetchMany(ctx, c, []string{"a"}, BatchLoaderFunc[int](nil))
	cases := []struct {
		name string
		err  error
		is   error
	}{
		{"invalidate tags", c.InvalidateTags(ctx, ""), ErrInvalidTag},
		{"invalidate tags softly", c.InvalidateTagsSoft(ctx, ""), ErrInvalidTag},
		{"fetch many", nilLoader, ErrNilLoader},
		{"lock ttl", lockTTL, ErrInvalidOptions},
		{"lock name", lockName, ErrInvalidKey},
	}
	c.Close()
	cases = append(cases,
		struct {
			name string
			err  error
			is   error
		}{"clear", c.Clear(ctx), ErrClosed},
		struct {
			name string
			err  error
			is   error
		}{"clear softly", c.ClearSoft(ctx), ErrClosed})
	for _, tc := range cases {
		if !errors.Is(tc.err, tc.is) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.is)
			continue
		}
		if n := strings.Count(tc.err.Error(), "tiercache:"); n != 1 {
			t.Errorf("%s: %q names the package %d times", tc.name, tc.err, n)
		}
	}
}
