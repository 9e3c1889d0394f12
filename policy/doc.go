// Package policy is usbhotplugd's policy language: which USB device goes to
// which guest, and why.
//
// A policy is an ordered list of rules read from TOML: the main file (its
// includes standing where they are written), then the drop-ins of the
// rules.d directory beside it in lexical order, a drop-in's hosts key
// selecting the hosts it applies on. The first rule that matches a device
// decides. Parse is strict and reports every error with its file, line,
// rule and key; files are refused before the TOML library reads them when
// they are not regular files or exceed the limits of limits.go, and a
// parse stops with its context. Match is pure: given a device and the
// inventory of present devices it returns a Decision that names the rule,
// the target and the reason. The only I/O is reading policy files (Load,
// ParseFile) and writing drop-ins (WriteDropIn, RemoveDropIn), whose
// content FormatRule and FormatDropIn make so that Parse accepts it.
package policy
