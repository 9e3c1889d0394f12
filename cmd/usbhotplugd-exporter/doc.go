// Command usbhotplugd-exporter serves the running agent's metrics to
// Prometheus over HTTP, with Prometheus' official client library.
//
// It is a binary of its own so that the agent and its short commands do
// not pay the library's start-up work, and so that the agent's unit keeps
// its sandbox: the exporter opens no socket of the Internet families
// itself when systemd hands it its listener (socket activation, the
// usbhotplugd-exporter.socket unit), so its unit keeps
// RestrictAddressFamilies=AF_UNIX. At each scrape it asks the agent for
// its metrics over the control socket (the read-only metrics request) and
// exposes them as constant metrics: the agent stays the one owner of the
// numbers, and a down agent reads usbhotplugd_up 0.
package main
