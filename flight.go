package tiercache

import (
	"runtime/debug"
	"sync"
)

// flights de-duplicates loads per key within the process, for Fetch and
// FetchMany alike. It is golang.org/x/sync/singleflight with the one thing
// a batch needs: join tells its caller, at once, whether it leads the
// key's flight, so that FetchMany can load the keys it leads in one loader
// call and wait for the others.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

// flight is one load of one key; done closes when val and err are set.
type flight struct {
	done chan struct{}
	val  any
	err  error
}

// join returns key's flight, starting one (and leading it) when none runs.
// The leader must call finish exactly once.
func (g *flights) join(key string) (f *flight, leader bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.m[key]; ok {
		return f, false
	}
	if g.m == nil {
		g.m = make(map[string]*flight)
	}
	f = &flight{done: make(chan struct{})}
	g.m[key] = f
	return f, true
}

// finish ends f with its result and removes it, unless forget replaced it.
func (g *flights) finish(key string, f *flight, val any, err error) {
	g.mu.Lock()
	if g.m[key] == f {
		delete(g.m, key)
	}
	g.mu.Unlock()
	f.val, f.err = val, err
	close(f.done)
}

// forget makes the next join of key start a new flight; callers of the
// current one still get its result.
func (g *flights) forget(key string) {
	g.mu.Lock()
	delete(g.m, key)
	g.mu.Unlock()
}

// run calls fn in a goroutine and finishes f with its result; a panic
// (other than a loader's, which the loader call recovers) becomes an
// error rather than a crash of the process.
func (g *flights) run(key string, f *flight, fn func() (any, error)) {
	go func() {
		var (
			val any
			err error
		)
		defer func() {
			if r := recover(); r != nil {
				err = errorf("tiercache: panic in a load of %q: %v\n%s", truncKey(key), r, debug.Stack())
			}
			g.finish(key, f, val, err)
		}()
		val, err = fn()
	}()
}
