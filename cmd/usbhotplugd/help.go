package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/usbhotplugd/usbhotplugd/internal/build"
)

func init() {
	register(command{name: "version", group: groupTool, quick: true, examples: []string{"usbhotplugd version"}, new: newVersionCmd})
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
	return "usbhotplugd " + build.Version + " (commit " + build.Commit + ", " + build.GoVersion() + ")"
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

func newCompletionCmd() *cobra.Command {
	return &cobra.Command{
		Use:       "completion bash|zsh|fish",
		Short:     "print the completion script for bash, zsh or fish",
		ValidArgs: []string{"bash", "zsh", "fish"},
		Args: func(c *cobra.Command, args []string) error {
			switch {
			case len(args) != 1:
				return &usageError{"name the shell: usbhotplugd completion bash, zsh or fish"}
			case args[0] != "bash" && args[0] != "zsh" && args[0] != "fish":
				return &usageError{fmt.Sprintf("%s is not supported (bash, zsh, fish)", args[0])}
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
