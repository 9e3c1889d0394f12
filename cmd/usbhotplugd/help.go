package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/build"
	"github.com/usbhotplugd/usbhotplugd/rules"
)

// examples are printed by each command's --help and go into the man page:
// one source, so the two cannot drift.
var examples = map[string][]string{
	"run": {
		"usbhotplugd run --policy /etc/usbhotplugd/policy.toml\t# as systemd runs it",
		"usbhotplugd run --dry-run --log-format console\t# see what it would do, change nothing",
	},
	"status":  {"usbhotplugd status\t# what each device is and why", "usbhotplugd status --json"},
	"reload":  {"usbhotplugd reload\t# check /etc/usbhotplugd/policy.toml, then have the agent load it"},
	"replay":  {"usbhotplugd replay\t# a kiosk's day, with the shipped kiosk policy", "usbhotplugd replay --policy my.toml host.jsonl"},
	"demo":    {"usbhotplugd demo"},
	"devices": {"usbhotplugd devices", "usbhotplugd devices --json"},
	"record": {
		"usbhotplugd record --coldplug -o host.jsonl\t# as root; interrupt to stop",
		"usbhotplugd record --import-udevadm monitor.txt -o host.jsonl",
	},
	"check":          {"usbhotplugd check /etc/usbhotplugd/policy.toml", "usbhotplugd check --strict my.toml"},
	"explain":        {"usbhotplugd explain\t# every present device", "usbhotplugd explain --policy my.toml 1-1.6"},
	"xenstored":      {"usbhotplugd xenstored --socket /tmp/xs.sock"},
	"usbctrl-attach": {"usbhotplugd usbctrl-attach kiosk version=2 ports=8"},
	"usbctrl-detach": {"usbhotplugd usbctrl-detach kiosk 0"},
	"usbdev-attach":  {"usbhotplugd usbdev-attach kiosk hostbus=1 hostaddr=6", "usbhotplugd usbdev-attach kiosk busid=1-2 controller=0 port=2"},
	"usbdev-detach":  {"usbhotplugd usbdev-detach kiosk 0 1"},
	"usb-list":       {"usbhotplugd usb-list kiosk"},
	"repair":         {"usbhotplugd repair"},
	"version":        {"usbhotplugd version"},
	"man":            {"usbhotplugd man /usr/share/man"},
	"completion":     {"usbhotplugd completion bash > /etc/bash_completion.d/usbhotplugd"},
}

func printExamples(w io.Writer, name string) {
	ex := examples[name]
	if len(ex) == 0 {
		return
	}
	fmt.Fprintln(w, "\nexamples:")
	for _, e := range ex {
		cmd, why, _ := strings.Cut(e, "\t")
		if why != "" {
			fmt.Fprintf(w, "  %-56s %s\n", cmd, why)
		} else {
			fmt.Fprintf(w, "  %s\n", cmd)
		}
	}
}

// helpOf is what `usbhotplugd NAME --help` prints.
func helpOf(name string) string {
	for _, c := range commands {
		if c.name == name {
			var b bytes.Buffer
			c.run(context.Background(), []string{"--help"}, &b, &b)
			return b.String()
		}
	}
	return ""
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

func manPage8() string {
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
	for _, c := range commands {
		fmt.Fprintf(&b, ".SS %s\n%s.\n.PP\n.nf\n%s.fi\n", c.name, roff(c.summary), roff(helpOf(c.name)))
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

func runMan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("man", "DIR (writes DIR/man8/usbhotplugd.8 and DIR/man5/usbhotplugd-policy.5)", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &usageError{"give the directory to write the man pages under"}
	}
	for _, p := range []struct{ path, text string }{
		{filepath.Join(fs.Arg(0), "man8", "usbhotplugd.8"), manPage8()},
		{filepath.Join(fs.Arg(0), "man5", "usbhotplugd-policy.5"), manPage5()},
	} {
		if err := os.MkdirAll(filepath.Dir(p.path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p.path, []byte(p.text), 0o644); err != nil {
			return err
		}
		fmt.Fprintln(stdout, p.path)
	}
	return nil
}

func runCompletion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("completion", "bash", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || fs.Arg(0) != "bash" {
		return &usageError{"only bash completion is generated: usbhotplugd completion bash"}
	}
	var names []string
	for _, c := range commands {
		names = append(names, c.name)
	}
	sort.Strings(names)
	fmt.Fprintf(stdout, `# bash completion for usbhotplugd
_usbhotplugd() {
	local cur=${COMP_WORDS[COMP_CWORD]}
	if [ "$COMP_CWORD" -eq 1 ]; then
		COMPREPLY=($(compgen -W %q -- "$cur"))
		return
	fi
	case "${COMP_WORDS[1]}" in
	check|explain|reload|run|replay) COMPREPLY=($(compgen -f -- "$cur")) ;;
	*) COMPREPLY=($(compgen -W "--help" -- "$cur")) ;;
	esac
}
complete -F _usbhotplugd usbhotplugd
`, strings.Join(names, " "))
	return nil
}
