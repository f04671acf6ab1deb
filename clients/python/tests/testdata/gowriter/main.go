// Command gowriter changes a tiercache entry through the Go library, for the
// Python client's tests: the change must reach Python readers within their
// documented bounds. It lives under testdata, so that ./... leaves it out.
//
//	REDIS_URL=redis://127.0.0.1:6379 CACHE_NAMESPACE=ns gowriter set KEY JSON [TAG...]
//	REDIS_URL=... CACHE_NAMESPACE=ns gowriter invalidate TAG...
//	REDIS_URL=... CACHE_NAMESPACE=ns gowriter delete KEY
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/tiercache/tiercache"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gowriter:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: gowriter set KEY JSON [TAG...] | invalidate TAG... | delete KEY")
	}
	opts, err := tiercache.OptionsFromEnv()
	if err != nil {
		return err
	}
	c, err := tiercache.New(opts)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch args[0] {
	case "set":
		if len(args) < 3 {
			return fmt.Errorf("set KEY JSON [TAG...]")
		}
		return c.Set(ctx, args[1], tiercache.Raw{Codec: "json", Data: []byte(args[2])}, tiercache.WithTags(args[3:]...))
	case "invalidate":
		return c.InvalidateTags(ctx, args[1:]...)
	case "delete":
		return c.Delete(ctx, args[1])
	}
	return fmt.Errorf("unknown command %q", args[0])
}
