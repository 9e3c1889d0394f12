package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/usbhotplugd/usbhotplugd/internal/daemon"
	"github.com/usbhotplugd/usbhotplugd/internal/replay"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/server"
	"github.com/usbhotplugd/usbhotplugd/policy"
	"github.com/usbhotplugd/usbhotplugd/rules"
)

func init() {
	register(command{name: "replay", group: groupPolicy, new: newReplayCmd, examples: []string{
		"usbhotplugd replay\t# a kiosk's day, with the shipped kiosk policy",
		"usbhotplugd replay --policy my.toml host.jsonl",
	}})
}

func newReplayCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "replay [--policy FILE] [--json] [--log] [TRACE]",
		Short: "run the agent on a recorded trace with a simulated dom0 (default: a kiosk's day) and show what it decides",
		Args:  maxArgs(1, "one trace at most"),
	}
	polPath := c.Flags().String("policy", "", "policy file (default: the shipped kiosk example)")
	asJSON := c.Flags().Bool("json", false, "print JSON")
	verbose := c.Flags().Bool("log", false, "also print the agent's log to stderr")
	c.RunE = func(c *cobra.Command, args []string) error {
		return runReplay(c.Context(), args, *polPath, *asJSON, *verbose, c.OutOrStdout(), c.ErrOrStderr())
	}
	return c
}

func runReplay(ctx context.Context, args []string, polPath string, asJSON, verbose bool, stdout, stderr io.Writer) error {
	var p *policy.Policy
	var err error
	if polPath == "" {
		p, err = rules.Parse("examples/kiosk.toml")
	} else {
		p, err = policy.ParseFile(polPath)
	}
	if err != nil {
		return err
	}
	var recs []uevent.Record
	if len(args) == 0 {
		b, err := rules.Read("demo/kiosk-day.jsonl")
		if err != nil {
			return err
		}
		recs, err = uevent.ReadTrace(bytes.NewReader(b), "rules/demo/kiosk-day.jsonl")
		if err != nil {
			return err
		}
	} else {
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		if recs, err = uevent.ReadTrace(f, args[0]); err != nil {
			return err
		}
	}
	root, err := os.MkdirTemp("", "usbhotplugd-replay-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	srv := server.New()
	defer srv.Close()
	log := zerolog.Nop()
	if verbose {
		log = zerolog.New(daemon.SafeConsole(zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.TimeOnly})).With().Timestamp().Logger()
	}
	res, err := replay.Run(ctx, recs, replay.Options{Policy: p, Root: root, Log: log,
		Dial: func(ctx context.Context) (*xenstore.Conn, error) { return xenstore.NewConn(srv.Pipe(0)), nil }})
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(stdout, "# replay of %s with policy %s, on an embedded xenstore with simulated backends\n", plural(len(recs), "trace record"), p.File)
	return res.WriteText(stdout)
}
