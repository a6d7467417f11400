package agent

import (
	"errors"
	gosync "sync"

	"fieldsync/crdt"
	"fieldsync/crypto"
)

// Write combining (docs/design.md §4, "A local write"; §7, "Group
// commit"). Every local write is a change: built under the state lock,
// signed, sealed, applied, and made durable by an fsync. Signing and the
// fsync dominate. An author's changes form a hash chain, but each names the
// ID of the envelope before it, which does not cover its signature
// (docs/crypto.md, "Envelope ID and chain link"): signatures are made
// outside the state lock, in parallel with the next batch's build, and the
// envelopes reach the disk in seq order (state.go commitWrite;
// docs/design.md §7, "Signing outside the write lock"). What is shared is
// the change: API requests that
// arrive while a write is under way, in the same space and on distinct
// records, go into the next change together — one signature, one envelope,
// one fsync — and each request is answered with its own record once that
// change is durable. A lone writer pays nothing for this: its request is
// its own batch.
//
// One request at a time per space leads: it takes the waiting requests
// (distinct records, at most maxCombine), writes them as one change, then
// hands the lead to the oldest request still waiting, so no request waits
// for more than the batches queued before it.
//
// When the lead passes on decides how much is combined. A lone writer
// finds no leader and writes at once. Otherwise the lead passes once the
// batch is durable, not as soon as it is with the committer: requests that
// arrive while a batch syncs could not be committed before that sync ends
// anyway, and building them then makes one change of all of them instead
// of one change (and one signature) per request that happened to arrive
// alone (32 clients on distinct records: ~1.8 requests per change before,
// ~10–12 after; docs/design.md §7, "Group commit"). What a waiting request pays is
// the next batch's build, never a combining timer. Two cases still hand the
// lead on early, so the next batch is built while this one syncs: a full
// batch (maxCombine) is waiting, or a waiting request writes a record of
// this batch — it can never share a change with it, so waiting gains
// nothing (many clients writing one record then pipeline as before).

// maxCombine bounds the requests in one combined change (its size is also
// bounded by MaxChangeBytes: a batch over it is written one by one).
const maxCombine = 64

// writeReq is one API write waiting to be combined.
type writeReq struct {
	rid   crdt.RecordID
	build opBuilder
	done  chan writeResult // buffered: the result
	lead  chan struct{}    // buffered: this request now leads
}

type writeResult struct {
	rec *crdt.Record
	err error
}

// writeQueue is one space's waiting writes.
type writeQueue struct {
	mu      gosync.Mutex
	pending []*writeReq
	leading bool
}

func (a *Agent) writeQueueFor(id crypto.SpaceID) *writeQueue {
	a.combineMu.Lock()
	defer a.combineMu.Unlock()
	if a.writeQueues == nil {
		a.writeQueues = make(map[crypto.SpaceID]*writeQueue)
	}
	q := a.writeQueues[id]
	if q == nil {
		q = &writeQueue{}
		a.writeQueues[id] = q
	}
	return q
}

// combinedWrite writes one record's ops, in a change shared with other
// requests waiting at the same time, and returns the record once durable.
func (a *Agent) combinedWrite(sp *spaceState, rid crdt.RecordID, build opBuilder) (*crdt.Record, error) {
	q := a.writeQueueFor(sp.id)
	req := &writeReq{rid: rid, build: build, done: make(chan writeResult, 1), lead: make(chan struct{}, 1)}
	q.mu.Lock()
	q.pending = append(q.pending, req)
	lead := !q.leading
	q.leading = true
	q.mu.Unlock()
	for {
		if lead {
			a.runCombined(sp, q)
			lead = false
		}
		select {
		case r := <-req.done:
			return r.rec, r.err
		case <-req.lead:
			lead = true
		}
	}
}

// handOff passes the lead to the oldest waiting request, or ends it.
func (q *writeQueue) handOff() {
	q.mu.Lock()
	if len(q.pending) > 0 {
		q.pending[0].lead <- struct{}{} // not yet taken: it is waiting in combinedWrite
	} else {
		q.leading = false
	}
	q.mu.Unlock()
}

// runCombined takes the waiting requests on distinct records (in arrival
// order; a second write of a record waits for the next batch) and writes
// them as one change. It hands the lead on once the change is durable, or
// as soon as it is with the committer when building the next batch now
// loses nothing (pipelineNext); the committer orders the batches, and
// fails the later if the earlier fails.
func (a *Agent) runCombined(sp *spaceState, q *writeQueue) {
	var once gosync.Once
	handOff := func() { once.Do(q.handOff) }
	defer handOff()
	q.mu.Lock()
	var batch []*writeReq
	seen := map[crdt.RecordID]bool{}
	rest := q.pending[:0]
	for _, r := range q.pending {
		if len(batch) < maxCombine && !seen[r.rid] {
			seen[r.rid] = true
			batch = append(batch, r)
		} else {
			rest = append(rest, r)
		}
	}
	q.pending = rest
	q.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	builds := make([]opBuilder, len(batch))
	for i, r := range batch {
		builds[i] = r.build
	}
	handed := func() {
		if q.pipelineNext(seen) {
			handOff()
		}
	}
	_, outs, errs, err := a.writeOpsMulti(sp, builds, handed)
	if err != nil && len(batch) > 1 && errors.Is(err, errTooLarge) {
		// Together over the change limit: one by one.
		for _, r := range batch {
			_, out, err := a.writeOps(sp, r.build)
			r.done <- writeResult{rec: out[r.rid], err: err}
		}
		return
	}
	handOff() // before the answers: the next batch starts building at once
	for i, r := range batch {
		switch {
		case err != nil:
			r.done <- writeResult{err: err}
		case errs[i] != nil:
			r.done <- writeResult{err: errs[i]}
		default:
			r.done <- writeResult{rec: outs[i][r.rid]}
		}
	}
}

// pipelineNext reports whether the next batch should be built while the
// batch of records inBatch syncs rather than after: a full batch is
// already waiting, or a waiting request writes one of inBatch's records
// (it cannot join this change, and the requests behind it would otherwise
// wait a sync each). Else waiting for the sync lets every request arriving
// meanwhile share the next change (see the top of this file).
func (q *writeQueue) pipelineNext(inBatch map[crdt.RecordID]bool) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.pending) >= maxCombine {
		return true
	}
	for _, r := range q.pending {
		if inBatch[r.rid] {
			return true
		}
	}
	return false
}
