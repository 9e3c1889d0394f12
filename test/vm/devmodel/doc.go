// Package devmodel serves the project's simulated QEMU (internal/sim's
// DeviceModel) on a unix socket as QEMU serves QMP: the greeting, then
// one answer a command, with the command's id. The VM's guest serves it
// for HVM guests' device models, and so does the fake machine on the
// host, both on the socket libxl's QEMU has (qmp.SocketPath).
package devmodel
