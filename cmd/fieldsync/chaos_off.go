//go:build !fieldsync_chaos

package main

import "fieldsync/agent"

// chaosConfig adds test-only faults and hooks to the worker's configuration.
// The shipped binary has none: they are compiled in only with the
// fieldsync_chaos build tag (chaos_on.go), for the randomized mesh test in
// e2e.
func chaosConfig(*agent.Config) {}
