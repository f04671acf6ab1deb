package cli

import (
	"context"
	"fmt"
	"runtime/debug"
)

func runVersion(_ context.Context, s streams, args []string) int {
	fs := newFlagSet("version", "tiercache version", "print the version of tiercache")
	if code, done := parseFlags(fs, args, s); done {
		return code
	}
	fmt.Fprintf(s.out, "tiercache %s\n", version())
	return exitOK
}

// version is the main module's version as the build recorded it: a tag
// for `go install ...@v1.2.3`, a pseudo-version for builds from a VCS
// checkout, and "devel" when there is none (go run, tests).
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok || info.Main.Version == "" || info.Main.Version == "(devel)" {
		return "devel"
	}
	return info.Main.Version
}
