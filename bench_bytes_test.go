package tiercache

import (
	"context"
	"testing"
)

// bytesSink keeps the copies alive, so that the compiler cannot drop them.
var bytesSink []byte

// BenchmarkCache_GetBytes measures the allocations of a Get answered by L1
// into a *[]byte and into a *Raw, with a 128-byte value, and the copy the
// caller asks for as a baseline:
//
//   - copy: append([]byte(nil), v...), what a copy costs on its own (1).
//   - bytes/fresh_dst and raw/fresh_dst declare the destination inside the
//     loop, as a caller that reads one key into a new variable does: the
//     copy, plus the variable itself, which Go moves to the heap because
//     Get takes its destination as an `any` that may reach a codec (an
//     interface call), so escape analysis cannot keep it on the caller's
//     stack (`go build -gcflags=-m`: "moved to heap").
//   - bytes/reused_dst and raw/reused_dst read into one variable: the copy
//     reuses its capacity, and nothing is allocated.
func BenchmarkCache_GetBytes(b *testing.B) {
	ctx := context.Background()
	c := Must(Options{Namespace: "bench"})
	defer c.Close()
	val := make([]byte, 128)
	if err := c.Set(ctx, "bytes", val); err != nil {
		b.Fatal(err)
	}
	if err := c.Set(ctx, "raw", Raw{Data: val}); err != nil {
		b.Fatal(err)
	}
	b.Run("copy", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			bytesSink = append([]byte(nil), val...)
		}
	})
	b.Run("bytes/fresh_dst", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var v []byte
			if err := c.Get(ctx, "bytes", &v); err != nil {
				b.Fatal(err)
			}
			bytesSink = v
		}
	})
	b.Run("bytes/reused_dst", func(b *testing.B) {
		b.ReportAllocs()
		var v []byte
		for range b.N {
			if err := c.Get(ctx, "bytes", &v); err != nil {
				b.Fatal(err)
			}
		}
		bytesSink = v
	})
	b.Run("raw/fresh_dst", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var r Raw
			if err := c.Get(ctx, "raw", &r); err != nil {
				b.Fatal(err)
			}
			bytesSink = r.Data
		}
	})
	b.Run("raw/reused_dst", func(b *testing.B) {
		b.ReportAllocs()
		var r Raw
		for range b.N {
			if err := c.Get(ctx, "raw", &r); err != nil {
				b.Fatal(err)
			}
		}
		bytesSink = r.Data
	})
}
