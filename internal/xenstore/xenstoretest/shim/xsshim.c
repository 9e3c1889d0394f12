// SPDX-License-Identifier: GPL-3.0-or-later
//
// xsshim: an LD_PRELOAD library that lets Debian's C xenstored run on a
// machine without a hypervisor. It stands in for the few libxenctrl,
// libxenevtchn and libxengnttab calls xenstored makes, and redirects the
// /proc/xen/xsd_port and /proc/xen/xsd_kva files to a private directory.
//
// Environment:
//   XSSHIM_DIR  directory holding xsd_port, xsd_kva and ring-<domid> pages
//               (required).
//
// Guest rings: xengnttab_map_grant_ref maps XSSHIM_DIR/ring-<domid>, a
// shared 4 KiB file, so a test can talk to xenstored as that domain over
// the ring. Event channel notifications from the test are 4-byte port
// numbers written to XSSHIM_DIR/evtchn (a FIFO made here); notifications
// from xenstored are not delivered anywhere: the test polls the ring.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *shim_dir(void)
{
	const char *d = getenv("XSSHIM_DIR");
	return d ? d : "/tmp";
}

static int shim_path(char *buf, size_t n, const char *name)
{
	int r = snprintf(buf, n, "%s/%s", shim_dir(), name);
	return (r < 0 || (size_t)r >= n) ? -1 : 0;
}

// Redirect the two /proc/xen files; everything else goes to libc.
static const char *redirect(const char *path, char *buf, size_t n)
{
	if (path && strncmp(path, "/proc/xen/xsd_", 14) == 0 &&
	    shim_path(buf, n, path + 10) == 0)
		return buf;
	return path;
}

typedef int (*open_fn)(const char *, int, ...);

int open(const char *path, int flags, ...)
{
	static open_fn real;
	char buf[4096];
	mode_t mode = 0;
	if (!real)
		real = (open_fn)dlsym(RTLD_NEXT, "open");
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	return real(redirect(path, buf, sizeof(buf)), flags, mode);
}

int open64(const char *path, int flags, ...)
{
	static open_fn real;
	char buf[4096];
	mode_t mode = 0;
	if (!real)
		real = (open_fn)dlsym(RTLD_NEXT, "open64");
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	return real(redirect(path, buf, sizeof(buf)), flags, mode);
}

/* ---- libxenctrl ---- */

void *xc_interface_open(void *logger, void *dombuild_logger, unsigned flags)
{
	(void)logger; (void)dombuild_logger; (void)flags;
	return calloc(1, 64);
}

int xc_interface_close(void *xch)
{
	free(xch);
	return 0;
}

// Every domain asked about exists and is running: xenstored learns of a
// domain's end through XS_RELEASE in tests. Only the fields xenstored reads
// are written (domid, then the flag bits), so the caller's struct layout
// beyond them does not matter.
int xc_domain_getinfo(void *xch, uint32_t first_domid, unsigned int max, void *info)
{
	(void)xch;
	if (max < 1)
		return 0;
	uint32_t *p = info;
	p[0] = first_domid; // domid
	p[1] = 0;           // ssidref
	p[2] = 0;           // dying, crashed, shutdown, ... bit-fields
	p[3] = 0;           // shutdown_reason
	return 1;
}

/* ---- libxenevtchn ---- */

struct evtchn { int fd; };
static int next_port = 10;

void *xenevtchn_open(void *logger, unsigned flags)
{
	(void)logger; (void)flags;
	char path[4096];
	struct evtchn *h = calloc(1, sizeof(*h));
	if (!h || shim_path(path, sizeof(path), "evtchn"))
		return NULL;
	if (mkfifo(path, 0600) == -1 && errno != EEXIST)
		return NULL;
	// O_RDWR keeps the FIFO open with no writer, so poll never sees EOF.
	h->fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (h->fd == -1) {
		free(h);
		return NULL;
	}
	return h;
}

void *xenevtchn_fdopen(void *logger, int fd, unsigned flags)
{
	(void)fd;
	return xenevtchn_open(logger, flags);
}

int xenevtchn_close(void *h)
{
	struct evtchn *e = h;
	if (e) {
		close(e->fd);
		free(e);
	}
	return 0;
}

int xenevtchn_fd(void *h) { return ((struct evtchn *)h)->fd; }

int xenevtchn_bind_virq(void *h, unsigned int virq)
{
	(void)h; (void)virq;
	return 1;
}

int xenevtchn_bind_interdomain(void *h, uint32_t domid, uint32_t remote_port)
{
	(void)h; (void)domid; (void)remote_port;
	return next_port++;
}

int xenevtchn_unbind(void *h, uint32_t port) { (void)h; (void)port; return 0; }
int xenevtchn_notify(void *h, uint32_t port) { (void)h; (void)port; return 0; }
int xenevtchn_unmask(void *h, uint32_t port) { (void)h; (void)port; return 0; }

int xenevtchn_pending(void *h)
{
	uint32_t port;
	ssize_t n = read(((struct evtchn *)h)->fd, &port, sizeof(port));
	if (n != (ssize_t)sizeof(port))
		return 2; // spurious: not the VIRQ port, so xenstored only rescans rings
	return (int)port;
}

/* ---- libxengnttab ---- */

void *xengnttab_open(void *logger, unsigned flags)
{
	(void)logger; (void)flags;
	return calloc(1, 16);
}

int xengnttab_close(void *h) { free(h); return 0; }
int xengnttab_set_max_grants(void *h, uint32_t n) { (void)h; (void)n; return 0; }

void *xengnttab_map_grant_ref(void *h, uint32_t domid, uint32_t ref, int prot)
{
	(void)h; (void)ref;
	char name[64], path[4096];
	snprintf(name, sizeof(name), "ring-%u", domid);
	if (shim_path(path, sizeof(path), name))
		return NULL;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd == -1)
		return NULL;
	if (ftruncate(fd, 4096) == -1) {
		close(fd);
		return NULL;
	}
	void *p = mmap(NULL, 4096, prot, MAP_SHARED, fd, 0);
	close(fd);
	return p == MAP_FAILED ? NULL : p;
}

int xengnttab_unmap(void *h, void *addr, uint32_t count)
{
	(void)h;
	return munmap(addr, 4096 * (size_t)count);
}
