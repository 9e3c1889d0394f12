// Package metrics owns usbhotplugd's Prometheus metrics: their names, labels
// and help texts, the counters and gauges the agent updates, and the
// textfile that node_exporter's textfile collector reads.
//
// The agent opens no TCP port: the hardened unit keeps its sandbox
// (RestrictAddressFamilies=AF_UNIX AF_NETLINK) and node_exporter, which a
// monitored fleet runs anyway, serves the file. The file is rewritten
// atomically (write, fsync, rename), only when something changed or when the
// heartbeat is due, so an idle agent adds no wake-ups of its own.
package metrics
