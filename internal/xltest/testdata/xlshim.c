/*
 * xlshim: what xl 4.17 asks of libxenctrl before it reaches xenstore, for
 * running the real xl beside usbhotplugd without a hypervisor. Preloaded
 * after xenstoretest's shim (which fakes xc_interface_open): a Xen 4.17
 * with two CPUs and one node.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <string.h>

int xc_version(void *xch, int cmd, void *arg)
{
	(void)xch;
	switch (cmd) {
	case 0: /* XENVER_version */
		return (4 << 16) | 17;
	case 1: /* XENVER_extraversion */
		if (arg) strcpy(arg, ".0");
		return 0;
	case 3: /* XENVER_capabilities */
		if (arg) strcpy(arg, "xen-3.0-x86_64");
		return 0;
	case 4: /* XENVER_changeset */
		if (arg) strcpy(arg, "unavailable");
		return 0;
	case 7: /* XENVER_pagesize */
		return 4096;
	default:
		return 0;
	}
}

int xc_get_max_cpus(void *xch) { (void)xch; return 2; }
int xc_get_online_cpus(void *xch) { (void)xch; return 2; }
int xc_get_max_nodes(void *xch) { (void)xch; return 1; }

/* The leading fields of xc_physinfo_t: threads per core, cores per socket,
 * CPUs, highest CPU id, nodes, highest node id. */
int xc_physinfo(void *xch, void *info)
{
	(void)xch;
	uint32_t *p = info;
	p[0] = 1; p[1] = 2; p[2] = 2; p[3] = 1; p[4] = 1; p[5] = 0;
	return 0;
}

/* No XSM: a domain's security label is unknown, as libxl allows. */
int xc_flask_sid_to_context(void *xch, int sid, char *buf, uint32_t size)
{
	(void)xch; (void)sid; (void)buf; (void)size;
	return -1;
}

/*
 * Every domain asked about is running, PV, with the uuid in
 * $XLSHIM_UUID_<domid> (dom0: zeros), which names its libxl userdata file.
 * The leading fields of xc_dominfo_t in 4.17; the rest is zeroed.
 */
#include <stdio.h>
#include <stdlib.h>

static void parse_uuid(const char *s, unsigned char out[16])
{
	memset(out, 0, 16);
	for (int i = 0; s && *s && i < 16;) {
		if (*s == '-') { s++; continue; }
		unsigned v;
		if (sscanf(s, "%2x", &v) != 1)
			return;
		out[i++] = v;
		s += 2;
	}
}

int xc_domain_getinfo(void *xch, uint32_t first_domid, unsigned int max, void *info)
{
	(void)xch;
	if (max < 1)
		return 0;
	unsigned char *b = info;
	memset(b, 0, 104);
	uint32_t *p = info;
	p[0] = first_domid;
	p[2] = 1u << 5; /* running */
	*(unsigned long *)(b + 64) = 524288; /* max_memkb */
	p[18] = 1;                            /* nr_online_vcpus */
	char name[32];
	snprintf(name, sizeof name, "XLSHIM_UUID_%u", first_domid);
	parse_uuid(getenv(name), b + 80);
	return 1;
}

/* The same, as xc_domaininfo_t (struct xen_domctl_getdomaininfo, 4.17). */
int xc_domain_getinfolist(void *xch, uint32_t first_domain, unsigned int max, void *info)
{
	(void)xch;
	if (max < 1)
		return 0;
	unsigned char *b = info;
	memset(b, 0, 104);
	*(uint16_t *)b = first_domain;
	*(uint32_t *)(b + 4) = 1u << 5;        /* XEN_DOMINF_running */
	*(uint64_t *)(b + 16) = 524288 / 4;    /* max_pages */
	*(uint32_t *)(b + 64) = 1;             /* nr_online_vcpus */
	char name[32];
	snprintf(name, sizeof name, "XLSHIM_UUID_%u", first_domain);
	parse_uuid(getenv(name), b + 76);
	return 1;
}

/*
 * Each write xl makes to a file under sysfs goes to the test's fake
 * kernel instead, over the unix socket $XLSHIM_SYSFS_SOCK, as
 * "PATH<TAB>BYTES<NL>" (PATH relative to the sysfs root, resolved as the
 * kernel resolves it); the answer is the errno the kernel gives ("0" for
 * none), which xl gets as a real kernel's. libxl writes each interface
 * name with open and write(2), no newline.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

static ssize_t (*real_write)(int, const void *, size_t);

/* The kernel's answer to one write, an errno; EIO when it cannot be asked. */
static int ask_kernel(const char *sock, const char *rel, const void *buf, size_t n)
{
	struct sockaddr_un a;
	memset(&a, 0, sizeof a);
	a.sun_family = AF_UNIX;
	if (strlen(sock) >= sizeof a.sun_path)
		return EIO;
	strcpy(a.sun_path, sock);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return EIO;
	if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
		close(s);
		return EIO;
	}
	char line[8400];
	int m = snprintf(line, sizeof line, "%s\t%.*s\n", rel, (int)n, (const char *)buf);
	if (m <= 0 || (size_t)m >= sizeof line || real_write(s, line, m) != m) {
		close(s);
		return EIO;
	}
	char ans[16];
	size_t got = 0;
	while (got < sizeof ans - 1) {
		ssize_t r = read(s, ans + got, sizeof ans - 1 - got);
		if (r <= 0)
			break;
		got += r;
		if (ans[got - 1] == '\n')
			break;
	}
	close(s);
	if (got == 0 || ans[got - 1] != '\n')
		return EIO;
	ans[got] = 0;
	return atoi(ans);
}

ssize_t write(int fd, const void *buf, size_t n)
{
	if (!real_write)
		real_write = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
	const char *sock = getenv("XLSHIM_SYSFS_SOCK");
	const char *root = getenv("XLSHIM_SYSFS_ROOT");
	if (sock && *sock && root && n < 4096) {
		char link[64], path[4096];
		snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
		ssize_t l = readlink(link, path, sizeof path - 1);
		if (l > 0) {
			path[l] = 0;
			size_t rl = strlen(root);
			const char *rel = NULL;
			if (strncmp(path, root, rl) == 0 && path[rl] == '/')
				rel = path + rl + 1;
			else if (strncmp(path, "/sys/", 5) == 0)
				rel = path + 5;
			if (rel) {
				int e = ask_kernel(sock, rel, buf, n);
				if (e) {
					errno = e;
					return -1;
				}
				return n;
			}
		}
	}
	return real_write(fd, buf, n);
}
