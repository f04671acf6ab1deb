package tiercache

import (
	"context"
	"time"
)

// Item is one entry for SetItems.
type Item struct {
	Key   string
	Value any           // a []byte is stored as-is; anything else is encoded
	TTL   time.Duration // zero or less: Options.DefaultTTL
	Tags  []string
}

// SetItems writes items, each with its own TTL and tags, in one round trip
// per node (plus one to read tag versions not yet known). Everything is
// validated first: on a bad key, tag or value nothing is written.
func (c *Cache) SetItems(ctx context.Context, items []Item) error {
	return c.setItems(ctx, items, setOptions{})
}

// setItems is SetItems with the per-call options of SetMany (SkipL1,
// SkipL2, WithL1TTL) in base.
func (c *Cache) setItems(ctx context.Context, items []Item, base setOptions) error {
	if len(items) == 0 {
		return nil
	}
	var tags []string
	seen := map[string]int{}
	for _, it := range items {
		if err := c.check("set", it.Key); err != nil {
			return err
		}
		if err := checkTags(it.Tags); err != nil {
			return keyErr("set", it.Key, err)
		}
		for _, t := range it.Tags {
			if _, ok := seen[t]; !ok {
				seen[t] = len(tags)
				tags = append(tags, t)
			}
		}
	}
	all, err := c.stampFor(ctx, tags)
	if err != nil {
		return errorf("tiercache: set items: %w", err)
	}
	encs := make([]encoded, 0, len(items))
	for _, it := range items {
		vs := stamp{ns: all.ns, tags: make([]uint64, len(it.Tags))}
		for i, t := range it.Tags {
			vs.tags[i] = all.tags[seen[t]]
		}
		so := base
		so.ttl, so.tags = it.TTL, it.Tags
		enc, err := c.encode(it.Key, it.Value, so, false, vs)
		if err != nil {
			return keyErr("set", it.Key, err)
		}
		encs = append(encs, enc)
	}
	if base.skipL2 {
		c.keepLocal(encs)
		return nil
	}
	if err := c.write(ctx, encs, true); err != nil {
		return errorf("tiercache: set items (%d): %w", len(encs), err)
	}
	return nil
}
