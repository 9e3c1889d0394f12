// Package packaging holds what makes the .deb and .rpm of usbhotplugd (the
// systemd unit, the default policy, the nfpm configuration, the
// maintainer scripts) and the test that builds, installs and removes the
// .deb. It has no code of its own.
package packaging
