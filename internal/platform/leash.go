package platform

import (
	"os"
	"strings"
)

// parentFDEnv names the environment variable that tells a child which file
// descriptor is the read end of its parent's pipe (see WatchParent).
const parentFDEnv = "FIELDSYNC_PARENT_FD"

// A Leash ties a child process to this one: when this process ends, however
// it ends, the child is killed or told to exit. PrepareChild makes one
// before the child starts; Started completes it once the child runs;
// Release drops it after the child has been waited for.
//
// Linux: the kernel sends the child SIGKILL when its parent dies
// (PR_SET_PDEATHSIG). macOS has no such thing: the child inherits the read
// end of a pipe whose write end only the parent holds, and exits when a
// read returns end of file (the child calls WatchParent). Windows: the child
// is put in a Job Object created with JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
// whose only handle the parent holds; when the parent dies the system closes
// it and kills the job's processes.
type Leash struct {
	release func()
	started func(pid int) error
}

// Started completes the leash once the child has started.
func (l *Leash) Started(pid int) error {
	if l == nil || l.started == nil {
		return nil
	}
	return l.started(pid)
}

// Release lets go of the leash; call it once the child has been waited for
// (or did not start). On Windows this kills whatever is left in the job.
func (l *Leash) Release() {
	if l != nil && l.release != nil {
		l.release()
		l.release = nil
	}
}

// withoutParentFD drops an inherited FIELDSYNC_PARENT_FD from a child's
// environment (nil meaning this process's): the descriptor it names is ours,
// not the child's.
func withoutParentFD(env []string) []string {
	if env == nil {
		env = os.Environ()
	}
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, parentFDEnv+"=") {
			out = append(out, kv)
		}
	}
	return out
}
