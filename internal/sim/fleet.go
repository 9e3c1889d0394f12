package sim

import (
	"fmt"
	"strings"
)

// FleetPolicy is the policy of a host with doms guests (g00, g01, …) and
// devices devices plugged: each device, by its serial (B0000, B0001, …),
// goes to a guest in turn, and each guest has controllers of 8 ports
// enough for its share.
func FleetPolicy(doms, devices int) string {
	var b strings.Builder
	per := (devices + doms - 1) / doms
	for d := range doms {
		ctrls := make([]string, 0, (per+7)/8)
		for n := per; n > 0; n -= 8 {
			ctrls = append(ctrls, `"version=2, ports=8"`)
		}
		fmt.Fprintf(&b, "[domain.g%02d]\nusbctrl = [%s]\n", d, strings.Join(ctrls, ", "))
	}
	for i := range devices {
		fmt.Fprintf(&b, "[[rule]]\nname = \"dev%d\"\naction = \"attach\"\nmatch = { serial = \"B%04d\" }\ntarget = { domain = \"g%02d\" }\n", i, i, i%doms)
	}
	return b.String()
}
