package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/usbhotplugd/usbhotplugd/internal/inventory"
	"github.com/usbhotplugd/usbhotplugd/internal/mounts"
	"github.com/usbhotplugd/usbhotplugd/internal/policygen"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

func init() {
	register(command{name: "generate", group: groupPolicy, new: newGenerateCmd, examples: []string{
		"usbhotplugd generate --domain kiosk\t# a rule for every device present, to the guest kiosk",
		"usbhotplugd generate --domain kiosk --usbctrl version=2,ports=8 -o /etc/usbhotplugd/draft.toml --force",
		"usbhotplugd generate --domain kiosk --prefer port_path\t# name each device by its socket",
	}})
}

type generateOpts struct {
	domain, prefer, out, root, mountinfo string
	usbctrl                              []string
	force                                bool
}

func newGenerateCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "generate --domain NAME [--prefer serial|port_path|hash] [--usbctrl SPEC]... [-o FILE [--force]] [--sysfs DIR]",
		Short: "write a policy that attaches each device present to a guest, each named by its most stable identity",
	}
	var o generateOpts
	c.Flags().StringVar(&o.domain, "domain", "", "the guest the devices go to (required)")
	c.Flags().StringVar(&o.prefer, "prefer", policygen.BySerial, "the identity to name devices by when it names one alone: serial, port_path (the socket) or hash (the descriptors)")
	c.Flags().StringArrayVar(&o.usbctrl, "usbctrl", nil, "a controller for the domain's [domain.NAME] section, as xl.cfg's usbctrl (repeatable)")
	c.Flags().StringVarP(&o.out, "output", "o", "-", "the file to write (atomically); - for standard output")
	c.Flags().BoolVar(&o.force, "force", false, "replace the output file if it exists")
	c.Flags().StringVar(&o.root, "sysfs", sysfsDefault(), "sysfs root to read")
	c.Flags().StringVar(&o.mountinfo, "mountinfo", mounts.Default, "dom0's mounts: a disk dom0 uses gets no rule")
	c.RunE = func(c *cobra.Command, args []string) error {
		if o.domain == "" {
			return &usageError{"--domain NAME is required: the guest the devices go to"}
		}
		if err := checkPrefer(o.prefer); err != nil {
			return err
		}
		if err := policygen.CheckDomain(o.domain); err != nil {
			return &usageError{"--domain: " + err.Error()}
		}
		for _, s := range o.usbctrl {
			if _, err := policy.ParseCtrlSpec(s); err != nil {
				return &usageError{fmt.Sprintf("--usbctrl %q: %v", s, err)}
			}
		}
		return runGenerate(o, c.OutOrStdout())
	}
	return c
}

// checkPrefer refuses a --prefer that names no identity order, as a
// usage error (generate, assign and import-xlcfg take the flag).
func checkPrefer(by string) error {
	if !policygen.ValidPrefer(by) {
		return &usageError{fmt.Sprintf("--prefer %q: serial, port_path or hash", by)}
	}
	return nil
}

func runGenerate(o generateOpts, stdout io.Writer) error {
	sys := usbsysfs.NewFS(o.root)
	// A device that cannot be read gets no rule; the exit status and the
	// error, after the policy for the rest, say which.
	devs, scanErr := sys.Devices()
	if _, err := usbsysfs.Partial(scanErr); err != nil {
		return err
	}
	if scanErr != nil {
		scanErr = fmt.Errorf("%w (no rule was written for it)", scanErr)
	}
	out, err := policygen.Generate(devs, policygen.Options{Domain: o.domain, Prefer: o.prefer, Usbctrl: o.usbctrl,
		InUse: func(d usbsysfs.Device) string { return inventory.InUse(sys, d, o.mountinfo) }})
	if err != nil {
		return err
	}
	if o.out == "-" {
		_, err := stdout.Write(out)
		return errors.Join(err, scanErr)
	}
	if err := policygen.WriteFile(o.out, out, o.force); err != nil {
		if errors.Is(err, policygen.ErrExists) {
			return fmt.Errorf("%w: give --force to replace it", err)
		}
		return err
	}
	fmt.Fprintf(stdout, "wrote %s; check it with: usbhotplugd check %s\n", o.out, o.out)
	return scanErr
}
