package agent

import "fieldsync/internal/store"

// The agent's names for the store's (internal/store, the only importer of
// Badger). a.db is the store with every value sealed (store.go); a.com its
// group committer.
type kvEntry = store.Entry

var (
	errKVNotFound  = store.ErrNotFound
	errStopScan    = store.ErrStop
	errStoreLocked = store.ErrLocked
	errStaleWrite  = store.ErrStaleWrite
	// errTooLarge means a request, value or change exceeds a limit (the
	// store's own refusal of an oversize group is the same error).
	errTooLarge = store.ErrTooLarge
)

// maxGroupBytes bounds the entries the agent puts in one atomic group when
// it may choose (store.MaxGroupBytes).
const maxGroupBytes = store.MaxGroupBytes

func entriesSize(es []kvEntry) int { return store.Size(es) }
