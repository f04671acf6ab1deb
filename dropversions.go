package tiercache

import (
	"context"
)

// DropVersions deletes from L2 the namespace's version key and the
// version keys of tags, which InvalidateTags and Clear create and never
// expire. It is for a tool done with a namespace of its own, such as
// `tiercache verify` after its run: entries written before read as
// invalid afterwards (their recorded versions no longer exist), so drop
// the entries first. An application never needs it.
func (c *Cache) DropVersions(ctx context.Context, tags ...string) error {
	if c.closed.Load() {
		return ErrClosed
	}
	keys := []string{c.vers.nsKey}
	for _, t := range tags {
		keys = append(keys, c.vers.tagKey(t))
	}
	if err := c.store.Del(ctx, keys...); err != nil {
		return errorf("tiercache: drop versions: %w", err)
	}
	c.vers.reset()
	return nil
}
