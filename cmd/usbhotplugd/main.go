// Command usbhotplugd is the USB passthrough agent for Xen dom0s. This file
// only wires packages together; see the packages under internal/.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/usbhotplugd/usbhotplugd/internal/daemon"
	"github.com/usbhotplugd/usbhotplugd/internal/safetext"
)

// Exit codes, documented in the README.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// command is one subcommand. Adding one is a file with a constructor and
// a register call in that file's init; nothing else changes.
type command struct {
	name  string // as typed; the constructor's Use starts with it
	group string // groupAgent, groupPolicy, groupXL or groupTool
	// examples are "command line\t# why": --help prints them, the man
	// page carries them, and TestHelpExamples runs them.
	examples []string
	// tree: the command reads the whole command tree (man, completion).
	tree bool
	// quick: the command only reads and prints, so an interrupt may end
	// it where it stands: it runs without a signal handler, which costs a
	// thread and two goroutines at start-up.
	quick bool
	new   func() *cobra.Command
}

// The groups of `usbhotplugd --help`.
const (
	groupAgent  = "agent"
	groupPolicy = "policy"
	groupXL     = "xl"
	groupTool   = "tool"
)

var groups = []*cobra.Group{
	{ID: groupAgent, Title: "The agent:"},
	{ID: groupPolicy, Title: "Policy and devices:"},
	{ID: groupXL, Title: "As xl does it (PVUSB):"},
	{ID: groupTool, Title: "Tools:"},
}

// commands is filled by register, from each command's file: room for
// them all at once.
var commands = make([]command, 0, 32)

func register(c command) { commands = append(commands, c) }

func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// usageError marks errors in the command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// exiting is set by main: the process ends when run returns, and its
// exit closes what a command still holds (the store's connection, the
// signal handler), which the command then leaves to it rather than pay for
// an orderly close. Tests call run many times in one process, with exiting
// unset, and so close everything.
var exiting bool

func main() {
	exiting = true
	ctx := context.Background()
	if handlesSignals(os.Args[1:]) {
		ctx, _ = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM) // stopped by the exit
	}
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// handlesSignals says whether the command args name turns SIGINT and
// SIGTERM into a cancelled context (so that it stops cleanly, undoing
// what it started) rather than ending at once.
func handlesSignals(args []string) bool {
	if len(args) == 0 {
		return true
	}
	if versionOnly(args) {
		return false
	}
	c, ok := lookup(args[0])
	return !ok || !c.quick
}

// versionOnly says whether args ask for the version alone (the version
// command, or the root's --version or -v, with nothing else), which run
// answers by itself: no command is built for it.
func versionOnly(args []string) bool {
	return len(args) == 1 && (args[0] == "version" || args[0] == "--version" || args[0] == "-v")
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if versionOnly(args) {
		// What the version command and the root's version template print,
		// without a command tree, or a template parsed and run, for one
		// line.
		if _, err := fmt.Fprintln(stdout, versionString()); err != nil {
			fmt.Fprintf(stderr, "usbhotplugd: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
	if len(args) > 1 && (args[0] == "--version" || args[0] == "-v") {
		// cobra would print the version and drop the rest unread.
		fmt.Fprintf(stderr, "usbhotplugd: --version takes no arguments (%q given)\n", args[1])
		return exitUsage
	}
	root := newRoot(args)
	root.SetArgs(append([]string{}, args...)) // never nil: cobra would read os.Args
	root.SetOut(stdout)
	root.SetErr(stderr)
	c, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	name := root.Name()
	if c != nil {
		name = c.CommandPath()
	}
	if !daemon.Logged(err) { // the agent logged its own end
		fmt.Fprintf(stderr, "%s: %s\n", name, safeLines(err.Error()))
	}
	var ue *usageError
	if errors.As(err, &ue) {
		if c == root || c == nil {
			fmt.Fprintln(stderr, "Run 'usbhotplugd --help' for the commands.")
		}
		return exitUsage
	}
	return exitFailure
}

// safeLines is s as a terminal may show it: each of its lines escaped
// (safetext.Line), the line breaks kept. An error may quote what a store
// or a device holds, which anyone with write access chose.
func safeLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = safetext.Line(l)
	}
	return strings.Join(lines, "\n")
}

// newRoot builds the root and only the command that args name, or every
// command when the whole tree is needed (help, completion, man, an unknown
// name): a command costs nothing at start-up that it does not use.
func newRoot(args []string) *cobra.Command {
	root := &cobra.Command{
		Use:   "usbhotplugd COMMAND",
		Short: "USB passthrough agent for Xen dom0s (PVUSB)",
		Long: "usbhotplugd attaches host USB devices to Xen guests as a policy says, through PVUSB,\n" +
			"with exactly the xenstore layout libxl writes.",
		Version:           versionString(),
		Args:              cobra.ArbitraryArgs,
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				c.Usage()
				return &usageError{"give a command"}
			}
			msg := fmt.Sprintf("unknown command %q", args[0])
			if s := c.SuggestionsFor(args[0]); len(s) > 0 {
				msg += fmt.Sprintf(" (did you mean %s?)", s[0])
			}
			return &usageError{msg}
		},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	// Two spaces after the longest command's name too, so that it does
	// not run into its description.
	root.SetUsageTemplate(strings.ReplaceAll(root.UsageTemplate(), "{{rpad .Name .NamePadding }} {{.Short}}", "{{rpad .Name .NamePadding }}  {{.Short}}"))
	root.SetHelpCommand(&cobra.Command{
		Use:   "help [COMMAND]",
		Short: "help about a command",
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			var out []cobra.Completion
			for _, sub := range c.Root().Commands() {
				if len(args) == 0 && sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), toComplete) {
					out = append(out, cobra.CompletionWithDesc(sub.Name(), sub.Short))
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			cmd, _, err := c.Root().Find(args)
			if len(args) > 0 && (err != nil || cmd == c.Root()) {
				return &usageError{fmt.Sprintf("no command %q (usbhotplugd help lists them)", strings.Join(args, " "))}
			}
			cmd.InitDefaultHelpFlag() // listed as COMMAND --help lists it
			return cmd.Help()
		},
	})
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &usageError{err.Error()} })
	// Defined before cobra looks for the command, not after as it would:
	// otherwise it takes -h for a flag with a value and, in
	// `usbhotplugd -h check`, check for that value, and prints the root's
	// help instead of check's.
	root.InitDefaultHelpFlag()
	root.AddGroup(groups...)
	one, ok := command{}, false
	if len(args) > 0 {
		one, ok = lookup(args[0])
	}
	// Only the shell's request for completions reads the flags'.
	completing := len(args) > 0 && (args[0] == cobra.ShellCompRequestCmd || args[0] == cobra.ShellCompNoDescRequestCmd)
	for _, c := range commands {
		if ok && !one.tree && c.name != one.name {
			continue
		}
		root.AddCommand(c.build(completing))
	}
	return root
}

// build makes the command and adds what every command shares; completing,
// the flags' completions too.
func (c command) build(completing bool) *cobra.Command {
	cc := c.new()
	cc.GroupID = c.group
	cc.Example = formatExamples(c.examples)
	if cc.Args == nil {
		cc.Args = noArgs
	}
	cc.Flags().SortFlags = false
	cc.Flags().VisitAll(func(f *pflag.Flag) {
		nameValue(f)
		if fn := flagCompletion(f.Name); fn != nil && completing {
			cc.RegisterFlagCompletionFunc(f.Name, fn)
		}
	})
	return cc
}

// noArgs, maxArgs and rangeArgs check the positional arguments before a
// command does anything (dials, reads, writes).
func noArgs(c *cobra.Command, args []string) error {
	if len(args) != 0 {
		return &usageError{fmt.Sprintf("unexpected argument %q", args[0])}
	}
	return nil
}

func maxArgs(n int, msg string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) > n {
			return &usageError{msg}
		}
		return nil
	}
}

// rangeArgs: min to max arguments (max < 0: no limit); else the usage line.
func rangeArgs(min, max int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < min || (max >= 0 && len(args) > max) {
			return &usageError{"usage: " + c.UseLine()}
		}
		return nil
	}
}

// valueName names a flag's value in --help and the man pages by what it
// is ("--policy FILE"), not by its Go type ("--policy string").
func valueName(flag string) string {
	switch flag {
	case "policy", "mountinfo", "output", "import-udevadm", "metrics-textfile":
		return "FILE"
	case "sysfs", "state-dir":
		return "DIR"
	case "xenstore":
		return "SOCKET"
	case "socket":
		return "PATH"
	case "backend-timeout", "wait":
		return "DURATION"
	case "host", "domain":
		return "NAME"
	case "control-group":
		return "GROUP"
	case "log-format":
		return "FORMAT"
	case "log-level":
		return "LEVEL"
	}
	return ""
}

// namedValue is a flag's value under the name valueName gives it. (Its
// Type is that name, so pflag's GetString refuses it: read a flag through
// its variable, as every command does.)
type namedValue struct {
	pflag.Value
	name string
}

func (v namedValue) Type() string { return v.name }

func nameValue(f *pflag.Flag) {
	if n := valueName(f.Name); n != "" && strings.IndexByte(f.Usage, '`') < 0 {
		if t := f.Value.Type(); t == "string" || t == "duration" {
			f.Value = namedValue{f.Value, n}
		}
	}
}
