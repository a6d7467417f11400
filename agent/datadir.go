package agent

import "fieldsync/internal/datadir"

// The data directory's files (names, the atomic writer, the keystore, the
// certificate and trust list, the socket's place and checks) are handled by
// internal/datadir. These aliases keep the names the rest of agent, cmd and
// the tests use.
type (
	Layout = datadir.Layout
	Unlock = datadir.Unlock
)

var (
	ErrNotInitialized = datadir.ErrNotInitialized // the data directory holds no keystore
	ErrNotEnrolled    = datadir.ErrNotEnrolled    // the device has no certificate yet
	ErrUnsafeSocket   = datadir.ErrUnsafeSocket   // the socket or its directory is not the user's alone
)

// checkSocketFile is what a client checks before each connection.
func checkSocketFile(path string, strict bool) error { return datadir.CheckSocketFile(path, strict) }

// checkOwnSocket is the agent's check of the socket it has just created.
func checkOwnSocket(path string) error { return datadir.CheckOwnSocket(path) }
