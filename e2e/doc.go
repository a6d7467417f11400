// Package e2e holds process-level tests: it builds the fieldsync binary and
// runs real agents on loopback, with partitions, crashes and corrupt disks.
package e2e
