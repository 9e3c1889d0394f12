package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/usbhotplugd/usbhotplugd/internal/daemon"
	"github.com/usbhotplugd/usbhotplugd/internal/safetext"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

func init() {
	register(command{name: "devices", group: groupPolicy, new: newDevicesCmd, examples: []string{"usbhotplugd devices", "usbhotplugd devices --json"}})
	register(command{name: "record", group: groupPolicy, new: newRecordCmd, examples: []string{
		"usbhotplugd record --coldplug -o host.jsonl\t# as root; interrupt to stop",
		"usbhotplugd record --import-udevadm monitor.txt -o host.jsonl",
	}})
}

func newDevicesCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "devices [--json] [--sysfs DIR]",
		Short: "list the host's USB devices with busids, drivers and interfaces",
	}
	asJSON := c.Flags().Bool("json", false, "print JSON instead of a table")
	root := c.Flags().String("sysfs", sysfsDefault(), "sysfs root to read")
	c.RunE = func(c *cobra.Command, args []string) error { return runDevices(*root, *asJSON, c.OutOrStdout()) }
	return c
}

// runDevices lists what could be read; a device that could not be is
// named in the error after the list, and the exit status says so.
func runDevices(root string, asJSON bool, stdout io.Writer) error {
	devs, scanErr := usbsysfs.NewFS(root).Devices()
	if _, err := usbsysfs.Partial(scanErr); err != nil {
		return err
	}
	if asJSON {
		out := make([]daemon.Device, len(devs))
		for i, d := range devs {
			out[i] = daemon.DeviceOf(d)
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return errors.Join(enc.Encode(out), scanErr)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BUSID\tID\tBUS:ADDR\tSPEED\tCLASS\tSERIAL\tPORT PATH\tINTERFACES (class:driver)\tNAME")
	for _, d := range devs {
		var ifs []string
		for _, in := range d.Interfaces {
			drv := in.Driver
			switch {
			case drv == "" && !in.Authorized:
				drv = "deauthorized" // inert: no driver may probe it
			case drv == "":
				drv = "-"
			}
			ifs = append(ifs, policy.ClassName(in.Class)+":"+drv)
		}
		serial := tableSerial(d.Serial)
		name := safetext.Text(strings.TrimSpace(d.Manufacturer + " " + d.ProductName))
		class := policy.ClassName(d.Class)
		if d.Class == 0 {
			class = "-" // given per interface
		}
		path := safetext.Text(d.PortPath) // a platform controller's name is firmware's
		if path == "" {
			path = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%03d:%03d\t%s\t%s\t%s\t%s\t%s\t%s\n", d.BusID, d.ID(), d.BusNum, d.DevNum, d.Speed, class, serial, path, strings.Join(ifs, ","), name)
	}
	return errors.Join(tw.Flush(), scanErr)
}

// tableSerial is a serial as the devices table shows it: escaped (the
// device's own string: never raw on a terminal), and quoted when it holds
// a space, which would look like the end of its column and, trailing, not
// show at all: a rule copied from the table then matches. "-" is none.
func tableSerial(s string) string {
	t := safetext.Text(s)
	switch {
	case s == "":
		return "-"
	case strings.ContainsRune(s, ' ') || s == "-" || s[0] == '"':
		return `"` + strings.ReplaceAll(t, `"`, `\"`) + `"`
	}
	return t
}

type recordOpts struct {
	out, root, imp string
	cold           bool
}

func newRecordCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "record [-o FILE] [--coldplug] [--sysfs DIR] | --import-udevadm FILE [-o FILE]",
		Short: "record kernel uevents to a trace, or convert udevadm monitor text to one",
	}
	var o recordOpts
	c.Flags().StringVarP(&o.out, "output", "o", "-", "trace file to write (JSON lines); - for standard output")
	c.Flags().BoolVar(&o.cold, "coldplug", false, "begin with an add event for every device already present")
	c.Flags().StringVar(&o.root, "sysfs", sysfsDefault(), "sysfs root to read device attributes from")
	c.Flags().StringVar(&o.imp, "import-udevadm", "", "convert the text of udevadm monitor --property (--kernel and/or --udev) in FILE instead of listening")
	c.RunE = func(c *cobra.Command, args []string) error {
		if o.imp != "" && (o.cold || c.Flags().Changed("sysfs")) {
			return &usageError{"--import-udevadm converts a file: --coldplug and --sysfs are for listening to the kernel"}
		}
		return runRecord(c.Context(), o, c.OutOrStdout(), c.ErrOrStderr())
	}
	return c
}

func runRecord(ctx context.Context, o recordOpts, stdout, stderr io.Writer) error {
	w := stdout
	if o.out != "-" {
		f, err := os.OpenFile(o.out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	tw := uevent.NewTraceWriter(w)
	if o.imp != "" {
		f, err := os.Open(o.imp)
		if err != nil {
			return err
		}
		defer f.Close()
		recs, err := uevent.ImportUdevadm(f, o.imp)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if err := tw.Write(r); err != nil {
				return err
			}
		}
		fmt.Fprintf(stderr, "imported %s from %s\n", plural(len(recs), "event"), o.imp)
		return tw.Flush()
	}
	sys := usbsysfs.NewFS(o.root)
	l, err := uevent.Listen(0)
	if err != nil {
		return fmt.Errorf("%w (recording needs root, or CAP_NET_ADMIN for the receive buffer)", err)
	}
	defer l.Close()
	var src uevent.Source = l
	if o.cold {
		s, err := uevent.Coldplug(ctx, l, func() ([]uevent.Event, error) {
			evs, err := uevent.Scan(sys)
			unread, err := usbsysfs.Partial(err)
			for _, u := range unread {
				fmt.Fprintf(stderr, "usbhotplugd record: %s: not in the coldplug scan: %v\n", u.BusID, u.Err)
			}
			return evs, err
		})
		if err != nil {
			return err
		}
		defer s.Close()
		src = s
	}
	fmt.Fprintln(stderr, "recording kernel uevents; interrupt to stop")
	rec := &uevent.Recorder{Src: src, W: tw, Attrs: sys.Attrs, OnAttrError: func(busid string, err error) {
		fmt.Fprintf(stderr, "usbhotplugd record: %s: attributes not recorded: %v\n", busid, err)
	}}
	st, err := rec.Run(ctx)
	refused := ""
	if st.Refused > 0 {
		refused = fmt.Sprintf(", %s that failed validation (in the trace as overruns)", plural(st.Refused, "event"))
	}
	fmt.Fprintf(stderr, "recorded %s, %s%s\n", plural(st.Events, "event"), plural(st.Overruns, "overrun"), refused)
	return err
}
