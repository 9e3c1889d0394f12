package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// manPage is usbhotplugd-exporter(8), which `make package` installs.
const manPage = "usbhotplugd-exporter.8"

// The man page is valid roff to groff with every warning on, every "-" in
// it is a minus ("\-", which a copied option needs, not a hyphen), and
// its OPTIONS are exactly the options --help lists.
func TestManPage(t *testing.T) {
	b, err := os.ReadFile(manPage)
	if err != nil {
		t.Fatalf("the exporter's man page: %v", err)
	}
	page := string(b)
	bare := regexp.MustCompile(`(^|[^\\])-`)
	for i, l := range strings.Split(page, "\n") {
		if bare.MatchString(l) {
			t.Errorf("%s:%d: a bare \"-\" (groff's hyphen): %s", manPage, i+1, l)
		}
	}
	var help bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, &help, &help); !errors.Is(err, pflag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	flagRe := regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z-]+)`)
	var want []string
	for _, m := range flagRe.FindAllStringSubmatch(help.String(), -1) {
		want = append(want, m[1])
	}
	want = append(want, "help") // pflag's own
	_, opts, _ := strings.Cut(page, "\n.SH OPTIONS\n")
	opts, _, _ = strings.Cut(opts, "\n.SH ")
	var got []string
	for _, m := range regexp.MustCompile(`(?m)^\.TP\n(?:\\fB\\-\w\\fR, )?\\fB\\-\\-([a-z\\-]+)\\fR`).FindAllStringSubmatch(opts, -1) {
		got = append(got, strings.ReplaceAll(m[1], `\-`, "-"))
	}
	slices.Sort(want)
	slices.Sort(got)
	if len(want) < 4 || !slices.Equal(got, want) {
		t.Errorf("the page's OPTIONS %v, --help's %v", got, want)
	}

	groff, err := exec.LookPath("groff")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("groff is not installed (groff-base): CI must check the man page")
		}
		t.Skip("groff is not installed (groff-base): the page's roff is not checked")
	}
	out, err := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z", manPage).CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("groff -man -Tutf8 -ww -z %s: %v\n%s", manPage, err, out)
	}
}
