package platform

import (
	"os/exec"
	"syscall"
)

// PrepareChild leashes cmd's child to this process (see Leash): on Linux
// the kernel kills the child with SIGKILL when its parent dies
// (PR_SET_PDEATHSIG). Call it after setting cmd.Env and cmd.ExtraFiles and
// before cmd.Start.
func PrepareChild(cmd *exec.Cmd) (*Leash, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.Env = withoutParentFD(cmd.Env)
	return &Leash{}, nil
}
