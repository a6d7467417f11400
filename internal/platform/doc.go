// Package platform holds what fieldsync does differently on each operating
// system it supports (Linux, macOS and Windows; docs/design.md §7 for why the
// agent runs as a supervisor and a worker): an exclusive lock on a file, the
// free space of a file system, a child process that dies with its parent,
// core dumps, stopping a process, and who owns a file. Each piece is a small
// function with one file per system; callers never test runtime.GOOS.
//
// It imports only the standard library and golang.org/x/sys.
package platform

import "errors"

// ErrLocked means another process (or another open file of this one) holds
// the lock LockFile asked for.
var ErrLocked = errors.New("file is locked by another process")
