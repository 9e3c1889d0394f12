package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/usbhotplugd/usbhotplugd/internal/build"
	"github.com/usbhotplugd/usbhotplugd/rules"
)

func init() {
	register(command{name: "version", group: groupTool, examples: []string{"usbhotplugd version"}, new: newVersionCmd})
	register(command{name: "man", group: groupTool, tree: true, examples: []string{"usbhotplugd man /usr/share/man"}, new: newManCmd})
	register(command{name: "completion", group: groupTool, tree: true,
		examples: []string{"usbhotplugd completion bash > /etc/bash_completion.d/usbhotplugd"}, new: newCompletionCmd})
}

// formatExamples lays out "command line\t# why" pairs for --help and the
// man page: one source, so the two cannot drift.
func formatExamples(ex []string) string {
	var b strings.Builder
	for i, e := range ex {
		if i > 0 {
			b.WriteByte('\n')
		}
		cmd, why, _ := strings.Cut(e, "\t")
		if why != "" {
			fmt.Fprintf(&b, "  %-56s %s", cmd, why)
		} else {
			fmt.Fprintf(&b, "  %s", cmd)
		}
	}
	return b.String()
}

func versionString() string {
	return fmt.Sprintf("usbhotplugd %s (commit %s, %s)", build.Version, build.Commit, build.GoVersion())
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version, commit and Go version",
		RunE: func(c *cobra.Command, args []string) error {
			fmt.Fprintln(c.OutOrStdout(), versionString())
			return nil
		},
	}
}

// roff escapes text for a man page.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			l = `\&` + l
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func manPage8(root *cobra.Command) string {
	var b strings.Builder
	date := time.Now().UTC().Format("2006-01-02")
	if e := os.Getenv("SOURCE_DATE_EPOCH"); e != "" {
		var sec int64
		fmt.Sscan(e, &sec)
		date = time.Unix(sec, 0).UTC().Format("2006-01-02")
	}
	fmt.Fprintf(&b, ".TH USBHOTPLUGD 8 %q \"usbhotplugd %s\" \"System Administration\"\n", date, build.Version)
	b.WriteString(".SH NAME\nusbhotplugd \\- USB passthrough agent for Xen guests (PVUSB)\n")
	b.WriteString(".SH SYNOPSIS\n.B usbhotplugd\n.I command\n.RI [ options ]\n")
	b.WriteString(".SH DESCRIPTION\n" + roff(`usbhotplugd attaches host USB devices to Xen guests as a policy says
(see usbhotplugd-policy(5)), through PVUSB, with exactly the xenstore layout
libxl writes, so xl usb-list shows what it did and it respects what xl did.
The agent (usbhotplugd run) listens to kernel uevents and xenstore watches,
follows guests across reboots by name, gives each device back to its dom0
driver when it leaves, and records what it attached under the dom0-only
xenstore path /tool/usbhotplugd/owned, so that it never detaches what an
admin attached with xl. At its first start since dom0 booted it records the
devices plugged then under /tool/usbhotplugd/present, for rules with
match.when.`) + "\n")
	b.WriteString(".SH COMMANDS\n")
	for _, c := range root.Commands() {
		if !c.IsAvailableCommand() {
			continue
		}
		fmt.Fprintf(&b, ".SS %s\n%s.\n.PP\n.nf\n%s.fi\n", c.Name(), roff(c.Short), roff(strings.TrimLeft(c.UsageString(), "\n")))
	}
	b.WriteString(".SH EXIT STATUS\n.TP\n0\nsuccess\n.TP\n1\nthe operation failed; the message says why and what to do\n.TP\n2\nthe command line was wrong\n")
	b.WriteString(".SH FILES\n.TP\n/etc/usbhotplugd/policy.toml\nthe policy (a configuration file: upgrades keep it)\n" +
		".TP\n/run/usbhotplugd/status.json\nwhat the running agent decided, read by usbhotplugd status\n" +
		".TP\n/run/usbhotplugd/usbhotplugd.pid\nthe running agent's pid, read by usbhotplugd reload\n")
	b.WriteString(".SH LOGS\n" + roff(`Under systemd every decision is one JSON audit record on the journal:
journalctl -u usbhotplugd -o cat | grep '"audit":true'`) + "\n")
	b.WriteString(".SH SEE ALSO\nusbhotplugd-policy(5), xl(1), xl.cfg(5), journalctl(1)\n")
	return b.String()
}

func manPage5() string {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH USBHOTPLUGD-POLICY 5 \"\" \"usbhotplugd %s\" \"File Formats\"\n", build.Version)
	b.WriteString(".SH NAME\nusbhotplugd-policy \\- which USB devices go to which Xen guest\n")
	b.WriteString(".SH DESCRIPTION\n" + roff(`/etc/usbhotplugd/policy.toml is TOML: an ordered list of [[rule]] tables
and optional [domain.NAME] tables. For each device the first rule that
matches decides; when none matches, the device stays with dom0. Hubs are
never passed through. Every key of a match must hold. usbhotplugd check
reports every mistake with its file, line, rule and key; usbhotplugd explain
shows what the policy does with each present device, and why.`) + "\n")
	b.WriteString(".SH REFERENCE\nEvery key, with its meaning, as shipped in /usr/share/usbhotplugd/rules/reference.toml:\n.PP\n.nf\n")
	ref, _ := rules.Read("reference.toml")
	b.WriteString(roff(string(ref)))
	b.WriteString(".fi\n.SH DENY DEFAULTS\n/usr/share/usbhotplugd/rules/deny-defaults.toml, to include:\n.PP\n.nf\n")
	deny, _ := rules.Read("deny-defaults.toml")
	b.WriteString(roff(string(deny)))
	b.WriteString(".fi\n.SH SEE ALSO\nusbhotplugd(8)\n")
	return b.String()
}

func newManCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "man DIR",
		Short: "write the man pages usbhotplugd(8) and usbhotplugd-policy(5)",
		Long:  "Writes DIR/man8/usbhotplugd.8 and DIR/man5/usbhotplugd-policy.5.",
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return &usageError{"give the directory to write the man pages under"}
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			for _, p := range []struct{ path, text string }{
				{filepath.Join(args[0], "man8", "usbhotplugd.8"), manPage8(c.Root())},
				{filepath.Join(args[0], "man5", "usbhotplugd-policy.5"), manPage5()},
			} {
				if err := os.MkdirAll(filepath.Dir(p.path), 0o755); err != nil {
					return err
				}
				if err := os.WriteFile(p.path, []byte(p.text), 0o644); err != nil {
					return err
				}
				fmt.Fprintln(c.OutOrStdout(), p.path)
			}
			return nil
		},
	}
}

func newCompletionCmd() *cobra.Command {
	return &cobra.Command{
		Use:       "completion bash|zsh|fish",
		Short:     "print the completion script for bash, zsh or fish",
		ValidArgs: []string{"bash", "zsh", "fish"},
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 || (args[0] != "bash" && args[0] != "zsh" && args[0] != "fish") {
				return &usageError{"name the shell: usbhotplugd completion bash, zsh or fish"}
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			root, out := c.Root(), c.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			default:
				return root.GenFishCompletion(out, true)
			}
		},
	}
}
