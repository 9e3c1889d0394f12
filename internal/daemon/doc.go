// Package daemon is `usbhotplugd run`: the agent as a set of tasks with
// one owner.
//
// The tasks are the kernel's uevent reader, the store session (its
// watches and the worker, redialled when xenstored restarts), the hook
// runner, the signal handler (SIGHUP reloads the policy), the systemd
// watchdog, the status writer and the local control socket. Each runs
// until the process stops; the first that fails stops all of them, its
// error is logged once at priority err, and Run returns it, so the process
// exits non-zero and systemd restarts it. A task that hangs on the way out
// does not hold the process: Run gives up waiting after StopTimeout.
//
// The watchdog is fed only while every task runs and the worker makes
// progress (no pass longer than the watchdog interval): a process that
// manages nothing is never kept alive by it.
//
// The control socket (ControlSocket, under the state directory) speaks a
// small JSON API, one object per line; see api.go and the README's "Local
// API". Peers are told apart by their kernel credentials (SO_PEERCRED,
// SO_PEERGROUPS): root may reload, members of the control group, by their
// primary or a supplementary group, may only read.
package daemon
