// Package policygen writes policies: rules that name each device by the
// most stable identity it offers (its serial when no other device present
// has it, else the socket's port path, else its descriptor hash), for
// `usbhotplugd generate`, the xl.cfg importer and the drop-ins that
// `usbhotplugd assign` writes. Everything it writes parses with package
// policy; the importer's xl.cfg reader is its own, since TOML is not xl's
// format.
package policygen
