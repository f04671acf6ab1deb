package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// The parsers below are the only ones for their kind of value: the file,
// the environment and the command line all go through them, and so do
// the other readers of durations in tiercache (the HTTP API's ttl
// parameter, the warming sources).

// ParseDuration reads a duration written as a number of seconds ("90",
// "1.5") or as a Go duration ("90s", "1h30m", "250ms"). Surrounding
// spaces are ignored. Negative values are returned as they are; callers
// that do not accept them say so.
func ParseDuration(s string) (time.Duration, error) {
	v := strings.TrimSpace(s)
	if v == "" {
		return 0, errors.New("empty duration")
	}
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		secs := n * float64(time.Second)
		if math.IsNaN(n) || math.IsInf(n, 0) || secs > math.MaxInt64 || secs < math.MinInt64 {
			return 0, fmt.Errorf("%q is out of range", s)
		}
		return time.Duration(secs), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: seconds (90) or a Go duration (90s, 1h30m, 250ms)", s)
	}
	return d, nil
}

// ParseBool reads true/false, 1/0, t/f, yes/no and on/off, in any case.
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "t", "1", "yes", "y", "on":
		return true, nil
	case "false", "f", "0", "no", "n", "off":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean: true or false", s)
}

// ParseInt reads a whole number.
func ParseInt(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a whole number", s)
	}
	return n, nil
}

// ParseFloat reads a decimal number.
func ParseFloat(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	return f, nil
}

// sizeUnits are the suffixes ParseSize accepts, longest first.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

// ParseSize reads a number of bytes: "4194304", "4MiB", "64 KiB", "1GB"
// (KiB, MiB, GiB are powers of 1024; KB, MB, GB of 1000). A negative whole
// number is returned as it is.
func ParseSize(s string) (Bytes, error) {
	v := strings.TrimSpace(s)
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return Bytes(n), nil
	}
	for _, u := range sizeUnits {
		num, ok := strings.CutSuffix(v, u.suffix)
		if !ok {
			continue
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil || n < 0 || n*float64(u.mult) > math.MaxInt64 {
			break
		}
		return Bytes(n * float64(u.mult)), nil
	}
	return 0, fmt.Errorf("%q is not a size: bytes (4194304) or a number with KiB, MiB, GiB, KB, MB or GB (4MiB)", s)
}

// ParseList reads a comma-separated list; empty items are dropped and
// the others trimmed.
func ParseList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// ReadSecretFile returns the content of the secret file at path (a Docker
// or Kubernetes secret, a file made by deploy/make-secrets.sh) less its
// leading and trailing white space, newlines included. An empty secret is
// an error. Errors name the file, never its content.
func ReadSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		// The error of ReadFile holds the path and the reason only.
		return "", err
	}
	secret := strings.TrimSpace(string(b))
	if secret == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return secret, nil
}

// Bytes is a size in bytes; in the file, the environment and on the
// command line it may be written with a unit (ParseSize).
type Bytes int64

// String writes b with the largest binary unit that divides it.
func (b Bytes) String() string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.mult == 0 {
			return strconv.FormatInt(int64(b)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10)
}
