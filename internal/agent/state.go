package agent

import "github.com/usbhotplugd/usbhotplugd/internal/assign"

// An Action is what a pass did with, or decided for, a device: the
// "action" of its audit record. See the state table in the package doc.
type Action string

// The actions. Each but gone names the state the device is in after it.
const (
	ActAttached  Action = "attached"  // the agent put it at a port of its target
	ActKept      Action = "kept"      // at a port of its target already: nothing done
	ActDetached  Action = "detached"  // taken off a port (its rule changed, or takeover)
	ActHeld      Action = "held"      // detached by someone else from a running target: stays in dom0
	ActLeft      Action = "left"      // at someone else's port, and left there
	ActPending   Action = "pending"   // waits for its target: not running, not ready, or not one domain
	ActDenied    Action = "denied"    // a deny rule or a built-in guard keeps it in dom0
	ActRefused   Action = "refused"   // a rule matched but cannot be applied safely (twins)
	ActUnmatched Action = "unmatched" // no rule: with dom0
	ActCleared   Action = "cleared"   // it left the host: its port was cleared
	ActReleased  Action = "released"  // what was left of an attach was given back to dom0
	ActGone      Action = "gone"      // it left the host: its status entry goes
	ActFailed    Action = "failed"    // a step failed: retried with backoff
	ActBlocked   Action = "blocked"   // a block rule: its interfaces deauthorized, no driver uses it
)

// A State is where a device is in its lifecycle, as a plan leaves it
// (the package doc has the table).
type State int

const (
	StAbsent    State = iota // not on the host, nothing of it in the store
	StProbing                // on the host, the kernel not done probing it
	StWithDom0               // no rule: with its dom0 drivers
	StDenied                 // a deny rule or a guard: with dom0
	StRefused                // twins the rule cannot tell apart: with dom0
	StPending                // its target is not running, not ready, or not one domain; or its retry is not due
	StAttaching              // an attach is planned
	StAttached               // at a port of its target
	StHeld                   // the agent's, detached by someone else: with dom0 until replug or reboot
	StForeign                // at a port someone else made: left there
	StSettling               // something of it is half-way: looked at again shortly
	StBlocked                // a block rule: inert, its interfaces deauthorized
)

var stateNames = [...]string{"absent", "probing", "with dom0", "denied", "refused", "pending", "attaching", "attached", "held", "foreign", "settling", "blocked"}

func (s State) String() string { return stateNames[s] }

// A Trigger is what asked for a pass over a device.
type Trigger string

// The triggers the agent makes itself; a kernel event's is its action
// (kernelTrigger).
const (
	TrigStart        Trigger = "start"
	TrigColdplug     Trigger = "present at start"
	TrigRetry        Trigger = "retry after a failure"
	TrigPortChanged  Trigger = "its port changed"
	TrigDomains      Trigger = "domains changed"
	TrigReload       Trigger = "policy reloaded"
	TrigOverrun      Trigger = "rescan after lost events"
	TrigRefused      Trigger = "rescan after a kernel event that could not be read"
	TrigAfterCleared Trigger = "after its port was cleared"        // second look: at no port, something in usbback
	TrigAfterUnbound Trigger = "after its interfaces left usbback" // second look: at a port, out of usbback
	TrigTwinChanged  Trigger = "a twin changed"
	TrigMounts       Trigger = "dom0's mounts changed"                             // a disk refused as in use may be free now
	TrigHolderGone   Trigger = "a device-mapper or md device went or changed"      // the same, for a disk it held
	TrigHeldLook     Trigger = "looked at again while device-mapper or md held it" // some let go with no event
	TrigReplugged    Trigger = "plugged again before its removal was seen"         // another address than the pass before saw
	TrigUnlocked     Trigger = "the kernel let go of it"                           // it read as busy: a driver probed it, or a reset
	TrigProbeLook    Trigger = "looked at again while the kernel probed it"        // its bind did not follow a kernel event soon
)

// kernelTrigger is the trigger of a kernel event with action (add, bind,
// remove, …).
func kernelTrigger(action string) Trigger { return Trigger(action) }

// twinLeft is the trigger of the pass over a twin of busid, which left.
func twinLeft(busid string) Trigger { return Trigger(busid + " left") }

// A stepKind is one thing apply does.
type stepKind int

const (
	stepForget       stepKind = iota // drop what the agent remembers of a device that left
	stepDetach                       // clear its port (and its ownership record) and give it back
	stepRememberLeft                 // note the port it left, for its replug
	stepRelease                      // give back what of it is in usbback, and its driver records
	stepRmOwned                      // remove its ownership record
	stepEnsureBound                  // move its interfaces still out of usbback there
	stepLookLater                    // look again shortly (a toolstack may be mid-way)
	stepAttach                       // attach it (batched by the worker)
	stepAudit                        // record a decision
	stepAuditChanged                 // record a decision that did nothing, if it differs from the last
	stepRequeue                      // pass over other devices (its twins)
	stepHubInert                     // a root hub's new interfaces come deauthorized (authorization before probe)
	stepHubRestore                   // a root hub's new interfaces come authorized again (the mode turned off)
	stepToDom0                       // authorize its deauthorized interfaces and offer them to dom0's drivers
	stepBlock                        // deauthorize its interfaces (a block rule)
	stepReRecord                     // write its driver records again from its ownership record
	stepEnsureInQEMU                 // add it to its guest's QEMU if its emulated port has nothing there
	stepReOwn                        // write its ownership record again, of the device now at its busid
	stepDropRecords                  // remove the driver records of a plug that left, before anything rebinds by them
	stepMarkGiving                   // record that it goes to dom0, before a detach or release takes it from usbback
	stepRmGiving                     // remove the record that it goes to dom0 (it left, or is at its guest's port)
)

var stepNames = [...]string{"forget", "detach", "remember-left", "release", "rm-owned", "ensure-bound", "look-later", "attach", "audit", "audit-if-changed", "requeue", "hub-inert", "hub-restore", "to-dom0", "block", "re-record", "ensure-in-qemu", "re-own", "drop-records", "mark-giving", "rm-giving"}

func (k stepKind) String() string { return stepNames[k] }

// touchesDevice says whether a step reads or writes the device in sysfs
// (or its guest's QEMU): what waits while the kernel is still at it.
func (k stepKind) touchesDevice() bool {
	switch k {
	case stepRelease, stepEnsureBound, stepAttach, stepHubInert, stepHubRestore, stepToDom0, stepBlock, stepEnsureInQEMU, stepDetach:
		return true
	}
	return false
}

// A step of a plan; which fields count depends on its kind.
type step struct {
	kind    stepKind
	at      assign.Assignment // detach, remember-left: the port
	key     string            // remember-left: the device's identity
	domain  string            // remember-left: the domain it was attached to
	rec     Audit             // audit, attach: the record
	trigger Trigger           // look-later, requeue: the pass's trigger
	busids  []string          // requeue
	lenient bool              // release: a failure is only logged (the device left)
	unbound bool              // release: interfaces without a driver are offered to the kernel too
	fresh   bool              // to-dom0: the device is read again (a detach or release before it moved it)
	attach  attachPlan        // attach
	probe   bool              // look-later: of a device the kernel probes (probeLook)
	held    bool              // ensure-bound: an interface without a driver is left as someone else left it
}

// An attachPlan is what an attach step needs beside the record.
type attachPlan struct {
	domid  uint32
	domain string
	opts   assign.AttachOptions
	pinned bool  // opts prefer the port the rule pins
	owned  Owned // the ownership record, its port filled in at the attach
}
