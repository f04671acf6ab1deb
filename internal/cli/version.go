package cli

import (
	"fmt"
	"runtime/debug"
)

// versionCmd is "tiercache version", as --version.
type versionCmd struct{}

func (versionCmd) Run(s streams) error {
	fmt.Fprintf(s.out, "tiercache %s\n", version())
	return nil
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
