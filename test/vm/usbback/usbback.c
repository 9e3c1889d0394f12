// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * A stand-in for Xen's PVUSB backend driver (usbback), for end-to-end
 * tests of usbhotplugd in a kernel without Xen.
 *
 * Like usbback, its driver matches every interface, but its probe accepts
 * an interface only when the interface's device is in a port of a backend.
 * usbback learns the ports from its xenbus watch on the backends' port
 * nodes; this module has no xenbus, so a helper that watches the same
 * nodes writes them to the "ports" parameter: "BUSID@VER" entries (VER is
 * the backend's usb-ver) separated by spaces. An explicit bind from user
 * space waits up to a second for the busid to appear there, since the
 * helper's copy of the ports lags the store by a watch round trip, as
 * usbback's own watch does. (Loading the module probes the interfaces
 * without a driver from insmod's context, so each of those waits too,
 * once, at boot.)
 *
 * It refuses hubs, high-speed devices at a version 1 port and SuperSpeed
 * devices, with ENODEV, as usbback does. Every decision is logged with the
 * prefix "usbback-standin:" so that tests can check which binds happened.
 */
#include <linux/module.h>
#include <linux/usb.h>
#include <linux/wait.h>
#include <linux/sched.h>
#include <linux/string.h>
#include <linux/spinlock.h>

#define PORTS_MAX 4096

static char ports[PORTS_MAX];
static DEFINE_SPINLOCK(ports_lock);
static DECLARE_WAIT_QUEUE_HEAD(ports_wq);

static int ports_set(const char *val, const struct kernel_param *kp)
{
	size_t n = strnlen(val, PORTS_MAX);

	if (n >= PORTS_MAX)
		return -ENOSPC;
	spin_lock(&ports_lock);
	memcpy(ports, val, n);
	ports[n] = '\0';
	if (n > 0 && ports[n - 1] == '\n')
		ports[n - 1] = '\0';
	spin_unlock(&ports_lock);
	wake_up_all(&ports_wq);
	pr_info("usbback-standin: ports \"%s\"\n", val);
	return 0;
}

static int ports_get(char *buf, const struct kernel_param *kp)
{
	int n;

	spin_lock(&ports_lock);
	n = scnprintf(buf, PAGE_SIZE, "%s\n", ports);
	spin_unlock(&ports_lock);
	return n;
}

static const struct kernel_param_ops ports_ops = {
	.set = ports_set,
	.get = ports_get,
};
module_param_cb(ports, &ports_ops, NULL, 0644);
MODULE_PARM_DESC(ports, "busids in backend ports, as BUSID@USBVER separated by spaces");

/* port_version returns the usb-ver of the port holding busid, or 0. */
static int port_version(const char *busid)
{
	size_t bl = strlen(busid);
	const char *p;
	int ver = 0;

	spin_lock(&ports_lock);
	for (p = ports; *p; ) {
		const char *end = strchrnul(p, ' ');

		if ((size_t)(end - p) > bl + 1 && !strncmp(p, busid, bl) && p[bl] == '@') {
			ver = p[bl + 1] - '0';
			break;
		}
		p = *end ? end + 1 : end;
	}
	spin_unlock(&ports_lock);
	return ver;
}

static int usbback_probe(struct usb_interface *intf, const struct usb_device_id *id)
{
	struct usb_device *udev = interface_to_usbdev(intf);
	const char *busid = dev_name(&udev->dev);
	const char *why = NULL;
	int ver = port_version(busid);

	if (udev->descriptor.bDeviceClass == USB_CLASS_HUB)
		why = "a hub";
	else if (udev->speed >= USB_SPEED_SUPER)
		why = "SuperSpeed";
	/* Only an explicit bind (user space) waits for the helper's copy. */
	if (!why && !ver && !(current->flags & PF_KTHREAD))
		wait_event_interruptible_timeout(ports_wq, (ver = port_version(busid)) != 0, HZ);
	if (!why && !ver)
		why = "in no port";
	else if (!why && ver == 1 && udev->speed == USB_SPEED_HIGH)
		why = "high-speed at a version 1 port";
	if (why) {
		pr_info("usbback-standin: refused %s (%s) by %s\n", dev_name(&intf->dev), why,
			(current->flags & PF_KTHREAD) ? "kernel" : current->comm);
		return -ENODEV;
	}
	pr_info("usbback-standin: bound %s (port version %d) by %s\n", dev_name(&intf->dev), ver,
		(current->flags & PF_KTHREAD) ? "kernel" : current->comm);
	return 0;
}

static void usbback_disconnect(struct usb_interface *intf)
{
	pr_info("usbback-standin: released %s\n", dev_name(&intf->dev));
}

/* No match flags: every interface matches; driver_info ends the table's scan. */
static const struct usb_device_id usbback_ids[] = {
	{ .driver_info = 1 },
	{ }
};
MODULE_DEVICE_TABLE(usb, usbback_ids);

static struct usb_driver usbback_driver = {
	.name = "usbback",
	.probe = usbback_probe,
	.disconnect = usbback_disconnect,
	.id_table = usbback_ids,
};
module_usb_driver(usbback_driver);

MODULE_DESCRIPTION("Stand-in for Xen's PVUSB backend: binds only devices in backend ports");
MODULE_LICENSE("GPL");
