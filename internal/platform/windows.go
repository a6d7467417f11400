//go:build windows

package platform

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
)

// LockFile takes an exclusive lock on f without waiting (LockFileEx on its
// first byte): it returns ErrLocked if another open file holds one. The lock
// lasts until f is closed, and the system drops it when the process dies.
func LockFile(f *os.File) error {
	var ol windows.Overlapped
	err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ol)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, windows.ERROR_LOCK_VIOLATION), errors.Is(err, windows.ERROR_IO_PENDING):
		return fmt.Errorf("%w: %s", ErrLocked, f.Name())
	}
	return fmt.Errorf("lock %s: %w", f.Name(), err)
}

// FreeBytes is the space the current user may still write on the volume
// holding path (GetDiskFreeSpaceEx, which counts the user's quota).
func FreeBytes(path string) (int64, error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return 0, err
	}
	var avail, total, free uint64
	if err := windows.GetDiskFreeSpaceEx(p, &avail, &total, &free); err != nil {
		return 0, err
	}
	return int64(avail), nil
}

// AllocatedBytes is the file's size: Windows reports no allocated blocks
// through os.Stat.
func AllocatedBytes(fi fs.FileInfo) int64 { return fi.Size() }

// ModesMeanAccess is false: on Windows an ACL decides who may use a file,
// and the permission bits Go reports mean little (RestrictToOwner sets it).
const ModesMeanAccess = false

// FileOwner names the owner of path (a SID, as S-1-5-21-…), read from its
// security descriptor without following a final link.
func FileOwner(path string, fi fs.FileInfo) (string, error) {
	sd, err := windows.GetNamedSecurityInfo(path, windows.SE_FILE_OBJECT, windows.OWNER_SECURITY_INFORMATION)
	if err != nil {
		return "", fmt.Errorf("%s: cannot read its owner: %w", path, err)
	}
	owner, _, err := sd.Owner()
	if err != nil || owner == nil {
		return "", fmt.Errorf("%s: cannot read its owner: %v", path, err)
	}
	return owner.String(), nil
}

// Me names the owner this process gives the files it creates: its token's
// default owner (the user's SID; for an elevated administrator, possibly the
// Administrators group's).
func Me() (string, error) {
	sid, err := defaultOwner()
	if err != nil {
		return "", err
	}
	return sid.String(), nil
}

func defaultOwner() (*windows.SID, error) {
	t := windows.GetCurrentProcessToken()
	var n uint32
	windows.GetTokenInformation(t, windows.TokenOwner, nil, 0, &n)
	if n == 0 {
		return nil, errors.New("token owner: no size")
	}
	buf := make([]byte, n)
	if err := windows.GetTokenInformation(t, windows.TokenOwner, &buf[0], n, &n); err != nil {
		return nil, fmt.Errorf("token owner: %w", err)
	}
	owner := (*struct{ Owner *windows.SID })(unsafe.Pointer(&buf[0])).Owner
	return owner.Copy()
}

// RestrictToOwner replaces path's ACL by one that grants full access to
// this process's default owner (Me) and to no one else, and stops it
// inheriting entries from its directory: the Windows counterpart of a 0600
// file or a 0700 directory. The agent applies it to its socket and to the
// directory the socket lives in.
func RestrictToOwner(path string) error {
	me, err := defaultOwner()
	if err != nil {
		return err
	}
	inherit := "" // a directory passes the entry on to what is made in it
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		inherit = "OICI"
	}
	sd, err := windows.SecurityDescriptorFromString("D:P(A;" + inherit + ";FA;;;" + me.String() + ")")
	if err != nil {
		return fmt.Errorf("restrict %s: %w", path, err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("restrict %s: %w", path, err)
	}
	err = windows.SetNamedSecurityInfo(filepath.Clean(path), windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
	if err != nil {
		return fmt.Errorf("restrict %s to its owner: %w", path, err)
	}
	return nil
}

// UserTag tells users apart in a shared directory's file names. Windows'
// temporary directory is already the user's own (under the profile), so
// there is nothing to add.
func UserTag() string { return "" }

// MaxSocketPath is the longest AF_UNIX path Windows accepts
// (sizeof(sun_path) - 1 for the terminating NUL).
const MaxSocketPath = 107

// DisableCoreDumps does nothing: Windows writes no core files; crash dumps
// (Windows Error Reporting) are a system setting, not the process's.
func DisableCoreDumps() error { return nil }

// Terminate asks p to shut down cleanly: a CTRL_BREAK to its process group
// (PrepareChild makes the child lead one), which Go delivers as os.Interrupt.
// Without a console to send it through, it kills p.
func Terminate(p *os.Process) error {
	if err := windows.GenerateConsoleCtrlEvent(windows.CTRL_BREAK_EVENT, uint32(p.Pid)); err != nil {
		return p.Kill()
	}
	return nil
}

// KilledBySignal is always false: Windows processes end with an exit code
// (a crash is an NTSTATUS code such as 0xC0000005, which the caller sees as
// an unexpected exit code).
func KilledBySignal(ps *os.ProcessState) bool { return false }

// PrepareChild leashes cmd's child to this process (see Leash): a Job
// Object that kills its processes when its last handle closes, which only
// this process holds; the child joins it in Started. The child also leads
// a process group of its own, so that Terminate can send it a CTRL_BREAK
// without reaching this process. A child that starts children of its own
// before Started runs leaves those outside the job: the window is the time
// between CreateProcess and Started.
func PrepareChild(cmd *exec.Cmd) (*Leash, error) {
	job, err := windows.CreateJobObject(nil, nil)
	if err != nil {
		return nil, fmt.Errorf("job object: %w", err)
	}
	var info windows.JOBOBJECT_EXTENDED_LIMIT_INFORMATION
	info.BasicLimitInformation.LimitFlags = windows.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
	if _, err := windows.SetInformationJobObject(job, windows.JobObjectExtendedLimitInformation, uintptr(unsafe.Pointer(&info)), uint32(unsafe.Sizeof(info))); err != nil {
		windows.CloseHandle(job)
		return nil, fmt.Errorf("job object: %w", err)
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.CreationFlags |= windows.CREATE_NEW_PROCESS_GROUP
	cmd.Env = withoutParentFD(cmd.Env)
	return &Leash{
		started: func(pid int) error {
			h, err := windows.OpenProcess(windows.PROCESS_SET_QUOTA|windows.PROCESS_TERMINATE, false, uint32(pid))
			if err != nil {
				return fmt.Errorf("job object: open the child: %w", err)
			}
			defer windows.CloseHandle(h)
			if err := windows.AssignProcessToJobObject(job, h); err != nil {
				return fmt.Errorf("job object: assign the child: %w", err)
			}
			return nil
		},
		release: func() { windows.CloseHandle(job) },
	}, nil
}

// WatchParent does nothing on Windows: the Job Object kills the child.
func WatchParent(gone func()) error { return nil }
