// Package policy is usbhotplugd's policy language: which USB device goes to
// which guest, and why.
//
// A policy is an ordered list of rules read from TOML; the first rule that
// matches a device decides. Parse is strict and reports every error with
// its file, line, rule and key. Match is pure: given a device and the
// inventory of present devices it returns a Decision that names the rule,
// the target and the reason. The package does no I/O apart from reading
// the file given to ParseFile.
package policy
