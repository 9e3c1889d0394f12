// Package metrics owns usbhotplugd's Prometheus metrics: their names, labels
// and help texts, the counters and gauges the agent updates, and their
// rendering as Families, which two consumers share: the textfile that
// node_exporter's textfile collector reads, and the control socket's
// metrics request, which usbhotplugd-exporter serves over HTTP with the
// official client library.
//
// The agent opens no TCP port: the hardened unit keeps its sandbox
// (RestrictAddressFamilies=AF_UNIX AF_NETLINK). The textfile is rewritten
// atomically (write, fsync, rename), only when something changed or when
// the heartbeat is due, so an idle agent adds no wake-ups of its own.
package metrics
