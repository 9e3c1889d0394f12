package daemon

import (
	"fmt"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/metrics"
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

// Explanation is what the policy in force says of one present device.
type Explanation struct {
	BusID string `json:"busid"`
	ID    string `json:"id"`
	// Action is the policy's decision now: attach, deny, refuse, none.
	Action    string   `json:"action"`
	Rule      string   `json:"rule,omitempty"`
	RuleIndex int      `json:"rule_index,omitempty"`
	RuleAt    string   `json:"rule_at,omitempty"` // FILE:LINE, the main file, a drop-in or an include
	Guard     string   `json:"guard,omitempty"`
	Domain    string   `json:"domain,omitempty"`
	Reason    string   `json:"reason"`
	Twins     []string `json:"twins,omitempty"`
	// Skipped are the rules before the deciding one, and why each did not
	// match.
	Skipped []SkippedRule `json:"skipped,omitempty"`
	// Last is the agent's last decision for the device, if any.
	Last *agent.Audit `json:"last,omitempty"`
}

// SkippedRule is a rule that did not match, and why.
type SkippedRule struct {
	Rule      string `json:"rule"`
	RuleIndex int    `json:"rule_index"`
	RuleAt    string `json:"rule_at"`
	Why       string `json:"why"`
}

func explanationOf(e agent.Explained) Explanation {
	x := Explanation{BusID: e.Device.BusID, ID: e.Device.ID(), Action: e.Explanation.Action.String(), Guard: e.Explanation.Guard,
		Reason: e.Explanation.Reason, Twins: e.Explanation.Twins, Last: e.Last}
	if r := e.Explanation.Rule; r != nil {
		x.Rule, x.RuleIndex, x.RuleAt = r.Name, r.Index, ruleAt(r)
	}
	if t := e.Explanation.Target; t != nil {
		x.Domain = t.Domain
	}
	for _, s := range e.Explanation.Skipped {
		x.Skipped = append(x.Skipped, SkippedRule{Rule: s.Rule.Name, RuleIndex: s.Rule.Index, RuleAt: ruleAt(s.Rule), Why: s.Why})
	}
	return x
}

func ruleAt(r *policy.Rule) string { return fmt.Sprintf("%s:%d", r.File, r.Line) }
