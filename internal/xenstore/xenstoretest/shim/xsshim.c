// SPDX-License-Identifier: GPL-3.0-or-later
//
// xsshim: an LD_PRELOAD library that lets Debian's xenstoreds, the C
// xenstored and the OCaml oxenstored, run on a machine without a
// hypervisor. It stands in for the few libxenctrl, libxenevtchn and
// libxengnttab calls they make, and keeps every file they touch in a
// private directory: the /proc/xen/xsd_port and /proc/xen/xsd_kva files,
// and oxenstored's compiled-in run directory /var/run/xenstored (its
// socket, and the database it dumps), so a test never touches the host's.
//
// Environment:
//   XSSHIM_DIR  directory holding xsd_port, xsd_kva and ring-<domid> pages
//               (required).
//
// Guest rings: xengnttab_map_grant_ref (C) and xc_map_foreign_range
// (OCaml) map XSSHIM_DIR/ring-<domid>, a shared 4 KiB file, so a test can
// talk to the daemon as that domain over the ring. The local event channel
// port bound for a domain is written to XSSHIM_DIR/port-<domid>.
// Notifications from the test are 4-byte port numbers written to
// XSSHIM_DIR/evtchn (a FIFO made here); oxenstored serves a ring only when
// its own port is notified. Notifications from the daemon are not
// delivered anywhere: the test polls the ring.
//
// setrlimit cannot fail: oxenstored raises its file limit to
// /proc/sys/fs/nr_open, past the hard limit a test may run under, and dies
// if refused; the request is clamped to the hard limit instead.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
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

// Redirect the two /proc/xen files and oxenstored's run directory;
// everything else goes to libc.
static const char *redirect(const char *path, char *buf, size_t n)
{
	static const char *const rundirs[] = {"/var/run/xenstored", "/run/xenstored"};
	if (!path)
		return path;
	if (strncmp(path, "/proc/xen/xsd_", 14) == 0 &&
	    shim_path(buf, n, path + 10) == 0)
		return buf;
	for (size_t i = 0; i < sizeof(rundirs) / sizeof(rundirs[0]); i++) {
		size_t l = strlen(rundirs[i]);
		if (strncmp(path, rundirs[i], l) == 0 && (path[l] == '/' || path[l] == 0)) {
			int r = snprintf(buf, n, "%s%s", shim_dir(), path + l);
			// Never fall through to the host's directory.
			return (r < 0 || (size_t)r >= n) ? "/nonexistent/xsshim-path-too-long" : buf;
		}
	}
	return path;
}

#define REAL(name) static __typeof__(name) *real; if (!real) real = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

int unlink(const char *path)
{
	char buf[4096];
	REAL(unlink);
	return real(redirect(path, buf, sizeof(buf)));
}

int mkdir(const char *path, mode_t mode)
{
	char buf[4096];
	REAL(mkdir);
	return real(redirect(path, buf, sizeof(buf)), mode);
}

int rename(const char *from, const char *to)
{
	char b1[4096], b2[4096];
	REAL(rename);
	return real(redirect(from, b1, sizeof(b1)), redirect(to, b2, sizeof(b2)));
}

int access(const char *path, int mode)
{
	char buf[4096];
	REAL(access);
	return real(redirect(path, buf, sizeof(buf)), mode);
}

int stat64(const char *path, struct stat64 *st)
{
	char buf[4096];
	REAL(stat64);
	return real(redirect(path, buf, sizeof(buf)), st);
}

// A unix socket address under the run directory, rewritten into *out.
static const struct sockaddr *unix_redirect(const struct sockaddr *sa, socklen_t *len, struct sockaddr_un *out)
{
	char buf[4096];
	if (!sa || sa->sa_family != AF_UNIX || *len <= offsetof(struct sockaddr_un, sun_path))
		return sa;
	const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
	char path[sizeof(un->sun_path) + 1] = {0};
	memcpy(path, un->sun_path, *len - offsetof(struct sockaddr_un, sun_path));
	const char *p = redirect(path, buf, sizeof(buf));
	if (p == path)
		return sa;
	memset(out, 0, sizeof(*out));
	out->sun_family = AF_UNIX;
	if (strlen(p) >= sizeof(out->sun_path))
		p = "/nonexistent/xsshim-path-too-long";
	strcpy(out->sun_path, p);
	*len = offsetof(struct sockaddr_un, sun_path) + strlen(p) + 1;
	return (const struct sockaddr *)out;
}

int bind(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct sockaddr_un un;
	REAL(bind);
	sa = unix_redirect(sa, &len, &un);
	return real(fd, sa, len);
}

int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct sockaddr_un un;
	REAL(connect);
	sa = unix_redirect(sa, &len, &un);
	return real(fd, sa, len);
}

int setrlimit(__rlimit_resource_t res, const struct rlimit *lim)
{
	REAL(setrlimit);
	int r = real(res, lim);
	if (r == 0 || errno != EPERM)
		return r;
	struct rlimit hard, want = *lim;
	if (getrlimit(res, &hard) == -1)
		return 0;
	if (want.rlim_max > hard.rlim_max)
		want.rlim_max = hard.rlim_max;
	if (want.rlim_cur > want.rlim_max)
		want.rlim_cur = want.rlim_max;
	real(res, &want);
	return 0;
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

int openat(int dirfd, const char *path, int flags, ...)
{
	char buf[4096];
	mode_t mode = 0;
	REAL(openat);
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	return real(dirfd, redirect(path, buf, sizeof(buf)), flags, mode);
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

// The same for the list call oxenstored makes: one entry, domain first,
// running (flags 0).
int xc_domain_getinfolist(void *xch, uint32_t first_domid, unsigned int max, void *info)
{
	(void)xch;
	if (max < 1)
		return 0;
	uint16_t *p = info;
	p[0] = (uint16_t)first_domid; // domain
	p[1] = 0;                     // pad
	p[2] = p[3] = 0;              // flags
	return 1;
}

static void *map_ring(uint32_t domid, int prot)
{
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

// oxenstored maps a guest's ring by its frame number.
void *xc_map_foreign_range(void *xch, uint32_t domid, int size, int prot, unsigned long mfn)
{
	(void)xch; (void)size; (void)mfn;
	return map_ring(domid, prot);
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

// The local port is recorded in port-<domid> for the test to notify.
int xenevtchn_bind_interdomain(void *h, uint32_t domid, uint32_t remote_port)
{
	(void)h; (void)remote_port;
	int port = next_port++;
	char name[64], path[4096], num[16];
	snprintf(name, sizeof(name), "port-%u", domid);
	if (shim_path(path, sizeof(path), name) == 0) {
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd != -1) {
			int n = snprintf(num, sizeof(num), "%d", port);
			if (write(fd, num, n) != n)
				port = -1;
			close(fd);
		}
	}
	return port;
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
	return map_ring(domid, prot);
}

int xengnttab_unmap(void *h, void *addr, uint32_t count)
{
	(void)h;
	return munmap(addr, 4096 * (size_t)count);
}
