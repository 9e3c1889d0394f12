package main

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/safetext"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// completeTimeout bounds a completion's look-up in xenstore: the shell
// waits for it, and a store that does not answer must not freeze a prompt.
const completeTimeout = 500 * time.Millisecond

// completeDomains lists the running guests (not dom0) by name, with their
// domid as the description.
func completeDomains(c *cobra.Command) []cobra.Completion {
	ctx := c.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completeTimeout)
	defer cancel()
	var xs *xenstore.Conn
	var err error
	if path := flagValue(c, "xenstore"); path != "" {
		xs, err = xenstore.DialPath(ctx, path)
	} else {
		xs, err = xenstore.Dial(ctx)
	}
	if err != nil {
		return nil
	}
	defer xs.Close()
	doms, err := (&assign.Host{XS: xs}).Domains(ctx)
	if err != nil {
		return nil
	}
	var out []cobra.Completion
	for _, d := range doms {
		// A name the terminal would act on is offered to no shell.
		if d.ID != 0 && d.Name != "" && safetext.Line(d.Name) == d.Name {
			out = append(out, cobra.CompletionWithDesc(d.Name, "domid "+strconv.Itoa(int(d.ID))))
		}
	}
	return out
}

// completeBusIDs lists the host's devices that can be passed through (not
// hubs) from sysfs, each as prefix+busid, described by its id and name.
func completeBusIDs(sysfs, prefix string) []cobra.Completion {
	devs, err := usbsysfs.NewFS(sysfs).Devices()
	if _, err := usbsysfs.Partial(err); err != nil {
		return nil
	}
	var out []cobra.Completion
	for _, d := range devs {
		if d.IsHub() || d.IsRootHub() {
			continue
		}
		// The strings are the device maker's: zsh and fish print the
		// description, so it is escaped as every listing is.
		desc := safetext.Line(strings.TrimSpace(d.ID() + " " + d.Manufacturer + " " + d.ProductName))
		out = append(out, cobra.CompletionWithDesc(prefix+d.BusID, desc))
	}
	return out
}

// completeHost completes a PVUSB command's arguments: DOMAIN first, then
// the KEY= words that keys offers (busid= with the host's busids).
func completeHost(keys ...string) cobra.CompletionFunc {
	return func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) == 0 {
			return completeDomains(c), cobra.ShellCompDirectiveNoFileComp
		}
		if len(keys) == 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		if strings.HasPrefix(toComplete, "busid=") {
			return completeBusIDs(sysfsFlag(c), "busid="), cobra.ShellCompDirectiveNoFileComp
		}
		if k, _, ok := strings.Cut(toComplete, "="); ok {
			if vals := keyValues[k+"="]; vals != nil && slices.Contains(keys, k+"=") {
				out := make([]cobra.Completion, len(vals))
				for i, v := range vals {
					out[i] = cobra.CompletionWithDesc(k+"="+v[0], v[1])
				}
				return out, cobra.ShellCompDirectiveNoFileComp
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return keys, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
	}
}

// keyValues are the values a KEY= word takes, where they are few, with
// what each means.
var keyValues = map[string][][2]string{
	"type=": {
		{policy.TypeAuto, "pv for a PV guest, devicemodel for an HVM one (libxl's default)"},
		{policy.TypePV, "usbback in dom0"},
		{policy.TypeQUSB, "QEMU's qusb backend"},
		{policy.TypeDeviceModel, "an emulated controller in the guest's device model"},
	},
	"version=": {
		{"1", "USB 1.1: low and full speed"},
		{"2", "USB 2.0: up to high speed (the default)"},
		{"3", "USB 3 (devicemodel only)"},
	},
}

// completeBusID completes a BUSID argument (explain).
func completeBusID(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return completeBusIDs(sysfsFlag(c), ""), cobra.ShellCompDirectiveNoFileComp
}

func sysfsFlag(c *cobra.Command) string {
	if s := flagValue(c, "sysfs"); s != "" {
		return s
	}
	return sysfsDefault()
}

// flagValue is a flag's value as given (or its default), "" without it.
func flagValue(c *cobra.Command, name string) string {
	if f := c.Flags().Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}

// flagCompletion is the completion of a flag by name, for every command
// that has it; nil for none.
func flagCompletion(name string) cobra.CompletionFunc {
	switch name {
	case "sysfs", "state-dir":
		return completeDirs
	case "log-format":
		return completeValues("auto", "json", "console")
	case "log-level":
		return completeValues("debug", "info", "warn", "error")
	case "prefer":
		return completeValues("serial", "port_path", "hash")
	case "domain":
		return func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			return completeDomains(c), cobra.ShellCompDirectiveNoFileComp
		}
	}
	return nil
}

// completeValues completes a flag from a fixed list.
func completeValues(vals ...string) cobra.CompletionFunc {
	return cobra.FixedCompletions(vals, cobra.ShellCompDirectiveNoFileComp)
}

func completeDirs(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return nil, cobra.ShellCompDirectiveFilterDirs
}
