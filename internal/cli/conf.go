package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/tiercache/tiercache/internal/confcheck"
)

// runConf runs "tiercache conf check [flags] FILE...".
func runConf(_ context.Context, s streams, args []string) int {
	fs := newFlagSet("conf", "tiercache conf check [flags] FILE...",
		"check redis.conf or sentinel.conf files against the production checklist "+
			"(memory limit and eviction, persistence, authentication, protected mode and bind, "+
			"dangerous commands, replication safety, Sentinel quorum). A sentinel.conf is recognised "+
			"by its \"sentinel monitor\" lines. The exit code is 0 when no check failed, 1 when one did "+
			"(or, with --strict, warned), 2 on a usage error or an unreadable file")
	var (
		acl    string
		strict bool
	)
	fs.StringVar(&acl, "acl", "", "ACL `file` to check the users of, instead of the one the configuration's aclfile names")
	fs.BoolVar(&strict, "strict", false, "treat warnings as failures")
	if len(args) == 0 || (args[0] != "check" && args[0] != "-h" && args[0] != "-help" && args[0] != "--help") {
		fs.SetOutput(s.err)
		fmt.Fprintln(s.err, "tiercache conf: want the subcommand check")
		fs.Usage()
		return exitUsage
	}
	if args[0] == "check" {
		args = args[1:]
	}
	if code, done := parseWithArgs(fs, args, s); done {
		return code
	}
	if fs.NArg() == 0 {
		fs.SetOutput(s.err)
		fmt.Fprintln(s.err, "tiercache conf check: name at least one configuration file")
		fs.Usage()
		return exitUsage
	}
	code := exitOK
	for i, path := range fs.Args() {
		r, err := confcheck.CheckFile(path, confcheck.Options{ACLFile: acl})
		if err != nil {
			fmt.Fprintf(s.err, "tiercache conf check: %v\n", err)
			return exitUsage
		}
		if i > 0 {
			fmt.Fprintln(s.out)
		}
		if err := r.Write(s.out); err != nil {
			return exitError
		}
		if w := r.Worst(); w == confcheck.Error || (strict && w == confcheck.Warn) {
			code = exitError
		}
	}
	return code
}

// parseWithArgs is parseFlags for a command that takes positional
// arguments after its flags: they are left in fs.Args().
func parseWithArgs(fs *flag.FlagSet, args []string, s streams) (code int, done bool) {
	return parse(fs, args, s, true)
}
