// Package tiercachetest holds helpers shared by the tests of the packages
// built on tiercache: a cache configured through the environment, as
// `tiercache serve` configures it, and a buffer for output that
// goroutines write while a test reads it. Only tests import it.
package tiercachetest

import (
	"bytes"
	"sync"
	"testing"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/config"
)

// FromEnv sets the environment env for the test, clearing every other
// variable of package config (REDIS_*, CACHE_*, CIRCUIT_BREAKER_*...), and
// builds a cache from it with tiercache.OptionsFromEnv; mod adjusts the
// options. The cache is closed when the test ends.
func FromEnv(t testing.TB, env map[string]string, mod ...func(*tiercache.Options)) *tiercache.Cache {
	t.Helper()
	for _, f := range config.Fields() {
		if _, ok := env[f.Env]; f.Env != "" && !ok {
			t.Setenv(f.Env, "")
		}
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	opts, err := tiercache.OptionsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mod {
		m(&opts)
	}
	c, err := tiercache.New(opts)
	if err != nil {
		t.Fatalf("tiercache.New from the environment: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Buffer is a bytes.Buffer that is safe for concurrent use: the
// destination of a logger, or of a command's output, that goroutines
// write while the test reads it. The zero value is empty and ready.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p to the buffer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what has been written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
