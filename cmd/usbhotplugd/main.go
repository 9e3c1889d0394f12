// Command usbhotplugd is the USB passthrough agent for Xen dom0s. This file
// only wires packages together; see the packages under internal/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes, documented in the README.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands []command

func init() {
	commands = []command{
		{"run", "the agent: attach devices to guests as the policy says, until stopped", runRun},
		{"status", "what the running agent decided for each device, and why", runStatus},
		{"reload", "check the policy, then make the running agent reload it (SIGHUP)", runReload},
		{"replay", "run the agent on a recorded trace with a simulated dom0 (default: a kiosk's day) and show what it decides", runReplay},
		{"demo", "start an embedded xenstore, seed it like a dom0 with one guest, and print its tree", runDemo},
		{"xenstored", "serve an embedded, in-memory xenstored on a unix socket", runXenstored},
		{"devices", "list the host's USB devices with busids, drivers and interfaces", runDevices},
		{"record", "record kernel uevents to a trace, or convert udevadm monitor text to one", runRecord},
		{"check", "validate a policy file and list rules that can never decide", runCheck},
		{"explain", "show what the policy does with each present device, and why", runExplain},
		{"usbctrl-attach", "add a USB controller to a guest, as xl usbctrl-attach", runUsbctrlAttach},
		{"usbctrl-detach", "remove a guest's USB controller and give back its devices, as xl usbctrl-detach", runUsbctrlDetach},
		{"usbdev-attach", "attach a host USB device to a guest, as xl usbdev-attach (or by busid=)", runUsbdevAttach},
		{"usbdev-detach", "give back the device at a guest's controller port, as xl usbdev-detach", runUsbdevDetach},
		{"usb-list", "list a guest's USB controllers and devices, byte for byte as xl usb-list", runUsbList},
		{"repair", "clear ports that name devices no longer on the host (which make xl refuse every attach)", runRepair},
		{"version", "print the version, commit and Go version", runVersion},
		{"man", "write the man pages usbhotplugd(8) and usbhotplugd-policy(5)", runMan},
		{"completion", "print the bash completion script", runCompletion},
	}
}

// usageError marks errors in the command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: usbhotplugd COMMAND [ARGS]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'usbhotplugd COMMAND --help' for a command's options.")
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		var ue *usageError
		switch {
		case err == nil:
			return exitOK
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.As(err, new(*exitError)):
			fmt.Fprintf(stderr, "usbhotplugd %s: %v\n", c.name, err)
			return exitFailure
		case errors.As(err, &ue):
			fmt.Fprintf(stderr, "usbhotplugd %s: %v\n", c.name, err)
			return exitUsage
		default:
			fmt.Fprintf(stderr, "usbhotplugd %s: %v\n", c.name, err)
			return exitFailure
		}
	}
	fmt.Fprintf(stderr, "usbhotplugd: unknown command %q\n", args[0])
	usage(stderr)
	return exitUsage
}

func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: usbhotplugd %s %s\n", name, synopsis)
		fs.PrintDefaults()
		printExamples(stderr, name)
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	return nil
}
