package cli

import (
	"github.com/tiercache/tiercache/internal/confcheck"
)

// confCmd is "tiercache conf".
type confCmd struct {
	Check confCheckCmd `cmd:"" help:"Check redis.conf or sentinel.conf files against the production checklist."`
}

// confCheckCmd is "tiercache conf check [flags] FILE...".
type confCheckCmd struct {
	Files  []string `arg:"" name:"file" help:"redis.conf or sentinel.conf files; a sentinel.conf is recognised by its \"sentinel monitor\" lines."`
	ACL    string   `name:"acl" placeholder:"FILE" help:"ACL file to check the users of, instead of the one the configuration's aclfile names."`
	Strict bool     `name:"strict" help:"Treat warnings as failures."`
}

// Help is the command's description in its --help.
func (c *confCheckCmd) Help() string {
	return "Checks memory limit and eviction, persistence, authentication, protected mode and bind, " +
		"dangerous commands, replication safety and Sentinel quorum. The exit code is 0 when no check " +
		"failed, 1 when one did (or, with --strict, warned), 2 on a usage error or an unreadable file."
}

func (c *confCheckCmd) Run(s streams) error {
	result := exitOK
	for i, path := range c.Files {
		r, err := confcheck.CheckFile(path, confcheck.Options{ACLFile: c.ACL})
		if err != nil {
			return usage("%v", err)
		}
		if i > 0 {
			_, _ = s.out.Write([]byte("\n"))
		}
		if err := r.Write(s.out); err != nil {
			return code(exitError)
		}
		if w := r.Worst(); w == confcheck.Error || (c.Strict && w == confcheck.Warn) {
			result = exitError
		}
	}
	return code(result)
}
