// Package inventory is the agent's view of the host's USB devices: what
// sysfs says of each, in the form the policy matches, with the order in
// which they arrived.
package inventory
