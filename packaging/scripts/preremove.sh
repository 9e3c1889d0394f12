#!/bin/sh
# Stop the agent before its files go. Devices stay where they are: an
# attached device remains with its guest, recorded in xenstore as libxl
# records it.
set -e
if [ -d /run/systemd/system ]; then
	systemctl disable --now usbhotplugd.service >/dev/null 2>&1 || true
fi
exit 0
