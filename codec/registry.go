package codec

import (
	"errors"
	"fmt"
)

// Registry finds codecs by ID and by name: the built-in codecs plus those an
// application adds. A Registry does not change after NewRegistry returns,
// so it is safe for concurrent use. The zero value holds no codecs; use
// NewRegistry.
type Registry struct {
	byID   [256]Codec
	byName map[string]Codec
}

// NewRegistry returns a Registry holding Raw, MsgPack, JSON and extra. An
// extra codec needs a non-empty name and an ID of at least FirstUserID, and
// neither may be taken already.
func NewRegistry(extra ...Codec) (*Registry, error) {
	r := &Registry{byName: make(map[string]Codec, 3+len(extra))}
	for _, c := range []Codec{Raw(), MsgPack(), JSON()} {
		r.add(c)
	}
	for _, c := range extra {
		if c == nil {
			return nil, errors.New("codec: registry: nil codec")
		}
		id, name := c.ID(), c.Name()
		switch {
		case name == "":
			return nil, fmt.Errorf("codec: registry: codec with id %d has no name", id)
		case id < FirstUserID:
			return nil, fmt.Errorf("codec: registry: codec %q has id %d; ids below %d are reserved for tiercache", name, id, FirstUserID)
		case r.byID[id] != nil:
			return nil, fmt.Errorf("codec: registry: codec %q has id %d, which %q already uses", name, id, r.byID[id].Name())
		case r.byName[name] != nil:
			return nil, fmt.Errorf("codec: registry: two codecs are named %q", name)
		}
		r.add(c)
	}
	return r, nil
}

func (r *Registry) add(c Codec) {
	r.byID[c.ID()] = c
	r.byName[c.Name()] = c
}

// ByID returns the codec with the given ID, or an error matching
// ErrUnknownCodec.
func (r *Registry) ByID(id byte) (Codec, error) {
	if c := r.byID[id]; c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("%w id %d", ErrUnknownCodec, id)
}

// ByName returns the codec with the given name, or an error matching
// ErrUnknownCodec.
func (r *Registry) ByName(name string) (Codec, error) {
	if c := r.byName[name]; c != nil {
		return c, nil
	}
	return nil, unknownName(name)
}
