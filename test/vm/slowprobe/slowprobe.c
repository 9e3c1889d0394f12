// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * A USB driver whose probe is slow, for end-to-end tests of usbhotplugd
 * in a kernel without such a device.
 *
 * It matches QEMU's usb-serial (FTDI 0403:6001; the guest has no ftdi_sio)
 * and its probe sleeps delay_ms (a parameter, 15 s unless set) before it
 * takes the interface, as a broken webcam's or audio device's driver does
 * behind 5 s control-message timeouts, or one loading firmware. The kernel
 * holds the device's lock (and its hub's) for as long: reads of its
 * serial, manufacturer, product, bConfigurationValue and bNumInterfaces
 * block until the probe ends.
 *
 * Only the kernel's own probe (at plug time, by the hub's thread) is slow:
 * an explicit bind from user space, as when the device is given back, is
 * quick. But a device whose serial begins with slow_serial (a parameter,
 * "SLOWBIND" unless set) is slow in every probe, also in the write of a
 * bind or a drivers_probe from user space, which then lasts as long: as
 * under authorization before probe, where the kernel's own probe finds the
 * interface not authorized and the agent's drivers_probe runs the driver's
 * (slowbind.scn). Each probe is logged with the prefix "slowprobe:", so
 * that tests can tell when it began and when it ended.
 */
#include <linux/module.h>
#include <linux/usb.h>
#include <linux/delay.h>
#include <linux/sched.h>

static unsigned int delay_ms = 15000;
module_param(delay_ms, uint, 0644);
MODULE_PARM_DESC(delay_ms, "how long the kernel's probe of a device sleeps, in milliseconds");

static char *slow_serial = "SLOWBIND";
module_param(slow_serial, charp, 0444);
MODULE_PARM_DESC(slow_serial, "a device whose serial begins with it sleeps in every probe, a bind from user space too");

static bool always_slow(struct usb_interface *intf)
{
	const char *serial = interface_to_usbdev(intf)->serial;

	return slow_serial && *slow_serial && serial &&
		!strncmp(serial, slow_serial, strlen(slow_serial));
}

static int slowprobe_probe(struct usb_interface *intf, const struct usb_device_id *id)
{
	unsigned int ms = READ_ONCE(delay_ms);

	if (!(current->flags & PF_KTHREAD) && !always_slow(intf)) {
		pr_info("slowprobe: bound %s by %s\n", dev_name(&intf->dev), current->comm);
		return 0;
	}
	pr_info("slowprobe: probing %s for %u ms by %s\n", dev_name(&intf->dev), ms, current->comm);
	msleep(ms);
	pr_info("slowprobe: probed %s\n", dev_name(&intf->dev));
	return 0;
}

static void slowprobe_disconnect(struct usb_interface *intf)
{
	pr_info("slowprobe: released %s\n", dev_name(&intf->dev));
}

static const struct usb_device_id slowprobe_ids[] = {
	{ USB_DEVICE(0x0403, 0x6001) },
	{ }
};
MODULE_DEVICE_TABLE(usb, slowprobe_ids);

static struct usb_driver slowprobe_driver = {
	.name = "slowprobe",
	.probe = slowprobe_probe,
	.disconnect = slowprobe_disconnect,
	.id_table = slowprobe_ids,
};
module_usb_driver(slowprobe_driver);

MODULE_DESCRIPTION("A USB driver whose probe sleeps: QEMU's usb-serial, for usbhotplugd's tests");
MODULE_LICENSE("GPL");
