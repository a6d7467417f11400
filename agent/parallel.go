package agent

import "fieldsync/internal/parallel"

// forEachParallel calls fn(i) for every i in [0, n) on up to GOMAXPROCS
// goroutines and returns when all are done: verifying signatures, which is
// what bounds catch-up and bundle import, on every core.
func forEachParallel(n int, fn func(i int)) { parallel.ForEach(n, fn) }
