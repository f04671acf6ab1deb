// Package cli is the tiercache command line. cmd/tiercache only wires it to
// the process's signals, arguments and exit code, so tests run it in
// process.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Exit codes of Run.
const (
	exitOK    = 0
	exitError = 1 // the command failed
	exitUsage = 2 // the command line is wrong
)

// streams are where a command writes.
type streams struct {
	out, err io.Writer
}

// command is one subcommand. run receives the arguments after the
// subcommand's name.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, s streams, args []string) int
}

// commands lists the subcommands in the order help shows them. It is a
// function, not a variable, because help refers back to the list.
func commands() []command {
	return []command{
		{"serve", "run the HTTP cache service", runServe},
		{"warm", "run warming strategies from a configuration file", runWarm},
		{"lab", "run a local Redis Sentinel or Cluster from the deploy files", runLab},
		{"conf", "check a redis.conf or sentinel.conf against the production checklist", runConf},
		{"version", "print the version", runVersion},
		{"help", "show help for tiercache or one of its commands", runHelp},
	}
}

func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// Run runs the tiercache command line with args, the arguments after the
// program name, and returns the process exit code: 0 on success, 1 when
// the command fails and 2 when the command line is wrong. Commands that
// run until stopped, such as serve, return when ctx is cancelled.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	s := streams{out: stdout, err: stderr}
	if len(args) == 0 {
		printUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		printUsage(stdout)
		return exitOK
	}
	c, ok := lookup(args[0])
	if !ok {
		fmt.Fprintf(stderr, "tiercache: unknown command %q\n\n", args[0])
		printUsage(stderr)
		return exitUsage
	}
	return c.run(ctx, s, args[1:])
}

func printUsage(w io.Writer) {
	var b strings.Builder
	b.WriteString("tiercache is a two-tier cache: an in-process L1 in front of Redis.\n\n")
	b.WriteString("Usage:\n  tiercache <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-9s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun \"tiercache help <command>\" for a command's flags.\n")
	io.WriteString(w, b.String())
}

// runHelp prints the general usage, or a command's own help by running it
// with -h.
func runHelp(ctx context.Context, s streams, args []string) int {
	switch len(args) {
	case 0:
		printUsage(s.out)
		return exitOK
	case 1:
		if args[0] == "help" {
			printUsage(s.out)
			return exitOK
		}
		if c, ok := lookup(args[0]); ok {
			return c.run(ctx, s, []string{"-h"})
		}
		fmt.Fprintf(s.err, "tiercache help: unknown command %q\n\n", args[0])
	default:
		fmt.Fprintln(s.err, "tiercache help: takes at most one command name")
	}
	printUsage(s.err)
	return exitUsage
}

// newFlagSet returns a FlagSet for a command whose own usage line is
// synopsis ("tiercache serve [flags]"). Parse it with parseFlags.
func newFlagSet(name, synopsis, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet("tiercache "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parseFlags prints, to the right stream
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage:\n  %s\n\n%s.\n", synopsis, upperFirst(summary))
		var hasFlags bool
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintf(fs.Output(), "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args into fs. When done is true the command must
// return code at once: -h printed the usage on stdout (0), or the command
// line was wrong and the error and usage went to stderr (2). Positional
// arguments are refused: no command takes any yet.
func parseFlags(fs *flag.FlagSet, args []string, s streams) (code int, done bool) {
	return parse(fs, args, s, false)
}

// parse parses args into fs; positional says whether arguments may follow
// the flags. done means the command must stop with code: help was asked
// for, or the arguments are wrong (then the usage went to s.err).
func parse(fs *flag.FlagSet, args []string, s streams, positional bool) (code int, done bool) {
	err := fs.Parse(args)
	if err == nil && !positional && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case err == nil:
		return exitOK, false
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(s.out)
		fs.Usage()
		return exitOK, true
	default:
		fs.SetOutput(s.err)
		fmt.Fprintf(s.err, "%s: %v\n\n", fs.Name(), err)
		fs.Usage()
		return exitUsage, true
	}
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
