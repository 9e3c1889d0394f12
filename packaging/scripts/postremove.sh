#!/bin/sh
# After the unit file is gone: systemd forgets it; a purge also forgets
# whether the admin had it enabled.
#   deb: postrm remove | purge | upgrade ...    rpm: %postun 0 | 1
set -e
unit=usbhotplugd.service
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = purge ] && command -v deb-systemd-helper >/dev/null 2>&1; then
	deb-systemd-helper purge "$unit" >/dev/null 2>&1 || true
fi
exit 0
