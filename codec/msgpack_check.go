package codec

import "fmt"

// maxMsgpackDepth bounds nesting, as encoding/json does, so that decoding
// cannot exhaust the stack.
const maxMsgpackDepth = 10000

// checkMsgpack reports whether b holds exactly one well-formed MessagePack
// object whose every declared length fits in the bytes that follow it.
//
// msgpack v5.4.1 sizes slices and maps from the declared length before it
// reads the elements: five bytes announcing 2^32-1 elements make it
// allocate tens of gigabytes. Each element takes at least one byte, so once
// a declared count is known to fit in the input, allocation is linear in the
// input size.
//
// It returns the offsets where non-empty extension data starts, in
// ascending order, for msgpackReader.
func checkMsgpack(b []byte) ([]int, error) {
	c := msgpackChecker{b: b}
	end, err := c.value(0, 0)
	if err != nil {
		return nil, err
	}
	if end != len(b) {
		return nil, c.errorf(end, "%d bytes after the value", len(b)-end)
	}
	return c.extData, nil
}

type msgpackChecker struct {
	b       []byte
	extData []int
}

func (c *msgpackChecker) errorf(at int, format string, args ...any) error {
	return fmt.Errorf("codec: msgpack: malformed input at byte %d: %s", at, fmt.Sprintf(format, args...))
}

// value checks the object at b[i:] and returns the offset just past it.
func (c *msgpackChecker) value(i, depth int) (int, error) {
	if i >= len(c.b) {
		return 0, c.errorf(i, "truncated")
	}
	code := c.b[i]
	i++
	switch {
	case code <= 0x7f || code >= 0xe0: // positive and negative fixint
		return i, nil
	case code <= 0x8f: // fixmap
		return c.elems(i, uint64(code&0x0f)*2, depth)
	case code <= 0x9f: // fixarray
		return c.elems(i, uint64(code&0x0f), depth)
	case code <= 0xbf: // fixstr
		return c.skip(i, uint64(code&0x1f))
	}
	switch code {
	case 0xc0, 0xc2, 0xc3: // nil, false, true
		return i, nil
	case 0xcc, 0xd0: // uint 8, int 8
		return c.skip(i, 1)
	case 0xcd, 0xd1: // uint 16, int 16
		return c.skip(i, 2)
	case 0xca, 0xce, 0xd2: // float 32, uint 32, int 32
		return c.skip(i, 4)
	case 0xcb, 0xcf, 0xd3: // float 64, uint 64, int 64
		return c.skip(i, 8)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16
		return c.ext(i, 1<<(code-0xd4))
	}

	// The remaining codes are followed by a big-endian length, except
	// 0xc1, which MessagePack never uses.
	var width int
	switch code {
	case 0xc4, 0xc7, 0xd9: // bin 8, ext 8, str 8
		width = 1
	case 0xc5, 0xc8, 0xda, 0xdc, 0xde: // bin 16, ext 16, str 16, array 16, map 16
		width = 2
	case 0xc6, 0xc9, 0xdb, 0xdd, 0xdf: // bin 32, ext 32, str 32, array 32, map 32
		width = 4
	default:
		return 0, c.errorf(i-1, "invalid code 0x%02x", code)
	}
	if len(c.b)-i < width {
		return 0, c.errorf(i, "truncated length")
	}
	var n uint64
	for _, b := range c.b[i : i+width] {
		n = n<<8 | uint64(b)
	}
	i += width
	switch code {
	case 0xc7, 0xc8, 0xc9:
		return c.ext(i, n)
	case 0xdc, 0xdd:
		return c.elems(i, n, depth)
	case 0xde, 0xdf:
		return c.elems(i, 2*n, depth)
	}
	return c.skip(i, n)
}

func (c *msgpackChecker) skip(i int, n uint64) (int, error) {
	if n > uint64(len(c.b)-i) {
		return 0, c.errorf(i, "%d bytes declared, %d remain", n, len(c.b)-i)
	}
	return i + int(n), nil
}

// ext checks an extension: a type byte and n bytes of data.
func (c *msgpackChecker) ext(i int, n uint64) (int, error) {
	if n+1 > uint64(len(c.b)-i) {
		return 0, c.errorf(i, "extension of %d bytes, %d remain", n, len(c.b)-i)
	}
	if n > 0 {
		c.extData = append(c.extData, i+1)
	}
	return i + 1 + int(n), nil
}

// elems checks the n objects of an array, or the keys and values of a map.
func (c *msgpackChecker) elems(i int, n uint64, depth int) (int, error) {
	if n == 0 {
		return i, nil
	}
	if n > uint64(len(c.b)-i) {
		return 0, c.errorf(i, "%d elements declared, %d bytes remain", n, len(c.b)-i)
	}
	if depth >= maxMsgpackDepth {
		return 0, c.errorf(i, "nested deeper than %d", maxMsgpackDepth)
	}
	var err error
	for range n {
		if i, err = c.value(i, depth+1); err != nil {
			return 0, err
		}
	}
	return i, nil
}
