//go:build unix

package harness

import "syscall"

// signalPID sends sig to the process pid.
func signalPID(pid int, sig syscall.Signal) error { return syscall.Kill(pid, sig) }
