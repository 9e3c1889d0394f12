package vmtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// cpioWriter writes the "newc" format the kernel unpacks as initramfs.
type cpioWriter struct {
	w   *bufio.Writer
	ino int
	err error
}

func (c *cpioWriter) header(name string, mode uint32, size int) {
	c.ino++
	fmt.Fprintf(c.w, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	c.w.WriteString(name)
	c.w.WriteByte(0)
	c.pad(110 + len(name) + 1)
}

func (c *cpioWriter) pad(n int) {
	for ; n%4 != 0; n++ {
		c.w.WriteByte(0)
	}
}

func (c *cpioWriter) dir(name string) { c.header(name, 0o040755, 0) }

func (c *cpioWriter) file(name string, mode uint32, data []byte) {
	c.header(name, 0o100000|mode, len(data))
	c.w.Write(data)
	c.pad(len(data))
}

func (c *cpioWriter) symlink(name, target string) {
	c.header(name, 0o120777, len(target))
	c.w.WriteString(target)
	c.pad(len(target))
}

func (c *cpioWriter) copy(name string, mode uint32, src string) {
	b, err := os.ReadFile(src)
	if err != nil && c.err == nil {
		c.err = err
	}
	c.file(name, mode, b)
}

func (c *cpioWriter) close() error {
	c.header("TRAILER!!!", 0, 0)
	if err := c.w.Flush(); err != nil && c.err == nil {
		c.err = err
	}
	return c.err
}

// Prepare fetches (or finds in the cache) everything the VM boots and
// writes the initramfs into work. repo is the module's root.
func Prepare(ctx context.Context, repo, work string) (*Image, error) {
	cache := CacheDir()
	kver, err := KernelVersion(ctx)
	if err != nil {
		return nil, err
	}
	root, err := kernelTree(ctx, cache, kver)
	if err != nil {
		return nil, err
	}
	mods, err := moduleFiles(ctx, root, kver)
	if err != nil {
		return nil, err
	}
	var kos []string
	for _, name := range TestModules {
		ko, err := buildModule(ctx, cache, filepath.Join(repo, "test/vm", name), name, kver)
		if err != nil {
			return nil, err
		}
		kos = append(kos, ko)
	}
	bb := "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		return nil, fmt.Errorf("busybox not found (apt-get install busybox-static): %w", err)
	}
	for _, b := range [][2]string{{"./cmd/usbhotplugd", "usbhotplugd"}, {"./test/vm/guest", "vmguest"}} {
		if err := goStatic(ctx, repo, b[0], filepath.Join(work, b[1])); err != nil {
			return nil, err
		}
	}
	img := &Image{KVer: kver, Kernel: filepath.Join(root, "boot", "vmlinuz-"+kver), Initrd: filepath.Join(work, "initrd.cpio")}
	f, err := os.Create(img.Initrd)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return img, writeInitramfs(f, work, mods, kos, bb)
}

func writeInitramfs(w io.Writer, work string, mods, kos []string, busybox string) error {
	c := &cpioWriter{w: bufio.NewWriterSize(w, 1<<20)}
	for _, d := range []string{"bin", "dev", "etc", "lib", "lib/modules", "proc", "run", "sys", "tmp"} {
		c.dir(d)
	}
	c.copy("init", 0o755, filepath.Join(work, "vmguest"))
	c.copy("bin/usbhotplugd", 0o755, filepath.Join(work, "usbhotplugd"))
	c.copy("bin/busybox", 0o755, busybox)
	for _, l := range []string{"sh", "cat", "ls", "dmesg", "echo"} {
		c.symlink("bin/"+l, "busybox")
	}
	var list []string
	for _, m := range append(mods, kos...) {
		name := "lib/modules/" + filepath.Base(m)
		c.copy(name, 0o644, m)
		list = append(list, "/"+name)
	}
	c.file("modules.list", 0o644, []byte(strings.Join(list, "\n")+"\n"))
	return c.close()
}
