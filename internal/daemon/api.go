package daemon

import (
	"fmt"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/metrics"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// ControlSocket is the control socket's name under the state directory.
const ControlSocket = "control.sock"

// The requests of the local API. A client writes one Request as one JSON
// object on one line, and reads one Response line back; it may then send
// another. After watch, the connection carries Response lines with a
// Decision each until the client closes it.
const (
	ReqStatus  = "status"  // the agent's whole status (read-only)
	ReqExplain = "explain" // what the policy says of each present device, or of busid (read-only)
	ReqWatch   = "watch"   // a stream of decisions (read-only)
	ReqReload  = "reload"  // read the policy file again (root)
	// ReqMetrics: every metric the agent keeps, as metrics.Family values
	// (read-only; what usbhotplugd-exporter serves).
	ReqMetrics = "metrics"
)

// Request is one line a client sends.
type Request struct {
	Request string `json:"request"`
	// BusID limits explain to one device.
	BusID string `json:"busid,omitempty"`
}

// Error codes of a refused request (Response.ErrorCode).
const (
	CodeBadRequest    = "bad_request"    // not JSON, a line too long, or an unknown request
	CodeForbidden     = "forbidden"      // the peer may not make this request
	CodeNotFound      = "not_found"      // explain: no such device present
	CodePolicyRefused = "policy_refused" // reload: the policy does not parse; the old one stays
	CodeOverrun       = "overrun"        // watch: the client read too slowly; decisions were lost
	CodeInternal      = "internal"       // anything else (Error says what)
)

// Response is one line the agent sends. OK is false exactly when Error is
// set; at most one of the other fields is.
type Response struct {
	OK        bool             `json:"ok"`
	Error     string           `json:"error,omitempty"`
	ErrorCode string           `json:"error_code,omitempty"`
	Status    *Status          `json:"status,omitempty"`
	Explain   []Explanation    `json:"explain,omitempty"`
	Reload    *ReloadResult    `json:"reload,omitempty"`
	Metrics   []metrics.Family `json:"metrics,omitempty"`
	// Watching acknowledges watch; Decision is one decision after it.
	Watching bool         `json:"watching,omitempty"`
	Decision *agent.Audit `json:"decision,omitempty"`
}

// Explanation is what the policy says of one present device: the reply
// to an explain request for it, and what `usbhotplugd explain --json`
// prints for it (the command decides with the policy file it is given,
// the agent with the policy in force). Rules are named as the audit
// records name them: rule, rule_index, rule_source.
type Explanation struct {
	Device Device `json:"device"`
	// Action is the policy's decision now: attach, deny, block, refuse,
	// none.
	Action    string   `json:"action"`
	Rule      string   `json:"rule,omitempty"`
	RuleIndex int      `json:"rule_index,omitempty"`
	RuleAt    string   `json:"rule_source,omitempty"` // FILE:LINE, the main file, a drop-in or an include
	Guard     string   `json:"guard,omitempty"`
	Target    *Target  `json:"target,omitempty"` // where an attach sends it
	Reason    string   `json:"reason"`
	Twins     []string `json:"twins,omitempty"`
	Exec      []string `json:"exec,omitempty"` // the deciding rule's command
	// Skipped are the rules before the deciding one, and why each did not
	// match.
	Skipped []SkippedRule `json:"skipped,omitempty"`
	// Last is the agent's last decision for the device, if any (from the
	// agent only).
	Last *agent.Audit `json:"last,omitempty"`
}

// Target is where an attach rule sends a device: the domain, the
// controller and port it prefers (controller absent when it has none), and
// the controller created when the domain has no free port.
type Target struct {
	Domain     string          `json:"domain"`
	Controller *int            `json:"controller,omitempty"`
	Port       int             `json:"port,omitempty"`
	Create     policy.CtrlSpec `json:"create,omitzero"`
}

// SkippedRule is a rule that did not match, and why.
type SkippedRule struct {
	Rule      string `json:"rule"`
	RuleIndex int    `json:"rule_index"`
	RuleAt    string `json:"rule_source"`
	Reason    string `json:"reason"`
}

// ExplanationOf is the explanation of d, ex being the policy's, last the
// agent's last decision for it (nil: none, or not the agent's).
func ExplanationOf(d usbsysfs.Device, ex policy.Explanation, last *agent.Audit) Explanation {
	x := Explanation{Device: DeviceOf(d), Action: ex.Action.String(), Guard: ex.Guard, Reason: ex.Reason, Twins: ex.Twins, Last: last}
	if r := ex.Rule; r != nil {
		x.Rule, x.RuleIndex, x.RuleAt, x.Exec = r.Name, r.Index, ruleAt(r), r.Exec
	}
	if t := ex.Target; t != nil {
		x.Target = &Target{Domain: t.Domain, Port: t.Port, Create: t.Ctrl}
		if t.Controller >= 0 {
			c := t.Controller
			x.Target.Controller = &c
		}
	}
	for _, s := range ex.Skipped {
		x.Skipped = append(x.Skipped, SkippedRule{Rule: s.Rule.Name, RuleIndex: s.Rule.Index, RuleAt: ruleAt(s.Rule), Reason: s.Why})
	}
	return x
}

func ruleAt(r *policy.Rule) string { return fmt.Sprintf("%s:%d", r.File, r.Line) }

// Device is a USB device as every JSON output shows one (devices --json,
// an explanation's device): sysfs's fields, with the IDs and classes as
// hex strings, as lsusb shows them, never as decimal numbers.
type Device struct {
	usbsysfs.Device
	ID         string      `json:"id"`
	Vendor     string      `json:"vendor"`
	Product    string      `json:"product"`
	BCDDevice  string      `json:"bcd_device"`
	Class      string      `json:"class"`
	SubClass   string      `json:"sub_class"`
	Protocol   string      `json:"protocol"`
	Interfaces []Interface `json:"interfaces,omitempty"`
}

// Interface is one interface of a Device, its classes in hex.
type Interface struct {
	usbsysfs.Interface
	Class    string `json:"class"`
	SubClass string `json:"sub_class"`
	Protocol string `json:"protocol"`
}

// DeviceOf is d in its JSON form.
func DeviceOf(d usbsysfs.Device) Device {
	j := Device{Device: d, ID: d.ID(), Vendor: fmt.Sprintf("%04x", d.Vendor), Product: fmt.Sprintf("%04x", d.Product),
		BCDDevice: fmt.Sprintf("%04x", d.BCDDevice), Class: hex2(d.Class), SubClass: hex2(d.SubClass), Protocol: hex2(d.Protocol)}
	for _, in := range d.Interfaces {
		j.Interfaces = append(j.Interfaces, Interface{Interface: in, Class: hex2(in.Class), SubClass: hex2(in.SubClass), Protocol: hex2(in.Protocol)})
	}
	return j
}

func hex2(v uint8) string { return fmt.Sprintf("%02x", v) }
