package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/usbhotplugd/usbhotplugd/internal/policygen"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

func init() {
	register(command{name: "import-xlcfg", group: groupPolicy, new: newImportXLCmd, examples: []string{
		"usbhotplugd import-xlcfg /etc/xen/kiosk.cfg\t# its usbctrl= and usbdev= lines as a policy",
		"usbhotplugd import-xlcfg --prefer port_path /etc/xen/kiosk.cfg /etc/xen/desk.cfg",
	}})
}

func newImportXLCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "import-xlcfg [--prefer serial|port_path|hash] [--sysfs DIR] FILE...",
		Short: "turn xl.cfg usbctrl= and usbdev= lines into a policy, naming the devices present by stable identities",
		Args:  rangeArgs(1, -1),
	}
	prefer := c.Flags().String("prefer", policygen.BySerial, "the identity to name devices by when it names one alone: serial, port_path or hash")
	root := c.Flags().String("sysfs", sysfsDefault(), "sysfs root to read")
	c.RunE = func(c *cobra.Command, args []string) error {
		if err := checkPrefer(*prefer); err != nil {
			return err
		}
		return runImportXL(args, *prefer, *root, c.OutOrStdout(), c.ErrOrStderr())
	}
	return c
}

func runImportXL(files []string, prefer, root string, stdout, stderr io.Writer) error {
	var cfgs []*policygen.XLConfig
	for _, f := range files {
		b, err := policy.ReadRegular(f, policygen.MaxXLConfigSize, "an xl.cfg file")
		if err != nil {
			return err
		}
		c, err := policygen.ParseXLConfig(f, b)
		if err != nil {
			return fmt.Errorf("%w (xl refuses the file too; nothing converted)", err)
		}
		cfgs = append(cfgs, c)
	}
	out, problems, err := policygen.Import(cfgs, usbsysfs.NewFS(root), prefer)
	if err != nil {
		return err
	}
	if _, err := stdout.Write(out); err != nil {
		return err
	}
	for _, p := range problems {
		fmt.Fprintln(stderr, p)
	}
	if len(problems) > 0 {
		return &exitError{fmt.Sprintf("%d not converted; the policy written has the rest", len(problems))}
	}
	return nil
}
