//go:build race

package server

// raceEnabled reports whether the race detector is on: under it,
// sync.Pool drops some of what it is given, so allocation counts are
// bounded more loosely.
const raceEnabled = true
