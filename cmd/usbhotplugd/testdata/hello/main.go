// Command hello is BenchmarkVersusXL's yardstick: the least a Go program
// can do, built as usbhotplugd is, so that the time of a process start on
// the host is measured beside xl and usbhotplugd in the same run.
package main

import "os"

func main() { os.Stdout.WriteString("hello\n") }
