package tiercache_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/tiercache/tiercache"
)

// A read-modify-write that cannot lose another writer's update: read the
// value with its ETag, then write only if it is still that value.
func ExampleIfMatch() {
	ctx := context.Background()
	c := tiercache.Must(tiercache.Options{})
	defer c.Close()

	// A JSON document with its media type, as an HTTP PUT stores it.
	doc := tiercache.Raw{Codec: "json", ContentType: "application/json", Data: []byte(`{"stock":3}`)}
	if err := c.Set(ctx, "item:9", doc, tiercache.IfAbsent()); err != nil {
		panic(err)
	}
	var cur tiercache.Raw
	res, err := c.Lookup(ctx, "item:9", &cur)
	if err != nil {
		panic(err)
	}
	fmt.Println(cur.ContentType, string(cur.Data))

	// Stored with the json codec, it decodes into a Go type.
	var item struct{ Stock int }
	_ = c.Get(ctx, "item:9", &item)
	fmt.Println("stock:", item.Stock)

	next := tiercache.Raw{Codec: "json", ContentType: "application/json", Data: []byte(`{"stock":2}`)}
	fmt.Println("first writer:", c.Set(ctx, "item:9", next, tiercache.IfMatch(res.ETag)))
	err = c.Set(ctx, "item:9", next, tiercache.IfMatch(res.ETag))
	fmt.Println("second writer:", errors.Is(err, tiercache.ErrConditionFailed))
	// Output:
	// application/json {"stock":3}
	// stock: 3
	// first writer: <nil>
	// second writer: true
}
