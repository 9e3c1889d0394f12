package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/usbhotplugd/usbhotplugd/internal/build"
	"github.com/usbhotplugd/usbhotplugd/rules"
)

func init() {
	register(command{name: "man", group: groupTool, tree: true, examples: []string{"usbhotplugd man /usr/share/man"}, new: newManCmd})
}

func newManCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "man DIR",
		Short: "write the man pages: usbhotplugd(8), one usbhotplugd-COMMAND(8) per command, usbhotplugd-policy(5)",
		Long: "Writes DIR/man8/usbhotplugd.8, DIR/man8/usbhotplugd-COMMAND.8 for each command (made from the\n" +
			"same definitions as --help) and DIR/man5/usbhotplugd-policy.5, and prints their paths.",
		ValidArgsFunction: completeDirs,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 || args[0] == "" {
				return &usageError{"give the directory to write the man pages under"}
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			pages, err := manPages(c.Root())
			if err != nil {
				return err
			}
			var paths []string
			for p := range pages {
				paths = append(paths, p)
			}
			sort.Strings(paths)
			for _, p := range paths {
				path := filepath.Join(args[0], p)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					return err
				}
				if err := os.WriteFile(path, pages[p], 0o644); err != nil {
					return err
				}
				fmt.Fprintln(c.OutOrStdout(), path)
			}
			return nil
		},
	}
}

// manDescription is usbhotplugd(8)'s DESCRIPTION.
const manDescription = `usbhotplugd attaches host USB devices to Xen guests as a policy says
(see usbhotplugd-policy(5)), through PVUSB, with exactly the xenstore layout
libxl writes, so xl usb-list shows what it did and it respects what xl did.
The agent (usbhotplugd run) listens to kernel uevents and xenstore watches,
follows guests across reboots by name, gives each device back to its dom0
driver when it leaves, and records what it attached under the dom0-only
xenstore path /tool/usbhotplugd/owned, so that it never detaches what an
admin attached with xl. At its first start since dom0 booted it records the
devices plugged then under /tool/usbhotplugd/present, for rules with
match.when.

Each command has its own page, usbhotplugd-COMMAND(8), and its --help.`

// manExit is every page's EXIT STATUS, in roff.
const manExit = `.SH EXIT STATUS
.TP
0
success
.TP
1
the operation failed; the message says why and what to do
.TP
2
the command line was wrong (nothing was done)
`

// manExtra are usbhotplugd(8)'s sections after the options, in roff.
const manExtra = manExit + `.SH FILES
.TP
/etc/usbhotplugd/policy.toml
the policy (a configuration file: upgrades keep it)
.TP
/etc/usbhotplugd/rules.d/*.toml
drop\-ins, read after the policy in lexical order; one with hosts = [...] only on the hosts it names
.TP
/run/usbhotplugd/control.sock
the running agent's control socket (JSON lines: status, explain, watch, reload), used by usbhotplugd status, reload and watch; root may reload, the group adm may read
.TP
/run/usbhotplugd/status.json
what the running agent decided, as it last wrote it
.TP
/run/usbhotplugd/usbhotplugd.pid
held locked by the running agent (one agent per host); nothing signals the pid it holds
.SH LOGS
Under systemd every decision is one JSON audit record on the journal:
.PP
.nf
journalctl \-u usbhotplugd \-o cat | grep '"audit":true'
.fi
`

// manDate is the pages' date: $SOURCE_DATE_EPOCH when set, for
// reproducible packages; else today.
func manDate() string {
	t := time.Now()
	if e := os.Getenv("SOURCE_DATE_EPOCH"); e != "" {
		if sec, err := strconv.ParseInt(e, 10, 64); err == nil {
			t = time.Unix(sec, 0)
		}
	}
	return t.UTC().Format("2006-01-02")
}

// manPages are the pages by path under the man directory, made from the
// command definitions that --help prints: usbhotplugd(8), a page per
// command, and usbhotplugd-policy(5) from the reference policy. (Our own
// writer: cobra/doc would link a markdown library whose start-up work
// every command would pay.)
func manPages(root *cobra.Command) (map[string][]byte, error) {
	pages := map[string][]byte{"man5/usbhotplugd-policy.5": []byte(manPage5())}
	root.InitDefaultVersionFlag()
	var see []string
	for _, c := range root.Commands() {
		if !c.IsAvailableCommand() {
			continue
		}
		desc := c.Short
		if c.Long != "" {
			desc = c.Long
		}
		pages["man8/usbhotplugd-"+c.Name()+".8"] = []byte(manPage(c, desc, manExit+manEnvironment(c), `\fBusbhotplugd\fR(8)`+"\n"))
		see = append(see, `\fBusbhotplugd\-`+roff(c.Name())+`\fR(8)`)
	}
	var b strings.Builder
	b.WriteString(manPage(root, manDescription, "", ""))
	b.WriteString(".SH COMMANDS\n")
	for _, c := range root.Commands() {
		if c.IsAvailableCommand() {
			fmt.Fprintf(&b, ".TP\n\\fB%s\\fR\n%s; see \\fBusbhotplugd\\-%s\\fR(8)\n", roff(c.Name()), roff(c.Short), roff(c.Name()))
		}
	}
	b.WriteString(manExtra)
	b.WriteString(".SH SEE ALSO\n" + strings.Join(see, ", ") + ",\n\\fBusbhotplugd\\-policy\\fR(5), \\fBusbhotplugd\\-exporter\\fR(8), \\fBxl\\fR(1), \\fBxl.cfg\\fR(5), \\fBjournalctl\\fR(1)\n")
	pages["man8/usbhotplugd.8"] = []byte(b.String())
	return pages, nil
}

// manEnvironment is the ENVIRONMENT section of a command that reads the
// variables its flags default to, in roff; "" for one that reads none.
func manEnvironment(c *cobra.Command) string {
	var b strings.Builder
	if c.Flags().Lookup("xenstore") != nil {
		b.WriteString(".TP\n.B XENSTORED_PATH\nthe xenstored socket when \\fB\\-\\-xenstore\\fR is not given\n")
	}
	if c.Flags().Lookup("sysfs") != nil {
		b.WriteString(".TP\n.B USBHOTPLUGD_SYSFS\nthe sysfs root when \\fB\\-\\-sysfs\\fR is not given (a fixture tree, a container's bind mount)\n")
	}
	if b.Len() == 0 {
		return ""
	}
	return ".SH ENVIRONMENT\n" + b.String()
}

// manPage is a command's page up to its examples: name, synopsis,
// description (roff source), options, examples; then extra (roff) and
// seeAlso if any.
func manPage(c *cobra.Command, description, extra, seeAlso string) string {
	var b strings.Builder
	title := strings.ReplaceAll(c.CommandPath(), " ", "-")
	fmt.Fprintf(&b, ".TH %q \"8\" %q \"usbhotplugd %s\" \"System Administration\"\n", strings.ToUpper(title), manDate(), build.Version)
	fmt.Fprintf(&b, ".SH NAME\n%s \\- %s\n", roff(title), roff(c.Short))
	fmt.Fprintf(&b, ".SH SYNOPSIS\n.B %s\n%s\n", roff(c.CommandPath()), roff(strings.TrimSpace(strings.TrimPrefix(c.UseLine(), c.CommandPath()))))
	b.WriteString(".SH DESCRIPTION\n" + roff(description) + "\n")
	if c.HasAvailableFlags() {
		b.WriteString(".SH OPTIONS\n")
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Hidden {
				return
			}
			name, usage := pflag.UnquoteUsage(f)
			head := "\\fB\\-\\-" + roff(f.Name) + "\\fR"
			if f.Shorthand != "" {
				head = "\\fB\\-" + f.Shorthand + "\\fR, " + head
			}
			if name != "" {
				head += " \\fI" + roff(name) + "\\fR"
			}
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" {
				usage += " (default " + f.DefValue + ")"
			}
			fmt.Fprintf(&b, ".TP\n%s\n%s\n", head, roff(usage))
		})
	}
	if c.Example != "" {
		b.WriteString(".SH EXAMPLES\n.nf\n" + roff(c.Example) + "\n.fi\n")
	}
	b.WriteString(extra)
	if seeAlso != "" {
		b.WriteString(".SH SEE ALSO\n" + seeAlso)
	}
	return b.String()
}

// roff escapes text for a man page.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	// A bare "-" is a hyphen to groff, which may print it as U+2010: an
	// option or a path copied from the page would not work.
	s = strings.ReplaceAll(s, "-", `\-`)
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			l = `\&` + l
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func manPage5() string {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH USBHOTPLUGD-POLICY 5 \"\" \"usbhotplugd %s\" \"File Formats\"\n", build.Version)
	b.WriteString(".SH NAME\nusbhotplugd\\-policy \\- which USB devices go to which Xen guest\n")
	b.WriteString(".SH DESCRIPTION\n" + roff(`/etc/usbhotplugd/policy.toml is TOML: an ordered list of [[rule]] tables
and optional [domain.NAME] tables. For each device the first rule that
matches decides; when none matches, the device stays with dom0. The
drop-ins /etc/usbhotplugd/rules.d/*.toml follow, in lexical order, their
rules after the policy's; a drop-in that begins with hosts = ["GLOB", ...]
applies only on the hosts whose name matches. Hubs are never passed
through. Every key of a match must hold. usbhotplugd check
reports every mistake with its file, line, rule and key; usbhotplugd explain
shows what the policy does with each present device, and why.`) + "\n")
	b.WriteString(".SH REFERENCE\nEvery key, with its meaning, as shipped in /usr/share/usbhotplugd/rules/reference.toml:\n.PP\n.nf\n")
	ref, _ := rules.Read("reference.toml")
	b.WriteString(roff(string(ref)))
	b.WriteString(".fi\n.SH DENY DEFAULTS\n/usr/share/usbhotplugd/rules/deny\\-defaults.toml, to include:\n.PP\n.nf\n")
	deny, _ := rules.Read("deny-defaults.toml")
	b.WriteString(roff(string(deny)))
	b.WriteString(".fi\n.SH SEE ALSO\nusbhotplugd(8)\n")
	return b.String()
}
