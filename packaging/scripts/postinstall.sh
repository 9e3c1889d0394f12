#!/bin/sh
# Debian's convention for a daemon: enabled and started when installed,
# restarted when upgraded, never enabled against the admin's choice. It
# starts only in a dom0 (the unit's condition), and the shipped policy
# passes nothing through until the admin writes rules.
#   deb: postinst configure [OLD-VERSION]    rpm: %post 1 (install) | 2 (upgrade)
set -e
unit=usbhotplugd.service
case "$1" in
configure | abort-upgrade | abort-deconfigure | abort-remove)
	if command -v deb-systemd-helper >/dev/null 2>&1; then
		# It remembers whether the admin disabled the unit, also across a
		# removal: enabled on the first install and after a reinstall.
		if deb-systemd-helper --quiet was-enabled "$unit"; then
			deb-systemd-helper enable "$unit" >/dev/null 2>&1 || true
		else
			deb-systemd-helper update-state "$unit" >/dev/null 2>&1 || true
		fi
	elif [ "$1" = configure ] && [ -z "$2" ]; then
		systemctl enable "$unit" >/dev/null 2>&1 || true
	fi
	;;
1) systemctl enable "$unit" >/dev/null 2>&1 || true ;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	if systemctl is-enabled --quiet "$unit" 2>/dev/null; then
		systemctl restart "$unit" >/dev/null 2>&1 || true
	fi
	# The metrics exporter is never enabled here (metrics are opt-in); one
	# that runs gets the new binary.
	systemctl try-restart usbhotplugd-exporter.service >/dev/null 2>&1 || true
fi
exit 0
