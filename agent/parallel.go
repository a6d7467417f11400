package agent

import (
	"runtime"
	gosync "sync"
)

// forEachParallel calls fn(i) for every i in [0, n) on up to GOMAXPROCS
// goroutines and returns when all are done: verifying signatures, which is
// what bounds catch-up and bundle import, on every core.
func forEachParallel(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	var wg gosync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	wg.Wait()
}
