package datadir

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"fieldsync/internal/platform"
)

// ErrUnsafeSocket means the socket, or the directory it lives in, is not the
// user's alone: another local user could have put an impostor agent there.
var ErrUnsafeSocket = errors.New("unsafe agent socket")

// Socket is the agent's API socket: agent.sock in the data directory, or, when
// that path would exceed the system's limit, HASH.sock (HASH derived from the
// data directory, so the CLI finds it too) in a directory fieldsync-UID of
// the user's runtime directory, $XDG_RUNTIME_DIR, or of os.TempDir() when
// that is unset (on Windows, fieldsync in the user's own temporary
// directory). The agent creates that directory 0700 and, like the CLI,
// refuses it unless the user owns it and no one else may enter it
// (PrepareSocketDir, CheckSocket): another local user who made it first
// cannot put an impostor agent where the CLI looks.
func (l Layout) Socket() string {
	p := filepath.Join(l.Dir, "agent.sock")
	if len(p) <= platform.MaxSocketPath {
		return p
	}
	abs, err := filepath.Abs(l.Dir)
	if err != nil {
		abs = l.Dir
	}
	sum := sha256.Sum256([]byte(abs))
	name := "fieldsync"
	if tag := platform.UserTag(); tag != "" {
		name += "-" + tag
	}
	return filepath.Join(runtimeDir(), name, hex.EncodeToString(sum[:8])+".sock")
}

// runtimeDir is $XDG_RUNTIME_DIR when set to an absolute path, else the
// system's temporary directory.
func runtimeDir() string {
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" && filepath.IsAbs(x) {
		return x
	}
	return os.TempDir()
}

// SocketIsShort reports whether Socket() had to move out of the data directory.
func (l Layout) SocketIsShort() bool {
	return len(filepath.Join(l.Dir, "agent.sock")) > platform.MaxSocketPath
}

// socketDir is the directory the socket lives in: the short directory, or
// the data directory with any symlink in its path resolved (a data
// directory may be a link the user made; the short directory may not).
func (l Layout) socketDir() (dir string, short bool) {
	if l.SocketIsShort() {
		return filepath.Dir(l.Socket()), true
	}
	dir = l.Dir
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		dir = r
	}
	return dir, false
}

// PrepareSocketDir makes sure the directory the agent's socket goes in
// exists and is the user's: the short fieldsync-UID directory (created 0700
// here when missing), which must be the user's and grant group and others
// no access at all; or the data directory, which must be the user's and not
// writable by group or others (read access there lets no one replace or
// reach the socket, which is 0600, and data directories made by hand are
// often 0755). A symlink for the short directory is refused. The error
// names the directory and what to do. On Windows, where file modes mean
// little, the short directory's ACL is set to its owner alone instead.
func (l Layout) PrepareSocketDir() error {
	dir, short := l.socketDir()
	if short {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("socket directory %s: %w (the data directory's path is too long for a socket; set XDG_RUNTIME_DIR to a private directory, or use a shorter --data-dir)", dir, err)
		}
	}
	if err := CheckPrivateDir(dir, short); err != nil {
		return err
	}
	if short {
		if err := platform.RestrictToOwner(dir); err != nil {
			return fmt.Errorf("%w: %v", ErrUnsafeSocket, err)
		}
	}
	return nil
}

// CheckSocket is what a client checks before it connects to the agent's
// socket: the socket is not a symlink, is a socket, and the user owns it;
// its directory is the user's and no one else may write to it. A failure
// wraps ErrUnsafeSocket; no socket at all is fs.ErrNotExist.
func (l Layout) CheckSocket() error {
	dir, _ := l.socketDir()
	if err := CheckPrivateDir(dir, false); err != nil {
		return err
	}
	return CheckSocketFile(l.Socket(), false)
}

// CheckOwnSocket is the agent's check of the socket it has just created
// (and made 0600): its own, and no access for group or others. On Windows
// it first sets the socket's ACL to its owner alone: connecting to an
// AF_UNIX socket there takes write access to its file.
func CheckOwnSocket(path string) error {
	if err := platform.RestrictToOwner(path); err != nil {
		return fmt.Errorf("%w: %v", ErrUnsafeSocket, err)
	}
	return CheckSocketFile(path, true)
}

// CheckPrivateDir refuses a directory for the agent's socket that is a
// symlink, not a directory, not owned by this user, or open to others:
// strict refuses any group or other access (the agent's rule for where it
// listens), otherwise only group or other write (the client's rule: whoever
// may write there may replace the socket). Where modes mean little
// (Windows) only the first three are checked.
func CheckPrivateDir(dir string, strict bool) error {
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
	if perm := fi.Mode().Perm(); platform.ModesMeanAccess && perm&mask != 0 {
		return fmt.Errorf("%w: socket directory %s has mode %04o, which gives group or others %s: make it private (chmod 700 %s)", ErrUnsafeSocket, dir, perm, what, dir)
	}
	return nil
}

// CheckSocketFile refuses a socket path that is a symlink, not a socket, or
// not owned by this user; strict also refuses group or other access (where
// modes mean access).
func CheckSocketFile(path string, strict bool) error {
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
	if perm := fi.Mode().Perm(); strict && platform.ModesMeanAccess && perm&0o077 != 0 {
		return fmt.Errorf("%w: socket %s has mode %04o, which gives group or others access", ErrUnsafeSocket, path, perm)
	}
	return nil
}

func checkOwner(fi os.FileInfo, path, what string) error {
	owner, err := platform.FileOwner(path, fi)
	if err != nil {
		return fmt.Errorf("%w: %s %s: cannot read its owner", ErrUnsafeSocket, what, path)
	}
	me, err := platform.Me()
	if err != nil {
		return fmt.Errorf("%w: %s %s: %v", ErrUnsafeSocket, what, path, err)
	}
	if owner != me {
		return fmt.Errorf("%w: %s %s is owned by %s, not by you (%s): another user may have put an impostor agent there; do not use it: remove it (or have an administrator remove it), or run fieldsync as %s if that is the agent's user",
			ErrUnsafeSocket, what, path, owner, me, owner)
	}
	return nil
}
