package agent

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"fieldsync/crypto"
)

// The agent's state has one owner (docs/design.md §4, "One owner of state"):
//
//   - What writes build on (the spaces with their metadata, contexts, heads
//     and epoch keys, the record cache, the clock, the orphans) is guarded by
//     stateMu. It changes only inside a write transaction (withWrite), which
//     always unlocks; readers hold stateMu too, so they see one state.
//   - The trust tables (certificates, revocations, frozen authors, release
//     lists, certificate conflicts) are copy-on-write: a write transaction
//     publishes a changed copy (tx.editTrust); anyone reads the current one
//     without a lock (trustNow). Signature checks, which run in parallel
//     outside stateMu, and handshakes need them.
//   - statMu guards only counters and display caches (rejections, gaps,
//     skew, officer names, peers' claims). It is a leaf: nothing else is
//     locked while it is held.
//   - Work after a commit runs on the agent's own worker (afterWork), which
//     Close stops and waits for; the agent starts no other goroutine that
//     outlives the call that started it, but for Run's servers, which Run
//     waits for.

// trustTables is the agent's trust state. A published value is never
// changed: writers publish a modified copy.
type trustTables struct {
	certs    map[crypto.DeviceID]*crypto.Certificate
	revs     map[crypto.DeviceID]*crypto.Revocation
	frozen   map[gapKey]uint64           // (space, author) -> seq from which a forked author is frozen
	released map[crypto.SpaceID][]string // each space's effective release list (bureau fingerprints)
	// conflicts are certificates that contradict a pinned one (certs.go).
	conflicts []certConflict
	// erased are the tombstones: the erase marker of every space erased
	// here, whose envelopes are refused from then on (erase.go).
	erased map[crypto.SpaceID]*crypto.Erasure
}

func newTrustTables() *trustTables {
	return &trustTables{
		certs:    map[crypto.DeviceID]*crypto.Certificate{},
		revs:     map[crypto.DeviceID]*crypto.Revocation{},
		frozen:   map[gapKey]uint64{},
		released: map[crypto.SpaceID][]string{},
		erased:   map[crypto.SpaceID]*crypto.Erasure{},
	}
}

func (t *trustTables) clone() *trustTables {
	return &trustTables{
		certs:     maps.Clone(t.certs),
		revs:      maps.Clone(t.revs),
		frozen:    maps.Clone(t.frozen),
		released:  maps.Clone(t.released), // the lists are replaced, never changed in place
		conflicts: slices.Clone(t.conflicts),
		erased:    maps.Clone(t.erased),
	}
}

// trustNow returns the current trust tables: a consistent snapshot, safe
// to read from any goroutine, never to change.
func (a *Agent) trustNow() *trustTables { return a.trustTab.Load() }

// tx is one write transaction over the agent's state (withWrite).
type tx struct {
	a       *Agent
	entries []kvEntry
	// dirty: the in-memory state may have changed; if the transaction
	// fails, the state is reloaded from the store. Validation that fails
	// before anything changed leaves it false, and reloads nothing.
	dirty bool
	// window: hand the entries to the committer and return without waiting
	// for the disk (up to ingestWindow in flight; commitInWindow).
	window bool
	// handed, if set, runs once the entries are with the committer and
	// stateMu is released, before the wait for the disk (combine.go: the
	// next batch of writes is built while this one is synced).
	handed func()
	// sign, if set, signs the transaction's change envelope and returns its
	// entry; it runs after stateMu is released, the write's place in the
	// commit order already taken (commitWrite).
	sign func() (kvEntry, error)
}

// put adds store entries to the transaction's atomic batch.
func (t *tx) put(e ...kvEntry) { t.entries = append(t.entries, e...) }

// changed marks that the in-memory state is being changed.
func (t *tx) changed() { t.dirty = true }

// fail returns err after marking the state changed: the transaction's
// in-memory changes are undone by a reload.
func (t *tx) fail(err error) error {
	t.dirty = true
	return err
}

// editTrust publishes a copy of the trust tables changed by fn.
func (t *tx) editTrust(fn func(*trustTables)) {
	t.dirty = true
	t.a.editTrustLocked(fn)
}

// editTrustLocked publishes a copy of the trust tables changed by fn, for
// the few paths that hold stateMu and write the store directly (revocation
// cuts, fork evidence; both reload after). stateMu held.
func (a *Agent) editTrustLocked(fn func(*trustTables)) {
	n := a.trustNow().clone()
	fn(n)
	a.trustTab.Store(n)
	// A release list or a revocation may change which spaces this device
	// can read: the search index follows (find.go).
	if a.find != nil && a.opened.Load() {
		a.queueAfter(&a.after.findRefreshDue)
	}
}

// withWrite runs fn as one write transaction: under stateMu, on the newest
// state (reloaded first if a commit failed since), then commits what fn put
// in one atomic, fsynced batch and returns once it is on disk. If fn fails
// after changing the state (tx.fail, tx.changed), the state is reloaded from
// the store. stateMu is released on every path, panics included (the next
// transaction then reloads).
func (a *Agent) withWrite(fn func(t *tx) error) error {
	if err := a.beginWrite(); err != nil {
		return err
	}
	t := &tx{a: a}
	done := false
	defer func() {
		if !done { // fn panicked: whatever it changed is not trusted
			a.stale = true
			a.stateMu.Unlock()
		}
	}()
	if err := fn(t); err != nil {
		done = true
		if t.dirty {
			a.abortWrite()
		} else {
			a.stateMu.Unlock()
		}
		return err
	}
	done = true
	if len(t.entries) == 0 {
		a.stateMu.Unlock()
		return nil
	}
	if t.window {
		if t.sign != nil { // not used together today: sign under the lock
			e, err := t.sign()
			if err != nil {
				a.abortWrite()
				return err
			}
			t.entries = append(t.entries, e)
		}
		return a.commitInWindow(t.entries)
	}
	return a.commitWrite(t.entries, t.sign, t.handed)
}

// beginWrite takes stateMu for a write transaction and, if a commit failed
// (or a transaction panicked) since the state was loaded, reloads it from
// the store first: writes built on lost state must not be built upon. On
// success the caller holds stateMu (withWrite releases it).
func (a *Agent) beginWrite() error {
	a.stateMu.Lock()
	if a.closed {
		a.stateMu.Unlock()
		return ErrClosed
	}
	if err := a.checkDiskSpace(); err != nil {
		a.stateMu.Unlock()
		return err
	}
	if err := a.reloadIfStale(); err != nil {
		a.stateMu.Unlock()
		return err
	}
	return nil
}

// reloadIfStale reloads the state from the store if a commit failed (or a
// transaction panicked) since it was loaded. stateMu held.
func (a *Agent) reloadIfStale() error {
	if a.gen > a.com.FailedGen() && !a.stale {
		return nil
	}
	if err := a.reload(); err != nil {
		return &StoreError{Dir: a.cfg.Layout.Store(), Err: fmt.Errorf("reload after a failed write: %w", err)}
	}
	a.stale = false
	return nil
}

// commitWrite takes the write's place in the commit order, releases the
// write lock, signs the write's envelope (sign, if set) outside it, gives
// the entries to their place and waits until they are on disk (or failed),
// leading the commit on this goroutine if none is under way (internal/store's
// leader and followers; docs/design.md §7, "Group commit" and "Signing
// outside the write lock"). Places are taken under stateMu, so groups reach
// the disk in the order their envelopes were chained, whatever order the
// signatures end in. A signature that fails, or panics, cancels the place:
// the write fails, and so does every later write of its generation (they
// may be built on it), and the next write reloads the state.
func (a *Agent) commitWrite(entries []kvEntry, sign func() (kvEntry, error), handed func()) error {
	a.writeID++
	a.placeOwnFlight()
	tk := a.com.Reserve(a.gen, a.writeID)
	a.stateMu.Unlock()
	defer func() {
		if !tk.Filled() { // sign panicked
			tk.Cancel(errors.New("write not signed"))
			_ = tk.Wait()
		}
	}()
	if handed != nil {
		handed()
	}
	if sign != nil {
		e, err := sign()
		if err != nil {
			err = fmt.Errorf("sign envelope: %w", err)
			tk.Cancel(err)
			_ = tk.Wait()
			return err
		}
		entries = append(entries, e)
	}
	tk.Fill(entries)
	return tk.Wait()
}

// commitInWindow hands the entries to the committer and releases the write
// lock without waiting for the disk, unless more than ingestWindow such
// writes are in flight: then it waits for the oldest. A failed commit is
// reported by whichever call collects it (and fails later writes built on
// it, as always).
func (a *Agent) commitInWindow(entries []kvEntry) error {
	a.writeID++
	a.placeOwnFlight()
	a.inflight = append(a.inflight, a.com.Submit(entries, a.gen, a.writeID))
	var wait []<-chan error
	for len(a.inflight) > ingestWindow {
		wait = append(wait, a.inflight[0])
		a.inflight = a.inflight[1:]
	}
	a.stateMu.Unlock()
	for _, w := range wait {
		if err := <-w; err != nil {
			return err
		}
	}
	return nil
}

// abortWrite undoes the in-memory changes of a write that failed before it
// was handed to the committer, and unlocks.
func (a *Agent) abortWrite() {
	if err := a.reload(); err != nil {
		a.log.Error("reload after an aborted write failed", "err", err)
	}
	a.stateMu.Unlock()
}

// reload waits until every write already handed to the committer is on disk
// or failed, then rebuilds the in-memory state from the store and starts a
// new generation. stateMu held. Reloading without the barrier could forget a
// write still in flight and hand its seq out again.
func (a *Agent) reload() error {
	a.com.Barrier()
	a.reloads.Add(1)
	clear(a.flightFix)
	a.flightFix = a.flightFix[:0]
	if err := a.load(); err != nil {
		return err
	}
	for _, sp := range a.spaces {
		// What waiting envelopes wait for is noted again by a drain: the
		// next envelope received in the space drains it (a cut may also
		// have settled what some waited for).
		sp.unlocked = true
	}
	if f := a.com.FailedGen(); a.gen <= f {
		a.gen = f + 1
	} else {
		a.gen++
	}
	return nil
}

// quiesced runs fn under stateMu with every commit settled: for work on the
// store itself that must not overlap a write (Badger refuses writes while
// a DropPrefix runs; its value-log collection reads the memtable's version
// unlocked). Unlike withWrite it does not refuse on a full disk: what runs
// here frees space.
func (a *Agent) quiesced(fn func() error) error {
	return a.withRead(func() error {
		if a.closed {
			return ErrClosed
		}
		a.com.Barrier()
		return fn()
	})
}

// withRead runs fn under stateMu, on the same consistent state writes see.
// fn must not write.
func (a *Agent) withRead(fn func() error) error {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	return fn()
}

// afterWork is the agent's one worker for work that follows a commit and
// must not run under stateMu or hold up its caller: wrapping keys on to
// officers a change made entitled, and applying at start what waited for a
// key that has since arrived. Requests coalesce: a burst of releases wraps
// once. Close stops it and waits for it.
type afterWork struct {
	mu       sync.Mutex // guards wake against a send after close
	stopped  bool
	wake     chan struct{}
	done     chan struct{}
	shareDue atomic.Bool // ShareKeys
	drainDue atomic.Bool // drain every space, for upgrades too
	// findFlushDue: changes wait to be added to the search index;
	// findRefreshDue: spaces to drop from it or build (find.go).
	findFlushDue   atomic.Bool
	findRefreshDue atomic.Bool
	// receiptsDue: receipts owed from before a stop (receipts.go).
	receiptsDue atomic.Bool
	// compactDue: enough changes were applied for a compaction pass
	// (compact.go).
	compactDue atomic.Bool
}

func (a *Agent) startAfterWork() {
	a.after.mu.Lock()
	defer a.after.mu.Unlock()
	a.after.wake = make(chan struct{}, 1)
	a.after.done = make(chan struct{})
	go a.afterLoop()
}

func (a *Agent) afterLoop() {
	defer close(a.after.done)
	for range a.after.wake {
		if a.after.shareDue.Swap(false) {
			if _, err := a.ShareKeys(); err != nil && !errors.Is(err, ErrClosed) {
				a.log.Warn("wrapping keys to newly entitled officers", "err", err)
			}
		}
		if a.after.drainDue.Swap(false) {
			for _, id := range a.SpaceIDs() {
				if err := a.drain(id, true); err != nil {
					if !errors.Is(err, ErrClosed) {
						a.log.Warn("applying waiting envelopes", "err", err)
					}
					break
				}
			}
		}
		if a.after.findFlushDue.Swap(false) {
			a.find.flush()
		}
		if a.after.findRefreshDue.Swap(false) {
			_ = a.findRefresh() // it logs what is not a shutdown
		}
		if a.after.receiptsDue.Swap(false) {
			a.receiptsIfDue()
		}
		if a.after.compactDue.Swap(false) {
			a.compactBackground()
		}
	}
}

// queueShareKeys asks the worker to wrap keys on (ShareKeys) soon.
func (a *Agent) queueShareKeys() { a.queueAfter(&a.after.shareDue) }

// queueDrainAll asks the worker to apply whatever waits in every space.
func (a *Agent) queueDrainAll() { a.queueAfter(&a.after.drainDue) }

func (a *Agent) queueAfter(due *atomic.Bool) {
	a.after.mu.Lock()
	defer a.after.mu.Unlock()
	if a.after.wake == nil || a.after.stopped {
		return // not opened, or closing
	}
	due.Store(true)
	select {
	case a.after.wake <- struct{}{}:
	default: // already woken: it will see the flag
	}
}

// stopAfterWork ends the worker once its current job is done. Jobs queued
// and not started are dropped: each is redone at the next start or trigger.
func (a *Agent) stopAfterWork() {
	a.after.mu.Lock()
	if a.after.wake == nil {
		a.after.mu.Unlock()
		return
	}
	if !a.after.stopped {
		a.after.stopped = true
		close(a.after.wake)
	}
	a.after.mu.Unlock()
	<-a.after.done
}

var errNoSpace = fmt.Errorf("%w: space", ErrNotFound)
