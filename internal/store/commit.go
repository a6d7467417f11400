package store

import (
	"errors"
	"sync"
	"sync/atomic"
)

// ErrStaleWrite fails a write that was built on state a failed commit lost.
var ErrStaleWrite = errors.New("an earlier write failed to reach the disk; retry")

// ErrCommitterStopped fails a group submitted after Stop.
var ErrCommitterStopped = errors.New("the store's committer is stopped")

// The group commit (docs/design.md §7, "Group commit"): writers build their
// entries under the write lock and take their place in the commit order
// there (Reserve or Submit); the groups are written in that order, every
// group waiting at that moment in one transaction with one fsync, so N
// concurrent writers cost about one fsync instead of N. Badger's own
// batching reaches only ~1.7x with 32 writers because it syncs once per
// transaction.
//
// Leader and followers, as LevelDB's and RocksDB's write threads: there is
// no committer goroutine in a write's path. A writer waiting for its group
// (Ticket.Wait) that finds no commit under way leads: it takes every ready
// group at the head of the queue, its own and those queued before and after
// it, commits them on its own goroutine, hands out the results and offers
// the lead to a writer still waiting. Writers arriving meanwhile queue, and
// the next leader takes them all. A lone write thus makes no hop beyond
// Badger's own write goroutine (which a raw commit pays too), and 32 still
// share fsyncs. Groups nobody waits for (Submit) are led by a background
// goroutine.
//
// A place may be taken before its group is ready (Reserve, then Fill or
// Cancel): the agent signs envelopes outside its state lock and must still
// reach the disk in the order it chained them. A leader takes only the
// ready groups at the head of the queue and stops at the first that is not:
// nothing is written past a place not yet filled. A cancelled place fails
// its generation, as a failed commit does, so that every later group built
// on it fails too.

// commitReq is one writer's atomic group of entries.
type commitReq struct {
	entries []Entry // nil: a barrier
	gen     uint64  // the store generation the entries were built on
	writeID uint64  // the write's sequence number, ascending
	ready   bool    // entries given (Fill), or cancelled
	cancel  error   // Cancel's error: the group will never come
	async   bool    // nobody waits in Wait: the background goroutine leads
	waiting bool    // its writer waits in Wait (c.mu)
	res     chan error
	wake    chan struct{} // buffered: the lead may be free
}

// Ticket is a place in the commit order (Reserve).
type Ticket struct {
	c      *Committer
	r      *commitReq
	filled bool
}

// Committer orders and commits groups of entries.
type Committer struct {
	kv       *DB
	maxBatch int

	mu      sync.Mutex
	queue   []*commitReq // in commit order
	leading bool         // a leader is committing
	stopped bool

	kick chan struct{} // buffered: the background goroutine may lead
	done chan struct{} // closed when the background goroutine ends

	// failedGen is the generation at the last failed commit. Requests built
	// on that generation or earlier fail without being written, since they
	// may depend on writes that never reached the disk; the writer reloads
	// its state and moves to a new generation (FailedGen).
	// Generations start at 1, so failedGen 0 fails nothing.
	failedGen atomic.Uint64

	// committed is the writeID of the last write known to be on disk.
	committed atomic.Uint64

	commits atomic.Uint64 // transactions committed (for benchmarks and status)
	// failCommit is Config.FailCommit (tests only).
	failCommit func(n uint64) error
	writes     atomic.Uint64 // requests acknowledged

	stopOnce sync.Once
}

// NewCommitter makes the committer of k and starts its background
// goroutine. failCommit, if set, is asked before each commit and fails it
// by returning an error (tests).
func NewCommitter(k *DB, failCommit func(n uint64) error) *Committer {
	c := &Committer{kv: k, maxBatch: 512, kick: make(chan struct{}, 1), done: make(chan struct{}), failCommit: failCommit}
	go c.background()
	return c
}

func newReq(gen, writeID uint64) *commitReq {
	return &commitReq{gen: gen, writeID: writeID, res: make(chan error, 1), wake: make(chan struct{}, 1)}
}

// Reserve takes the next place in the commit order for a group built on
// store generation gen by the write numbered writeID (ascending). The
// group is given later (Fill) or never (Cancel); nothing after the place
// is written before it is settled. The caller must Fill or Cancel the
// ticket, then Wait for it.
func (c *Committer) Reserve(gen, writeID uint64) *Ticket {
	r := newReq(gen, writeID)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		r.ready, r.cancel = true, ErrCommitterStopped
		r.res <- ErrCommitterStopped
		return &Ticket{c: c, r: r, filled: true}
	}
	c.queue = append(c.queue, r)
	return &Ticket{c: c, r: r}
}

// Fill gives the ticket's atomic group of entries: it is committed in its
// place.
func (t *Ticket) Fill(entries []Entry) {
	if entries == nil {
		entries = []Entry{} // nil marks a barrier
	}
	t.settle(entries, nil)
}

// Cancel settles the ticket without a group: it fails with err, and so
// does every later group built on its generation (they may build on it).
func (t *Ticket) Cancel(err error) {
	if err == nil {
		err = errors.New("write cancelled")
	}
	t.settle(nil, err)
}

// Filled reports whether Fill or Cancel was called.
func (t *Ticket) Filled() bool { return t.filled }

func (t *Ticket) settle(entries []Entry, cancel error) {
	if t.filled {
		return
	}
	t.filled = true
	c := t.c
	c.mu.Lock()
	t.r.entries, t.r.cancel, t.r.ready = entries, cancel, true
	c.offerLead()
	c.mu.Unlock()
}

// Wait returns the ticket's result once its group is on disk (nil) or
// failed. If no commit is under way it leads one, on the caller's goroutine.
func (t *Ticket) Wait() error { return t.c.wait(t.r) }

// Submit queues one ready atomic group, built on store generation gen by
// the write numbered writeID (ascending), and returns the channel that
// receives its one result. Groups are written in the order of their places
// (Submit, Reserve). Nobody needs to wait for it: the background goroutine
// leads if no writer does.
func (c *Committer) Submit(entries []Entry, gen, writeID uint64) <-chan error {
	if entries == nil {
		entries = []Entry{} // nil marks a barrier
	}
	r := newReq(gen, writeID)
	r.entries, r.ready, r.async = entries, true, true
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		r.res <- ErrCommitterStopped
		return r.res
	}
	c.queue = append(c.queue, r)
	c.offerLead()
	return r.res
}

// FailedGen is the generation of the last failed commit (0: none). Groups
// built on it or earlier fail without being written: they may depend on
// writes that never reached the disk. The writer reloads its state from
// the store and moves to a later generation.
func (c *Committer) FailedGen() uint64 { return c.failedGen.Load() }

// Committed is the writeID of the last write known to be on disk.
func (c *Committer) Committed() uint64 { return c.committed.Load() }

// Commits and Writes count fsynced transactions and the writes they carried
// (benchmarks, tests: the batching factor).
func (c *Committer) Commits() uint64 { return c.commits.Load() }

// Writes: see Commits.
func (c *Committer) Writes() uint64 { return c.writes.Load() }

// Barrier returns once everything placed before it is on disk or failed
// (places reserved before it included: it waits for them to be filled).
// The store may then be written directly (a revocation cut, fork evidence,
// a reload) without racing a write in flight.
func (c *Committer) Barrier() {
	r := newReq(0, 0)
	r.ready = true // entries nil: a barrier
	c.mu.Lock()
	if c.stopped && len(c.queue) == 0 {
		c.mu.Unlock()
		return
	}
	c.queue = append(c.queue, r)
	c.offerLead()
	c.mu.Unlock()
	_ = c.wait(r)
}

// Stop ends the background goroutine once every queued group is
// committed; groups submitted after it fail with ErrCommitterStopped.
// Every reserved place must be filled or cancelled.
func (c *Committer) Stop() {
	c.stopOnce.Do(func() {
		c.mu.Lock()
		c.stopped = true
		c.mu.Unlock()
		c.kickBackground()
	})
	<-c.done
}

// headReady reports whether the group at the head of the queue is ready to
// commit. c.mu held.
func (c *Committer) headReady() bool { return len(c.queue) > 0 && c.queue[0].ready }

// offerLead finds a leader when the lead is free and the head of the queue
// is ready: the first waiting writer among the ready groups, else the
// background goroutine if a group nobody waits for is among them (or the
// committer is stopping). A ready group whose writer has not yet come to
// Wait needs nobody: that writer leads when it comes. c.mu held.
func (c *Committer) offerLead() {
	if c.leading {
		return
	}
	if !c.headReady() {
		if c.stopped { // the background goroutine ends once the queue is empty
			c.kickBackground()
		}
		return
	}
	background := c.stopped
	for _, r := range c.queue {
		if !r.ready {
			break
		}
		if r.waiting {
			select {
			case r.wake <- struct{}{}:
			default:
			}
			return
		}
		if r.async {
			background = true
		}
	}
	if background {
		c.kickBackground()
	}
}

func (c *Committer) kickBackground() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// wait returns r's result, leading commits while the lead is free.
func (c *Committer) wait(r *commitReq) error {
	for {
		select {
		case err := <-r.res:
			return err
		default:
		}
		c.mu.Lock()
		if !c.leading && c.headReady() {
			c.lead() // unlocks and locks again
			c.mu.Unlock()
			continue
		}
		r.waiting = true
		c.mu.Unlock()
		select {
		case err := <-r.res:
			return err
		case <-r.wake:
		}
	}
}

// lead commits the ready groups at the head of the queue, then offers the
// lead on. Called with c.mu held and the lead free; returns with c.mu held.
func (c *Committer) lead() {
	c.leading = true
	n := 0
	for n < len(c.queue) && n < c.maxBatch && c.queue[n].ready {
		n++
	}
	batch := make([]*commitReq, n)
	copy(batch, c.queue[:n])
	rest := copy(c.queue, c.queue[n:])
	clear(c.queue[rest:])
	c.queue = c.queue[:rest]
	c.mu.Unlock()
	defer func() {
		if p := recover(); p != nil {
			// A panic in the commit (a bug) must not leave the lead taken for
			// ever: what it did not answer fails, with its generation, and
			// the panic goes on up the leader's stack.
			err := errors.New("commit failed: internal error")
			for _, r := range batch {
				if r.gen > c.failedGen.Load() {
					c.failedGen.Store(r.gen)
				}
				select {
				case r.res <- err:
				default: // answered already
				}
			}
			c.mu.Lock()
			c.leading = false
			c.offerLead()
			c.mu.Unlock()
			panic(p)
		}
	}()
	c.commit(batch)
	c.mu.Lock()
	c.leading = false
	c.offerLead()
}

// background leads for the groups nobody waits for, and ends once stopped
// with nothing queued.
func (c *Committer) background() {
	defer close(c.done)
	for range c.kick {
		c.mu.Lock()
		for !c.leading && c.headReady() {
			c.lead()
		}
		end := c.stopped && len(c.queue) == 0 && !c.leading
		c.mu.Unlock()
		if end {
			return
		}
	}
}

func (c *Committer) commit(batch []*commitReq) {
	var barriers []*commitReq
	defer func() {
		for _, b := range barriers {
			b.res <- nil
		}
	}()
	groups := make([][]Entry, 0, len(batch))
	live := make([]*commitReq, 0, len(batch))
	for _, r := range batch {
		switch {
		case r.cancel != nil: // never came: it fails, and fails what was built on it
			if r.gen > c.failedGen.Load() {
				c.failedGen.Store(r.gen)
			}
			r.res <- r.cancel
		case r.entries == nil: // a barrier: everything before it is done
			barriers = append(barriers, r)
		case r.gen <= c.failedGen.Load():
			r.res <- ErrStaleWrite
		default:
			groups = append(groups, r.entries)
			live = append(live, r)
		}
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
		errs = c.kv.CommitGroups(groups)
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
		r.res <- errs[i]
	}
}

// injectedFailure asks the test hook whether this commit fails.
func (c *Committer) injectedFailure() error {
	if c.failCommit == nil {
		return nil
	}
	return c.failCommit(c.commits.Load() + 1)
}
