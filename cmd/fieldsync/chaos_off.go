//go:build !fieldsync_chaos

package main

import fsync "fieldsync/sync"

// chaosFaults is the worker's network fault injector. The shipped binary has
// none: fault injection is compiled in only with the fieldsync_chaos build
// tag (chaos_on.go), for the randomized mesh test in e2e.
func chaosFaults() fsync.Faults { return nil }
