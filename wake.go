package tiercache

import (
	"sync"
	"sync/atomic"
	"time"
)

// Waiters for another instance's load (Lock.Enabled) are woken by the
// invalidation Redis sends when the holder writes the key: the waiter's own
// read of the key registered it with Redis's tracking, so the holder's SET
// reaches this instance as an invalidation of the key. The wait is then
// about one round trip past the holder's write, not the next step of a
// polling schedule. Polling stays as the fallback (a link that drops the
// message, a store without tracking), at lockPollFirst doubling up to
// lockPollMax.

const (
	lockPollFirst = 5 * time.Millisecond
	lockPollMax   = 100 * time.Millisecond
)

// keyWaiters holds the channels of the Fetches waiting for a key to change.
type keyWaiters struct {
	n  atomic.Int32 // waiters registered; onInvalidation skips the lock at 0
	mu sync.Mutex
	m  map[string][]chan struct{}
}

// watch registers a waiter for key; the channel is closed when key
// changes. done unregisters it.
func (w *keyWaiters) watch(key string) (ch chan struct{}, done func()) {
	ch = make(chan struct{})
	w.mu.Lock()
	if w.m == nil {
		w.m = map[string][]chan struct{}{}
	}
	w.m[key] = append(w.m[key], ch)
	w.n.Add(1) // under the lock: wake must not see the channel with n at 0
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		list := w.m[key]
		for i, c := range list {
			if c == ch {
				list[i] = list[len(list)-1]
				list = list[:len(list)-1]
				w.n.Add(-1)
				break
			}
		}
		if len(list) == 0 {
			delete(w.m, key)
		} else {
			w.m[key] = list
		}
	}
}

// wake closes the channels of key's waiters and unregisters them.
func (w *keyWaiters) wake(key string) int {
	if w.n.Load() == 0 {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	list := w.m[key]
	for _, c := range list {
		close(c)
	}
	delete(w.m, key)
	w.n.Add(-int32(len(list)))
	return len(list)
}

// watched reports whether a waiter watches key.
func (w *keyWaiters) watched(key string) bool {
	if w.n.Load() == 0 {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.m[key]) > 0
}
