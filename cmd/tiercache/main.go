// Command tiercache runs the tiercache HTTP cache service and tools; see
// `tiercache help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tiercache/tiercache/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
