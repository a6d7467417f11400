package platform

import "os/exec"

// PrepareChild leashes cmd's child to this process (see Leash): on macOS
// with a pipe the child watches (it must call WatchParent). Call it after
// setting cmd.Env and cmd.ExtraFiles and before cmd.Start.
func PrepareChild(cmd *exec.Cmd) (*Leash, error) { return pipeLeash(cmd) }
