//go:build unix

package platform

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// pipeLeash leashes cmd's child with a pipe: the child gets the read end as
// an extra file (its number in FIELDSYNC_PARENT_FD) and the parent keeps the
// write end, writing nothing. Only the parent's death or Release closes the
// write end, and then the child's read returns end of file. Append to
// cmd.ExtraFiles and set cmd.Env before calling it.
func pipeLeash(cmd *exec.Cmd) (*Leash, error) {
	r, w, err := os.Pipe() // both close-on-exec: no other child inherits w
	if err != nil {
		return nil, fmt.Errorf("parent pipe: %w", err)
	}
	fd := 3 + len(cmd.ExtraFiles)
	cmd.ExtraFiles = append(cmd.ExtraFiles, r)
	cmd.Env = append(withoutParentFD(cmd.Env), parentFDEnv+"="+strconv.Itoa(fd))
	return &Leash{
		started: func(int) error { return r.Close() }, // the child has its copy
		release: func() { r.Close(); w.Close() },
	}, nil
}

// WatchParent is the child's end of a pipe leash: if this process was
// started with one, it calls gone (once, from another goroutine) when the
// parent that holds the pipe's write end dies or lets go. Without one it
// does nothing. The variable is removed from the environment so that this
// process's own children do not inherit it.
func WatchParent(gone func()) error {
	v, ok := os.LookupEnv(parentFDEnv)
	if !ok {
		return nil
	}
	os.Unsetenv(parentFDEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return fmt.Errorf("%s=%q is not a file descriptor", parentFDEnv, v)
	}
	syscall.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "parent pipe")
	go func() {
		io.Copy(io.Discard, f) // the parent writes nothing: this returns at its end
		f.Close()
		gone()
	}()
	return nil
}
