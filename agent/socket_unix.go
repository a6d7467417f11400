//go:build unix

package agent

import (
	"fmt"
	"os"
	"syscall"
)

// checkPrivateDir refuses a directory for the agent's socket that is a
// symlink, not a directory, not owned by this user, or open to others:
// strict refuses any group or other access (the agent's rule for where it
// listens), otherwise only group or other write (the client's rule: whoever
// may write there may replace the socket).
func checkPrivateDir(dir string, strict bool) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("%w: socket directory %s: %v", ErrUnsafeSocket, dir, err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("%w: socket directory %s is a symlink; whoever made it chooses where the socket is: remove it", ErrUnsafeSocket, dir)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: socket directory %s is not a directory", ErrUnsafeSocket, dir)
	}
	if err := checkOwner(fi, dir, "socket directory"); err != nil {
		return err
	}
	mask, what := os.FileMode(0o022), "write"
	if strict {
		mask, what = 0o077, "access"
	}
	if perm := fi.Mode().Perm(); perm&mask != 0 {
		return fmt.Errorf("%w: socket directory %s has mode %04o, which gives group or others %s: make it private (chmod 700 %s)", ErrUnsafeSocket, dir, perm, what, dir)
	}
	return nil
}

// checkSocketFile refuses a socket path that is a symlink, not a socket, or
// not owned by this user; strict also refuses group or other access.
func checkSocketFile(path string, strict bool) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("%w: %s is a symlink, not the agent's socket; whoever made it chooses what you talk to: remove it", ErrUnsafeSocket, path)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%w: %s is not a socket (%s)", ErrUnsafeSocket, path, fi.Mode().Type())
	}
	if err := checkOwner(fi, path, "socket"); err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); strict && perm&0o077 != 0 {
		return fmt.Errorf("%w: socket %s has mode %04o, which gives group or others access", ErrUnsafeSocket, path, perm)
	}
	return nil
}

func checkOwner(fi os.FileInfo, path, what string) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%w: %s %s: cannot read its owner", ErrUnsafeSocket, what, path)
	}
	if uid := os.Getuid(); int(st.Uid) != uid {
		return fmt.Errorf("%w: %s %s is owned by uid %d, not by you (uid %d): another user may have put an impostor agent there; do not use it: remove it (or have an administrator remove it), or run fieldsync as uid %d if that is the agent's user",
			ErrUnsafeSocket, what, path, st.Uid, uid, st.Uid)
	}
	return nil
}
