//go:build !race

package tiercache

// raceEnabled reports whether the race detector is on: it slows every
// memory access several-fold, so latency targets are checked without it.
const raceEnabled = false
