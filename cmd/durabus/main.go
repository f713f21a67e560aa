// Command durabus is the command-line tool of durabus: it shows the library
// at work (demo), publishes events, tails and replays topics, and inspects
// topics, consumers and dead letters in Redis.
//
// Usage:
//
//	durabus [global flags] <command> [flags] [arguments]
//
// Commands: demo, publish, tail, replay, stats, groups, dead, serve, bench,
// version, help. Run "durabus help <command>" for a command's flags. Global
// flags may also be given after the command.
//
// Global flags:
//
//	--redis URL        Redis to use: redis://[user:password@]host:port[/db] or
//	                   rediss:// for TLS (env DURABUS_REDIS; default
//	                   redis://127.0.0.1:6379, except demo, which starts a
//	                   private redis-server when no URL is given); but for
//	                   demo and bench, any node's URL means its whole Redis
//	                   Cluster
//	--namespace NS     key and channel prefix (env DURABUS_NAMESPACE; default durabus)
//	--json             print data as JSON (one object per line)
//
// Exit status: 0 on success, 1 on an error (one line on stderr, starting
// with "durabus: "), 2 on a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// version is the CLI's version; release builds set it with
// -ldflags "-X main.version=v1.2.3".
var version = "devel"

// command is one subcommand.
type command struct {
	name    string
	args    string // positional arguments, for the usage line
	summary string // one line, for the command list
	help    string // paragraphs after the usage line
	// flags registers the command's own flags; it may be nil.
	flags func(fs *flag.FlagSet) any
	// run executes the command with its parsed flags and positional args.
	run func(ctx context.Context, env *env, opts any, args []string) error
}

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

// env is what every command gets: global settings and the standard streams.
type env struct {
	redisURL  string
	urlSet    bool // --redis or DURABUS_REDIS was given
	namespace string
	json      bool
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
	getenv    func(string) string
}

// usageError is a bad command line: exit status 2.
type usageError struct {
	msg string
	cmd string // the command whose help to point to; "" for the main help
}

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// errHelp ends a command that printed its help: exit status 0.
var errHelp = errors.New("help printed")

func main() {
	redis.SetLogger(silentLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// A closed stdout (durabus tail | head) then gives EPIPE on write instead
	// of killing the process, so that demo still stops its redis-server.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// silentLogger drops go-redis's log lines: errors reach the user through
// the commands' own messages.
type silentLogger struct{}

func (silentLogger) Printf(context.Context, string, ...any) {}

// run runs the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	err := dispatch(ctx, e, args)
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.Is(err, syscall.EPIPE):
		return 141 // like a process killed by SIGPIPE, without a message
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		fmt.Fprintln(stderr, "durabus: interrupted")
		return 130
	case errors.As(err, &ue):
		help := "durabus help"
		if ue.cmd != "" {
			help += " " + ue.cmd
		}
		fmt.Fprintf(stderr, "durabus: %s (see %s)\n", oneLine(ue.msg), help)
		return 2
	default:
		msg := oneLine(err.Error())
		// The library's own hint names the ACL line of an application;
		// a CLI command may need more.
		if strings.Contains(msg, "NOPERM") && !strings.Contains(msg, `"ACL: the CLI"`) {
			msg += ` (the Redis user lacks a right this command needs; see "ACL: the CLI" in docs/operations.md)`
		}
		fmt.Fprintf(stderr, "durabus: %s\n", msg)
		return 1
	}
}

// oneLine keeps an error message on one line.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "\r", "")
	return strings.ReplaceAll(s, "\n", "; ")
}

func dispatch(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("durabus", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	e.addGlobalFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			mainUsage(e.stdout)
			return errHelp
		}
		return usagef("%s", dashes(err))
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usagef("no command given")
	}
	name, rest := rest[0], rest[1:]
	if name == "help" {
		return helpCommand(e, rest)
	}
	c := commands[name]
	if c == nil {
		return usagef("unknown command %q; commands are %s", name, strings.Join(commandNames(), ", "))
	}
	fs = flag.NewFlagSet("durabus "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	e.addGlobalFlags(fs)
	var opts any
	if c.flags != nil {
		opts = c.flags(fs)
	}
	pos, err := parseInterleaved(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			commandUsage(e.stdout, c, fs)
			return errHelp
		}
		return &usageError{msg: name + ": " + dashes(err), cmd: name}
	}
	e.finishGlobals()
	if e.urlSet {
		if _, err := redis.ParseURL(e.redisURL); err != nil {
			return &usageError{msg: badURL(e.redisURL, err), cmd: name}
		}
	}
	err = c.run(ctx, e, opts, pos)
	var ue *usageError
	if errors.As(err, &ue) && ue.cmd == "" {
		ue.cmd = name
	}
	return err
}

// dashes writes the flags named in an error of the flag package with two
// dashes, as the help does: "-watch" becomes "--watch".
func dashes(err error) string {
	return flagNameRE.ReplaceAllString(err.Error(), "$1--$2")
}

var flagNameRE = regexp.MustCompile(`((?:flag|defined|argument):? )-([A-Za-z])`)

// badURL says what is wrong with a --redis URL, without its password.
func badURL(url string, err error) string {
	why := strings.TrimSpace(strings.TrimPrefix(err.Error(), "redis: "))
	if strings.HasSuffix(why, ":") { // "invalid URL scheme:" with no scheme at all
		why += " none"
	}
	return fmt.Sprintf("--redis %q: %s; want redis://[user:password@]host:port[/db] or rediss:// for TLS", redactURL(url), why)
}

// addGlobalFlags registers --redis, --namespace and --json on fs; the main
// flag set and every command's flag set share the same variables, so they
// may come before or after the command name.
func (e *env) addGlobalFlags(fs *flag.FlagSet) {
	fs.Func("redis", "Redis `URL`: redis://[user:password@]host:port[/db], rediss:// for TLS (env DURABUS_REDIS; default redis://127.0.0.1:6379)", func(s string) error {
		e.redisURL, e.urlSet = s, true
		return nil
	})
	fs.StringVar(&e.namespace, "namespace", e.namespace, "key and channel prefix `NS` (env DURABUS_NAMESPACE; default durabus)")
	fs.BoolVar(&e.json, "json", e.json, "print data as JSON lines")
}

// finishGlobals applies the environment and defaults after parsing.
func (e *env) finishGlobals() {
	if !e.urlSet {
		if v := e.getenv("DURABUS_REDIS"); v != "" {
			e.redisURL, e.urlSet = v, true
		} else {
			e.redisURL = "redis://127.0.0.1:6379"
		}
	}
	if e.namespace == "" {
		e.namespace = e.getenv("DURABUS_NAMESPACE")
	}
}

// parseInterleaved parses flags that may come before, between and after the
// positional arguments, which the flag package alone stops at. "--" ends
// the flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func commandNames() []string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

var commandOrder = []string{"demo", "publish", "tail", "replay", "stats", "groups", "dead", "serve", "bench", "version"}

func mainUsage(w io.Writer) {
	fmt.Fprint(w, `durabus makes Redis Pub/Sub durable; this tool demonstrates it and
inspects, publishes, tails and replays durabus topics.

Usage:
  durabus [global flags] <command> [flags] [arguments]

Commands:
`)
	for _, n := range commandOrder {
		c := commands[n]
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `  help      show the help of a command: durabus help <command>

Global flags (also accepted after the command):
  --redis URL       Redis: redis://[user:password@]host:port[/db], rediss:// for TLS
                    (env DURABUS_REDIS; default redis://127.0.0.1:6379; demo starts
                    a private redis-server when no URL is given)
  --namespace NS    key and channel prefix (env DURABUS_NAMESPACE; default durabus)
  --json            print data as JSON lines

Exit status: 0 on success, 1 on an error, 2 on a usage error.
`)
}

func commandUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: durabus %s [flags] %s\n\n%s\n", c.name, c.args, strings.TrimSpace(c.help))
	var own []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		switch f.Name {
		case "redis", "namespace", "json":
		default:
			own = append(own, f)
		}
	})
	if len(own) > 0 {
		fmt.Fprintln(w, "\nFlags:")
		for _, f := range own {
			name, usage := flag.UnquoteUsage(f)
			line := "  --" + f.Name
			if name != "" {
				line += " " + name
			}
			fmt.Fprintf(w, "%-24s %s", line, usage)
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" && f.DefValue != "0s" {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintln(w, "\nGlobal flags: --redis URL, --namespace NS, --json (see durabus --help).")
}

func helpCommand(e *env, args []string) error {
	if len(args) == 0 {
		mainUsage(e.stdout)
		return nil
	}
	c := commands[args[0]]
	if c == nil {
		return usagef("help: unknown command %q; commands are %s", args[0], strings.Join(commandNames(), ", "))
	}
	fs := flag.NewFlagSet("durabus "+c.name, flag.ContinueOnError)
	e.addGlobalFlags(fs)
	if c.flags != nil {
		c.flags(fs)
	}
	commandUsage(e.stdout, c, fs)
	return nil
}

func init() {
	register(&command{
		name:    "version",
		summary: "print the version of the durabus tool",
		help:    "Prints the tool's version and the Go version it was built with.",
		run: func(_ context.Context, e *env, _ any, args []string) error {
			if len(args) > 0 {
				return usagef("version takes no arguments")
			}
			fmt.Fprintf(e.stdout, "durabus %s (%s)\n", toolVersion(), runtime.Version())
			return nil
		},
	})
}

// toolVersion is version, or the module version recorded by go install.
func toolVersion() string {
	if version != "devel" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}
