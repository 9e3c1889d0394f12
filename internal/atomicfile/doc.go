// Package atomicfile writes a file whole or not at all: a reader, and a
// crash at any point, see the old contents or the new, never part of
// either. It is how every file the agent and its commands write (policy
// drop-ins, generated policies, the status file, the metrics textfile)
// reaches the disk.
package atomicfile
