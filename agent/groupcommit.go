package agent

import (
	"sync"
	"sync/atomic"
)

// The group commit (docs/design.md §7): writers build their entries under the write
// lock, hand them to one committer goroutine and wait. The committer takes
// every request waiting at that moment and writes them with one fsync, so N
// concurrent writers cost about one fsync instead of N. Badger's own batching
// reaches only ~1.7x with 32 writers because it syncs once per transaction.

// commitReq is one writer's atomic group of entries.
type commitReq struct {
	entries []kvEntry
	gen     uint64     // the store generation the entries were built on
	writeID uint64     // the write's sequence number (Agent.writeID)
	done    chan error // receives exactly one result
}

// committer owns the commit goroutine.
type committer struct {
	kv       *kv
	reqs     chan *commitReq
	maxBatch int

	// failedGen is the generation at the last failed commit. Requests built
	// on that generation or earlier fail without being written, since they
	// may depend on writes that never reached the disk; the write path
	// reloads its caches and moves to a new generation (see Agent.beginWrite).
	// Generations start at 1, so failedGen 0 fails nothing.
	failedGen atomic.Uint64

	// committed is the writeID of the last write known to be on disk.
	committed atomic.Uint64

	commits atomic.Uint64 // transactions committed (for benchmarks and status)
	// failCommit is Config.FailCommit (tests only).
	failCommit func(n uint64) error
	writes     atomic.Uint64 // requests acknowledged

	stopOnce sync.Once
	stopped  chan struct{}
}

func newCommitter(k *kv, failCommit func(n uint64) error) *committer {
	c := &committer{kv: k, reqs: make(chan *commitReq, 1024), maxBatch: 512, stopped: make(chan struct{}), failCommit: failCommit}
	go c.loop()
	return c
}

// submit queues a request; the caller waits on req.done.
func (c *committer) submit(r *commitReq) { c.reqs <- r }

// barrier returns once everything submitted before it is on disk or failed.
// The store may then be written directly (a revocation cut, fork evidence,
// a reload) without racing a write in flight.
func (c *committer) barrier() {
	b := &commitReq{done: make(chan error, 1)}
	c.submit(b)
	<-b.done
}

// stop ends the loop after the queued requests are committed.
func (c *committer) stop() {
	c.stopOnce.Do(func() { close(c.reqs) })
	<-c.stopped
}

func (c *committer) loop() {
	defer close(c.stopped)
	batch := make([]*commitReq, 0, c.maxBatch)
	for first := range c.reqs {
		batch = append(batch[:0], first)
	drain:
		for len(batch) < c.maxBatch {
			select {
			case r, ok := <-c.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		c.commit(batch)
	}
}

func (c *committer) commit(batch []*commitReq) {
	var barriers []*commitReq
	defer func() {
		for _, b := range barriers {
			b.done <- nil
		}
	}()
	groups := make([][]kvEntry, 0, len(batch))
	live := make([]*commitReq, 0, len(batch))
	for _, r := range batch {
		if r.entries == nil { // a barrier: everything before it is done
			barriers = append(barriers, r)
			continue
		}
		if r.gen <= c.failedGen.Load() {
			r.done <- errStaleWrite
			continue
		}
		groups = append(groups, r.entries)
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	var errs []error
	if err := c.injectedFailure(); err != nil {
		errs = make([]error, len(groups))
		for i := range errs {
			errs[i] = err
		}
	} else {
		errs = c.kv.commitGroups(groups)
	}
	c.commits.Add(1)
	for i, r := range live {
		if errs[i] != nil {
			if r.gen > c.failedGen.Load() {
				c.failedGen.Store(r.gen)
			}
		} else {
			c.writes.Add(1)
			c.committed.Store(r.writeID)
		}
		r.done <- errs[i]
	}
}

// injectedFailure asks the test hook whether this commit fails.
func (c *committer) injectedFailure() error {
	if c.failCommit == nil {
		return nil
	}
	return c.failCommit(c.commits.Load() + 1)
}
