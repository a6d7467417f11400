//go:build linux || darwin

package platform

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// LockFile takes an exclusive lock on f without waiting (flock(2)): it
// returns ErrLocked if another open file holds one. The lock lasts until f
// is closed, and the kernel drops it when the process dies.
func LockFile(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.EWOULDBLOCK):
		return fmt.Errorf("%w: %s", ErrLocked, f.Name())
	}
	return fmt.Errorf("lock %s: %w", f.Name(), err)
}

// FreeBytes is the space an unprivileged user may still write on the file
// system holding path (statfs(2): available blocks times block size).
func FreeBytes(path string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// AllocatedBytes is the disk space a file takes (its allocated blocks):
// a sparse or preallocated file's size overstates or understates it.
func AllocatedBytes(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return fi.Size()
}

// ModesMeanAccess is true where a file's permission bits decide who may use
// it (Unix); on Windows an ACL decides and the bits Go reports mean little.
const ModesMeanAccess = true

// FileOwner names the owner of the file fi describes (from os.Lstat(path)),
// in the form Me uses: "uid 1000".
func FileOwner(path string, fi fs.FileInfo) (string, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", fmt.Errorf("%s: cannot read its owner", path)
	}
	return fmt.Sprintf("uid %d", st.Uid), nil
}

// Me names the owner this process gives the files it creates: "uid 1000".
func Me() (string, error) { return fmt.Sprintf("uid %d", os.Getuid()), nil }

// RestrictToOwner leaves path to its owner alone. On Unix the caller sets
// the file's mode (the agent makes its socket 0600 and its directory 0700),
// so there is nothing more to do.
func RestrictToOwner(path string) error { return nil }

// UserTag tells users apart in a shared directory's file names: the uid.
func UserTag() string { return fmt.Sprint(os.Getuid()) }

// DisableCoreDumps sets RLIMIT_CORE to 0 so that key material held in
// memory never lands in a core file.
func DisableCoreDumps() error {
	return syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{Cur: 0, Max: 0})
}

// Terminate asks p to shut down cleanly (SIGTERM).
func Terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }

// KilledBySignal reports whether the process ended by a signal (a crash or
// a kill), not by exiting.
func KilledBySignal(ps *os.ProcessState) bool {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled()
}
