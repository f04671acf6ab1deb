package cli

import (
	"errors"
	"fmt"

	"github.com/tiercache/tiercache/config"
	"github.com/tiercache/tiercache/internal/warmconfig"
)

// configCmd is "tiercache config".
type configCmd struct {
	Print configPrintCmd `cmd:"" help:"Print the effective configuration of serve, secrets redacted, with where each value came from."`
	Check configCheckCmd `cmd:"" help:"Check a configuration file (and the environment) without starting anything."`
}

// configPrintCmd is "tiercache config print [--config FILE]".
type configPrintCmd struct {
	serveCmd
}

// Help is the command's description in its --help.
func (c *configPrintCmd) Help() string {
	return "Takes serve's flags, and prints what serve would run with: each setting, then a comment saying " +
		"where its value came from (default, FILE:LINE, env NAME or flag --name). Passwords and tokens are " +
		"shown as " + config.Redacted + "."
}

func (c *configPrintCmd) Run(s streams) error {
	cfg, err := loadConfig(c.Config, c.flags())
	if err != nil {
		return err
	}
	if _, err := warmconfig.FromConfig(cfg, warmconfig.Options{}); err != nil {
		return fail("%v", err)
	}
	if err := cfg.Print(s.out); err != nil {
		return fail("%v", err)
	}
	return nil
}

// configCheckCmd is "tiercache config check FILE".
type configCheckCmd struct {
	File string `arg:"" name:"file" help:"Configuration file (YAML, docs/configuration.md)."`
}

// Help is the command's description in its --help.
func (c *configCheckCmd) Help() string {
	return "Reads FILE over the defaults, with the environment on top, as serve would, and checks every setting " +
		"and the warming strategies. Exit code 0 when all is well, 1 with the list of problems otherwise."
}

func (c *configCheckCmd) Run(s streams) error {
	cfg, err := config.Load(config.Sources{File: c.File})
	if err == nil {
		_, err = warmconfig.FromConfig(cfg, warmconfig.Options{})
	}
	if err != nil {
		n := len(splitErrors(err))
		fmt.Fprintf(s.err, "%v\n", err)
		return fail("%s: %d problem(s)", c.File, n)
	}
	fmt.Fprintf(s.out, "%s: ok\n", c.File)
	return nil
}

// splitErrors lists the errors joined in err.
func splitErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// fromFlag reports whether one of the errors in err is about a flag.
func fromFlag(err error) bool {
	for _, e := range splitErrors(err) {
		var ce *config.Error
		if errors.As(e, &ce) && ce.Origin.Kind == config.FromFlag {
			return true
		}
	}
	return false
}
