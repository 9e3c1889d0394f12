// Command vmtest runs the VM scenarios: usbhotplugd inside a real Linux
// kernel under QEMU (see package vmtest). It ends with the line
// "N passed, N failed".
//
//	vmtest [-keep] [-v] [-calibrate DIR] [SCENARIO.scn…]   (default: test/vm/scenarios/*.scn)
//
// With -calibrate, each passing scenario's uevents and final state, in
// the form the fake kernel is compared in, are written to DIR/NAME.txt
// (but for scenarios that mount a disk or suspend dom0, which the fake
// kernel cannot, and those that plug a device whose probe is slow).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	vmtest "github.com/usbhotplugd/usbhotplugd/test/vm"
)

func main() {
	keep := flag.Bool("keep", false, "keep the logs of passing scenarios too")
	verbose := flag.Bool("v", false, "print each step")
	repo := flag.String("repo", ".", "the module's root")
	calib := flag.String("calibrate", "", "write each passing scenario's normalised uevents and final state to this directory")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, *repo, *keep, *verbose, *calib, flag.Args()))
}

func run(ctx context.Context, repo string, keep, verbose bool, calib string, files []string) int {
	if len(files) == 0 {
		files, _ = filepath.Glob(filepath.Join(repo, "test/vm/scenarios/*.scn"))
	}
	var scs []*vmtest.Scenario
	for _, f := range files {
		sc, err := vmtest.ParseFile(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		scs = append(scs, sc)
	}
	work, err := os.MkdirTemp("", "vmtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer os.RemoveAll(work)
	start := time.Now()
	img, err := vmtest.Prepare(ctx, repo, work)
	if err != nil {
		fmt.Fprintf(os.Stderr, "preparing the VM: %v\n", err)
		fmt.Printf("0 passed, %d failed\n", len(scs))
		return 1
	}
	fmt.Printf("kernel %s; image ready in %.1fs\n", img.KVer, time.Since(start).Seconds())
	env := &vmtest.Env{Image: img, Keep: keep}
	if verbose {
		env.Logf = func(format string, a ...any) { fmt.Printf(format+"\n", a...) }
	}
	var results []vmtest.Result
	for _, sc := range scs {
		res := env.Run(ctx, sc)
		results = append(results, res)
		if res.Err != nil {
			fmt.Printf("FAIL %s (%.1fs): %v\n     logs: %s\n", res.Name, res.Elapsed.Seconds(), res.Err, res.Dir)
		} else {
			fmt.Printf("PASS %s (%.1fs)\n", res.Name, res.Elapsed.Seconds())
			if res.Retried != "" {
				fmt.Printf("     on a second VM: the first %s\n", res.Retried)
			}
			if calib != "" && sc.Mounts() {
				fmt.Printf("     not calibrated: it mounts a disk, which the fake kernel cannot\n")
			} else if calib != "" && sc.Suspends() {
				fmt.Printf("     not calibrated: it suspends dom0, which the fake kernel cannot\n")
			} else if calib != "" && sc.ProbesSlowly() {
				fmt.Printf("     not calibrated: a device's probe is slow, whose events the fake kernel orders otherwise\n")
			} else if calib != "" {
				if err := vmtest.WriteCalibration(filepath.Join(calib, res.Name+".txt"), res, img.KVer); err != nil {
					fmt.Fprintln(os.Stderr, err)
					return 2
				}
			}
		}
	}
	return vmtest.Summary(os.Stdout, results)
}
