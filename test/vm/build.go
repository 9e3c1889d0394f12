package vmtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// Modules are the guest's modules, by name; their dependencies are
// resolved by modprobe against the kernel package's depmod output.
var Modules = []string{
	"virtio_pci", "virtio_console",
	"usbhid", "hid_generic", "usb_storage", "uas", "sd_mod",
	// What mounting the drives' FAT partition takes: vfat, and the
	// character sets the kernel's default mount options name (codepage
	// 437, iocharset ascii), which it would ask modprobe for.
	"vfat", "nls_cp437", "nls_ascii",
	"snd_usb_audio", "cdc_ether", "rndis_host",
	// The host controllers last: coldplugged devices find their drivers.
	"xhci_pci", "ehci_pci", "uhci_hcd",
}

// An Image is what QEMU boots.
type Image struct {
	KVer   string
	Kernel string // vmlinuz
	Initrd string
}

// CacheDir is where kernels and built modules are kept between runs:
// $USBHOTPLUGD_VMTEST_CACHE, else $XDG_CACHE_HOME/usbhotplugd-vmtest, else
// /var/cache/usbhotplugd-vmtest.
func CacheDir() string {
	if d := os.Getenv("USBHOTPLUGD_VMTEST_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "usbhotplugd-vmtest")
	}
	return "/var/cache/usbhotplugd-vmtest"
}

func run(ctx context.Context, dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, tail(out.String(), 2000))
	}
	return out.String(), nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

var kverRe = regexp.MustCompile(`linux-image-([0-9][^\s]*-amd64)`)

// KernelVersion is the kernel linux-image-amd64 depends on today
// ($USBHOTPLUGD_VMTEST_KVER overrides it).
func KernelVersion(ctx context.Context) (string, error) {
	if v := os.Getenv("USBHOTPLUGD_VMTEST_KVER"); v != "" {
		return v, nil
	}
	out, err := run(ctx, "", nil, "apt-cache", "depends", "linux-image-amd64")
	if err != nil {
		return "", err
	}
	m := kverRe.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("apt-cache depends linux-image-amd64 names no kernel: %s", out)
	}
	return m[1], nil
}

// kernelTree downloads and unpacks linux-image-KVER once, with its
// modules.dep made by depmod (the package ships none).
func kernelTree(ctx context.Context, cache, kver string) (string, error) {
	root := filepath.Join(cache, kver, "root")
	if _, err := os.Stat(filepath.Join(root, "lib/modules", kver, "modules.dep")); err == nil {
		return root, nil
	}
	dl := filepath.Join(cache, kver, "deb")
	if err := os.MkdirAll(dl, 0o755); err != nil {
		return "", err
	}
	if _, err := run(ctx, dl, nil, "apt-get", "download", "linux-image-"+kver); err != nil {
		return "", fmt.Errorf("fetching the kernel (is apt configured?): %w", err)
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "linux-image-"+kver+"_*.deb"))
	if len(debs) == 0 {
		return "", fmt.Errorf("apt-get download left no linux-image-%s .deb in %s", kver, dl)
	}
	tmp := root + ".tmp"
	os.RemoveAll(tmp)
	if _, err := run(ctx, "", nil, "dpkg-deb", "-x", debs[0], tmp); err != nil {
		return "", err
	}
	if _, err := run(ctx, "", nil, "depmod", "-b", tmp, kver); err != nil {
		return "", fmt.Errorf("depmod (apt-get install kmod): %w", err)
	}
	return root, os.Rename(tmp, root)
}

// moduleFiles lists the .ko files to load, dependencies first.
func moduleFiles(ctx context.Context, root, kver string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, m := range Modules {
		s, err := run(ctx, "", nil, "modprobe", "-d", root, "-S", kver, "--show-depends", m)
		if err != nil {
			return nil, err
		}
		for _, l := range strings.Split(s, "\n") {
			f := strings.Fields(l)
			if len(f) >= 2 && f[0] == "insmod" && !seen[f[1]] {
				seen[f[1]] = true
				out = append(out, f[1])
			}
		}
	}
	return out, nil
}

// TestModules are the modules of this repository the guest loads after
// the kernel's, each built from test/vm/NAME/{NAME.c,Kbuild}: the usbback
// stand-in, and slowprobe, a driver whose probe of QEMU's usb-serial
// sleeps (slowprobe.scn).
var TestModules = []string{"usbback", "slowprobe"}

// buildModule builds one of TestModules against Debian's headers for
// kver, once per source version.
func buildModule(ctx context.Context, cache, src, name, kver string) (string, error) {
	hdr := "/usr/src/linux-headers-" + kver
	if _, err := os.Stat(filepath.Join(hdr, "Makefile")); err != nil {
		return "", fmt.Errorf("no headers for %s (apt-get install linux-headers-%s): %w", kver, kver, err)
	}
	files := []string{name + ".c", "Kbuild"}
	h := sha256.New()
	var text [][]byte
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", err
		}
		h.Write(b)
		text = append(text, b)
	}
	sum := h.Sum(nil)
	dir := filepath.Join(cache, kver, name+"-"+hex.EncodeToString(sum[:6]))
	ko := filepath.Join(dir, name+".ko")
	if _, err := os.Stat(ko); err == nil {
		return ko, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for i, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f), text[i], 0o644); err != nil {
			return "", err
		}
	}
	if _, err := run(ctx, "", nil, "make", "-s", "-C", hdr, "M="+dir, "modules"); err != nil {
		return "", fmt.Errorf("building the %s module: %w", name, err)
	}
	return ko, nil
}

// goStatic builds a static binary of a package of the module.
func goStatic(ctx context.Context, repo, pkg, out string) error {
	_, err := run(ctx, repo, []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-o", out, pkg)
	return err
}
