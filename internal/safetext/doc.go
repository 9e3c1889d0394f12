// Package safetext shows text from outside (a USB device's serial,
// manufacturer and product strings, which whoever plugs the device in
// chooses) on a terminal without letting it act there.
//
// Text escapes every character that would not print as itself: C0 and C1
// controls (a terminal escape starts with ESC, U+001B, or CSI, U+009B),
// DEL, bidirectional controls (which reorder what follows on the line),
// other invisible format characters and bytes that are not UTF-8. A
// backslash is doubled, so an escape in the output is never text the
// device sent. The output is one line: a newline cannot start a fake row
// of a table. JSON output needs none of this: encoding/json escapes
// controls, and keeps the string exact.
//
// Word keeps only characters that are safe unquoted in a shell word, for
// scripts that use a string without quoting it.
package safetext
