// Package agent is usbhotplugd's reconciler: it keeps the host's USB
// devices where the policy sends them. Its tasks (PumpEvents, Serve on a
// store connection, RunHooks) run under internal/daemon's owner, or
// together under Run.
//
// Kernel uevents and xenstore watches are only hints: each names a device
// (by busid) or says "everything", and the device's entry in a coalescing
// queue is reconciled by one pass, in three parts:
//
//   - observe reads the device's whole state at once: sysfs (the device,
//     its interfaces and their drivers), its port if any, its ownership
//     and driver records, and what the agent remembers of it;
//   - plan (makePlan) is a pure function of that observation, the
//     policy's decision and the running domains: the steps to take and
//     the audit records, with no I/O, clock or lock;
//   - apply runs the steps through package assign and stops at the first
//     failure, which is recorded and retried with backoff; every step
//     leaves a state that the next pass finishes.
//
// A pass converges: stale ports are cleared, half-done attaches are
// finished, half-done detaches are rolled back, and the device is attached
// to the domain the policy names if exactly one domain of that name runs.
// Every decision that changes something is one audit record; a decision
// that repeats the last one is not recorded again.
//
// # Lifecycle
//
// A device is in one of these states; a pass, asked for by a trigger (a
// kernel event, a port or domain change, a reload, a second look, a
// retry), moves it as the table says. "own" is the agent's ownership
// record (of the busid: a port the agent made stays its own whatever
// device is plugged there); "target" the domain the policy names.
//
//	state      what holds                                   what a pass does, and the next state
//	absent     not on the host                              its port cleared (cleared), records removed
//	                                                        (its driver records first: the next plug at its
//	                                                        busid, a mode switch's other product, is never
//	                                                        bound by them), twins looked at again; gone →
//	                                                        absent
//	probing    on the host, the kernel probing it; or its   nothing: its bind event brings it back, or the
//	           device lock held past a short wait (a slow   end of the read, or of the bind, that waited
//	           probe, a reset), its serial unreadable; or   for the kernel (TrigUnlocked): the worker
//	           a dom0 driver's probe in the agent's bind    does not wait; one with no status entry is
//	           lasting past a longer wait                   recorded pending, why (at a kernel event
//	                                                        only at a look 2 s later): never bound to the
//	                                                        usb driver (drivers_autoprobe 0), it stays so
//	unconfig-  on the host, at no port, with no active      pending, nothing decided (no interfaces to
//	ured       configuration (not authorized: its root      judge); its interfaces' add events bring it
//	           hub's authorized_default 0; or none chosen)  back once it is configured
//	with dom0  no rule matches                              unmatched → with dom0
//	denied     a deny rule or a built-in guard              denied; an own port is detached first
//	refused    twins the rule cannot tell apart             refused; the twins are looked at again when
//	                                                        its reason changes (xl attached one)
//	pending    target not running, or several domains      pending; → attaching when one domain of that
//	           have its name                                name runs (start, rename)
//	attaching  target runs, the device at no port           attached (batched) → attached; a failure →
//	                                                        failed, retried; a guest whose device model is
//	                                                        not ready yet → pending, retried
//	attached   at a port of its target                      kept; interfaces out of usbback → settling,
//	                                                        then a dom0 driver's bound again; one with
//	                                                        no driver (someone else unbound it) left so,
//	                                                        its reason saying so, as it says when the
//	                                                        device has no configuration (bound again only
//	                                                        at a start or while its passes fail: a bind
//	                                                        of the agent's own cut short); its driver
//	                                                        records gone (a
//	                                                        late detach of the port it left) → written
//	                                                        again from its ownership record; the rule
//	                                                        changes → detached
//	                                                        and the new decision; target gone → pending;
//	                                                        target migrating away (NAME--migratedaway) →
//	                                                        kept until that copy is gone, then released;
//	                                                        at an emulated port, at start, added to its
//	                                                        guest's QEMU if a crash left it out; kept at
//	                                                        an own port its record names another device
//	                                                        at: the record names this one from then on
//	held       own, detached by someone else while the      held, until it is plugged again or the target
//	           target kept running                          restarts (another domid) → attaching; another
//	                                                        device than its record names at the busid
//	                                                        (swapped while the agent was down) → attaching
//	foreign    at a port someone else made                  left (a rule with takeover → detached,
//	                                                        attaching)
//	settling   something of it half-way (in usbback or      a second look shortly; then released (given
//	           with driver records at no port; at its       back to dom0) or bound again; the first pass
//	           port with interfaces out of usbback)         after a start does it at once
//	blocked    a block rule                                 blocked: its interfaces deauthorized (their
//	                                                        drivers go), and kept so
//
// With authorization before probe ([agent] authorize = "before-probe",
// authorize.go) each root hub's interface_authorized_default is 0 and a new
// device comes inert, its interfaces deauthorized. The table holds with
// this on top: with dom0 and denied authorize the interfaces and offer
// them to dom0's drivers (a hub at once, or its children never appear);
// attaching authorizes them and binds them to usbback (or leaves them to
// QEMU), so no dom0 driver ever has them; pending and refused keep them
// inert. Devices present before the mode was on keep their drivers. A
// root hub is never decided and has no record: its pass keeps its default
// as the mode says, when it appears (a controller added while the agent
// runs) and when a reload turns the mode on or off.
//
// Any step that fails leaves the device failed: the failure is its record
// (action failed) and the pass is tried again after a delay that doubles
// from 0.5 s to a minute; the next pass starts from what the failed one
// left. A failure is apply's, never a plan's. Until its retry is due, a
// pass that a driver's bind or unbind or its port's clearing asks for
// (what the failed attach's own rollback makes) tries nothing: a device
// whose bind always fails (a program claiming it back at once) is not
// moved between drivers in a loop. A plug, a reload or a domain change
// tries at once.
//
// An interface without a driver on a device the agent never attached is
// left alone: only what the agent (or xl) unbound, as its driver records
// and usbback say, is given back; and, on a device the agent attached or
// saw attached since it was plugged, an interface a raced detach left
// without a driver (offered to the kernel once). A device the policy
// leaves to dom0 has a giving record (GivingRoot) from before a detach or
// release takes it from usbback until it was offered to dom0's drivers
// (or is at its guest's port again, the policy changed since), in either
// mode: what usbback bound by itself, or took inert, has no
// driver record, and a pass that finds the giving record finishes the
// give-back.
package agent
