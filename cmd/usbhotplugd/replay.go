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

	"github.com/usbhotplugd/usbhotplugd/internal/replay"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/server"
	"github.com/usbhotplugd/usbhotplugd/policy"
	"github.com/usbhotplugd/usbhotplugd/rules"
)

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("replay", "[--policy FILE] [--json] [--log] [TRACE]", stderr)
	polPath := fs.String("policy", "", "policy file (default: the shipped kiosk example)")
	asJSON := fs.Bool("json", false, "print JSON")
	verbose := fs.Bool("log", false, "also print the agent's log to stderr")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return &usageError{"one trace at most"}
	}
	var p *policy.Policy
	var err error
	if *polPath == "" {
		p, err = rules.Parse("examples/kiosk.toml")
	} else {
		p, err = policy.ParseFile(*polPath)
	}
	if err != nil {
		return err
	}
	var recs []uevent.Record
	if fs.NArg() == 0 {
		b, err := rules.Read("demo/kiosk-day.jsonl")
		if err != nil {
			return err
		}
		recs, err = uevent.ReadTrace(bytes.NewReader(b), "rules/demo/kiosk-day.jsonl")
		if err != nil {
			return err
		}
	} else {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return err
		}
		defer f.Close()
		if recs, err = uevent.ReadTrace(f, fs.Arg(0)); err != nil {
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
	if *verbose {
		log = zerolog.New(zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.TimeOnly}).With().Timestamp().Logger()
	}
	res, err := replay.Run(ctx, recs, replay.Options{Policy: p, Root: root, Log: log,
		Dial: func(ctx context.Context) (*xenstore.Conn, error) { return xenstore.NewConn(srv.Pipe(0)), nil }})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(stdout, "# replay of %d trace records with policy %s, on an embedded xenstore with simulated backends\n", len(recs), p.File)
	return res.WriteText(stdout)
}
