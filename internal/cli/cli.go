// Package cli is the tiercache command line. cmd/tiercache only wires it to
// the process's signals, arguments and exit code, so tests run it in
// process.
//
// The command line is parsed by github.com/alecthomas/kong: flags may come
// before or after positional arguments, and every command has --help.
// serve's settings are not read here: package config layers the flags
// given over the environment, the file and the defaults.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/alecthomas/kong"
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

// grammar is the command line: one field per command.
type grammar struct {
	Version kong.VersionFlag `short:"v" help:"Print the version and exit."`

	Get        getCmd        `cmd:"" group:"Everyday" help:"Print a key's value, or its metadata with --meta."`
	Set        setCmd        `cmd:"" group:"Everyday" help:"Write a key from an argument, a file or standard input."`
	Del        delCmd        `cmd:"" group:"Everyday" help:"Delete keys."`
	TTL        ttlCmd        `cmd:"" name:"ttl" group:"Everyday" help:"Print a key's time to live left."`
	Invalidate invalidateCmd `cmd:"" group:"Everyday" help:"Invalidate every entry written with any of the tags."`
	Clear      clearCmd      `cmd:"" group:"Everyday" help:"Invalidate every entry of the namespace (asks first unless --yes)."`
	Stats      statsCmd      `cmd:"" group:"Everyday" help:"Print the statistics: counters, hit ratios, latency, Redis nodes."`
	Health     healthCmd     `cmd:"" group:"Everyday" help:"Print the health verdict; the exit status follows it."`
	Inspect    inspectCmd    `cmd:"" group:"Everyday" help:"Decode the envelope of a key's bytes in Redis and say whether it is valid."`
	Top        topCmd        `cmd:"" group:"Everyday" help:"Watch services live: rates, hit ratios, latency, breaker, queue."`
	Verify     verifyCmd     `cmd:"" group:"Operations" help:"Prove a live deployment coherent: concurrent writes, deletes, invalidations and reads, checked."`

	Serve      serveCmd      `cmd:"" help:"Run the HTTP cache service until interrupted."`
	Warm       warmCmd       `cmd:"" help:"Run warming strategies from a configuration file once."`
	Bench      benchCmd      `cmd:"" help:"Generate load against the HTTP service or the library and report latency and hit ratios."`
	Lab        labCmd        `cmd:"" help:"Run a local Redis Sentinel or Cluster from the deploy files."`
	Conf       confCmd       `cmd:"" help:"Check a redis.conf, sentinel.conf or ACL file against the production checklist."`
	Config     configCmd     `cmd:"" help:"Print or check tiercache's own configuration."`
	VersionCmd versionCmd    `cmd:"" name:"version" help:"Print the version."`
	Completion completionCmd `cmd:"" help:"Print a shell completion script (bash, zsh or fish)."`
	Help       helpCmd       `cmd:"" help:"Show help for tiercache or one of its commands."`
}

// commandNames lists the commands, for the "unknown command" check.
var commandNames = []string{
	"get", "set", "del", "ttl", "invalidate", "clear", "stats", "health", "inspect", "top", "verify",
	"serve", "warm", "bench", "lab", "conf", "config", "version", "completion", "help",
}

// exitPanic carries an exit code out of kong, whose --help and --version
// end with Exit.
type exitPanic int

// exitErr is a command's result: its exit code, with a message for
// stderr unless the command printed its own.
type exitErr struct {
	code int
	msg  string
}

func (e *exitErr) Error() string { return e.msg }

// fail returns the error of a failed command: code 1 and the message.
func fail(format string, args ...any) error {
	return &exitErr{code: exitError, msg: fmt.Sprintf(format, args...)}
}

// usage returns the error of a wrong command line: code 2.
func usage(format string, args ...any) error {
	return &exitErr{code: exitUsage, msg: fmt.Sprintf(format, args...)}
}

// code returns a command's exit code without a message: the command has
// said what there was to say.
func code(c int) error {
	if c == exitOK {
		return nil
	}
	return &exitErr{code: c}
}

const description = "tiercache is a two-tier cache: an in-process L1 in front of Redis."

// newParser builds the parser; stdout receives help.
func newParser(g *grammar, stdout, stderr io.Writer) (*kong.Kong, error) {
	return kong.New(g,
		kong.Name("tiercache"),
		kong.Description(description),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(exitPanic(code)) }),
		kong.Vars(flagHelp()),
		kong.Vars{"version": "tiercache " + version()},
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, NoExpandSubcommands: false, WrapUpperBound: 100}),
	)
}

// Run runs the tiercache command line with args, the arguments after the
// program name, and returns the process exit code: 0 on success, 1 when
// the command fails and 2 when the command line is wrong. Commands that
// run until stopped, such as serve, return when ctx is cancelled.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) (exit int) {
	defer func() {
		if r := recover(); r != nil {
			c, ok := r.(exitPanic)
			if !ok {
				panic(r)
			}
			exit = int(c)
		}
	}()
	var g grammar
	parser, err := newParser(&g, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "tiercache: %v\n", err)
		return exitError
	}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") && !slices.Contains(commandNames, args[0]) {
		fmt.Fprintf(stderr, "tiercache: unknown command %q\n\n", args[0])
		printUsage(stderr, nil)
		return exitUsage
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "tiercache: %v\n\n", err)
		var pe *kong.ParseError
		if errors.As(err, &pe) {
			pe.Context.Stdout = stderr
			_ = pe.Context.PrintUsage(false)
		}
		return exitUsage
	}
	s := streams{out: stdout, err: stderr}
	kctx.BindTo(ctx, (*context.Context)(nil))
	if err := kctx.Run(s); err != nil {
		var e *exitErr
		if !errors.As(err, &e) {
			fmt.Fprintf(stderr, "tiercache %s: %s\n", commandPath(kctx), once(err.Error()))
			return exitError
		}
		if e.msg != "" {
			fmt.Fprintf(stderr, "tiercache %s: %s\n", commandPath(kctx), once(e.msg))
		}
		return e.code
	}
	return exitOK
}

// once drops the "tiercache: " that the library's errors start with: the
// line already starts with the program and the command, and the prefix
// is to appear once.
func once(msg string) string { return strings.TrimPrefix(msg, "tiercache: ") }

// commandPath is the selected command without its arguments ("conf check").
func commandPath(kctx *kong.Context) string {
	var names []string
	for _, p := range kctx.Path {
		if p.Command != nil {
			names = append(names, p.Command.Name)
		}
	}
	return strings.Join(names, " ")
}

// printUsage writes the help of the command at path (nil: tiercache's).
func printUsage(w io.Writer, path []string) {
	defer func() { _ = recover() }() // help ends with Exit
	var g grammar
	parser, err := newParser(&g, w, w)
	if err != nil {
		return
	}
	_, _ = parser.Parse(append(slices.Clone(path), "--help"))
}

// helpCmd is "tiercache help [command]".
type helpCmd struct {
	Command []string `arg:"" optional:"" help:"Command to show the help of."`
}

func (h *helpCmd) Run(s streams) error {
	switch {
	case len(h.Command) > 1:
		printUsage(s.err, nil)
		return usage("takes at most one command name")
	case len(h.Command) == 1 && !slices.Contains(commandNames, h.Command[0]):
		printUsage(s.err, nil)
		return usage("unknown command %q", h.Command[0])
	case len(h.Command) == 1 && h.Command[0] != "help":
		printUsage(s.out, h.Command)
	default:
		printUsage(s.out, nil)
	}
	return nil
}
