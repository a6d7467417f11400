//go:build windows

package harness

import (
	"fmt"
	"os"
	"syscall"
)

// signalPID ends the process pid for SIGKILL; Windows has no other signal
// to send a process (no SIGSTOP or SIGCONT: the chaos test is Unix-only).
func signalPID(pid int, sig syscall.Signal) error {
	if sig != syscall.SIGKILL {
		return fmt.Errorf("signal %v: not available on Windows", sig)
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
