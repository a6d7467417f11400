//go:build windows

package agent

import (
	"fmt"
	"os"
)

// On Windows the socket's directory is protected by the ACL of the user's
// profile (the data directory is under it); file modes and owners are not
// Unix ones, so only the symlink check applies.

func checkPrivateDir(dir string, strict bool) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("%w: socket directory %s is a symlink: remove it", ErrUnsafeSocket, dir)
	}
	return nil
}

func checkSocketFile(path string, strict bool) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("%w: %s is a symlink, not the agent's socket: remove it", ErrUnsafeSocket, path)
	}
	return nil
}
