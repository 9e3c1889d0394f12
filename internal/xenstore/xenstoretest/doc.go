// Package xenstoretest starts xenstore daemons for tests: the embedded
// server, or a private instance of one of Debian's real daemons
// (xen-utils-4.17), the C xenstored or the OCaml oxenstored that XCP-ng
// and XenServer run, without a hypervisor under the LD_PRELOAD shim in
// shim/xsshim.c, which this package compiles with gcc on first use.
//
// Each Store has its own daemon in its own directory. Dom0 connections go
// over the daemon's unix socket; guest connections (Store.Guest) go over a
// shared-memory ring exactly as a domU's would, so permission checks and
// quotas of the real daemons can be tested too. ForEach runs a test on
// every kind.
//
// When a daemon or gcc is missing, tests skip with a message naming the
// package to install; with CI set in the environment they fail instead, so
// that nothing skips in CI.
package xenstoretest
