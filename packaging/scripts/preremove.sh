#!/bin/sh
# Stop the agent when the package is removed; an upgrade keeps it running
# until the new version's postinstall restarts it. Devices stay where they
# are: an attached device remains with its guest, recorded in xenstore as
# libxl records it.
#   deb: prerm remove | upgrade NEW-VERSION    rpm: %preun 0 (erase) | 1 (upgrade)
set -e
unit=usbhotplugd.service
# the metrics exporter, if the admin enabled it
exporter="usbhotplugd-exporter.socket usbhotplugd-exporter.service"
case "$1" in
remove | 0)
	# deb-systemd-helper keeps the admin's choice of the agent for a
	# reinstall, and forgets it at a purge (postremove); rpm has no such
	# record, so an erase disables the agent. The exporter's socket was
	# enabled by the admin with systemctl, which no helper records:
	# disabled here, while its unit file is still there, or its
	# sockets.target.wants link would outlive the package.
	if [ "$1" = 0 ]; then
		systemctl disable "$unit" >/dev/null 2>&1 || true
	fi
	systemctl disable $exporter >/dev/null 2>&1 || true
	if [ -d /run/systemd/system ]; then
		systemctl stop "$unit" >/dev/null 2>&1 || true
		systemctl stop $exporter >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
