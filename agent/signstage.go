package agent

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sync"

	"fieldsync/crypto"
	"fieldsync/internal/store"
)

// The ordered hand-off of local changes (issue 15): a change is built under
// stateMu (ops, apply, seq, clock, record states), then signed, sealed and
// handed to the committer outside it, so that the next write can be built
// while this one is signed. Envelope k's Prev is the hash of the signed
// envelope k-1, so signing stays serial: a signJob waits for the job before
// it, signs, submits in write order and marks itself done.
//
// Until a job is done, the in-memory head of this device in its space has
// the new seq but not the new hash. Only the change write path reads the
// state in that window (stateLock.lockUnsettled); every other holder of
// stateMu takes it through Lock, which first waits for every job handed
// off and writes their hashes into the heads. So outside the write path
// the state always reads as if each envelope had been signed under the lock.

// stateLock is stateMu: a mutex whose Lock also settles the signing jobs
// handed off under it.
type stateLock struct {
	mu sync.Mutex
	// Under mu:
	jobs   []*signJob // handed off since the last settle, in write order
	failed bool       // a handed-off job failed before its commit: reload
	signer *signer
}

// Lock takes stateMu with every handed-off change signed and submitted, and
// the heads up to date.
func (l *stateLock) Lock() {
	l.mu.Lock()
	l.settle()
}

// Unlock releases stateMu.
func (l *stateLock) Unlock() { l.mu.Unlock() }

// lockUnsettled takes stateMu for the change write path, which may build on
// heads whose newest envelope is still being signed.
func (l *stateLock) lockUnsettled() {
	l.mu.Lock()
	l.settleDone()
}

// settle waits for every handed-off job and writes its head. mu held.
func (l *stateLock) settle() {
	if len(l.jobs) == 0 {
		return
	}
	<-l.jobs[len(l.jobs)-1].done // jobs finish in order
	l.settleDone()
}

// settleDone settles the jobs already finished, oldest first. mu held.
func (l *stateLock) settleDone() {
	n := 0
	for _, j := range l.jobs {
		if !isDone(j.done) {
			break
		}
		if j.err != nil {
			l.failed = true
		} else if hd := j.sp.heads[j.hdr.Author]; hd.Seq == j.hdr.Seq {
			j.sp.heads[j.hdr.Author] = head{Seq: j.hdr.Seq, Hash: j.hash}
		}
		n++
	}
	clear(l.jobs[:n])
	l.jobs = l.jobs[n:]
	if len(l.jobs) == 0 {
		l.jobs = nil
	}
}

// signJob is one change handed off to be signed, sealed and committed.
type signJob struct {
	sp       *spaceState
	hdr      crypto.Header // all but Prev
	prevHash [32]byte      // Prev, if prevSame is nil
	prevSame *signJob      // the job of the previous envelope in this space, if unsettled
	prev     *signJob      // the job handed off before this one (any space)
	body     []byte
	key      *crypto.SpaceKey
	plain    []kvEntry // entries to seal after the envelope's (values in clear)
	gen      uint64
	writeID  uint64

	// Set by the signer before done is closed:
	hash [32]byte
	err  error
	res  <-chan error // the commit's result, if submitted
	done chan struct{}
}

// errEarlierSign fails a change built on one whose signing failed.
var errEarlierSign = errors.New("an earlier write failed before reaching the disk; retry")

// handOff prepares the job of a change envelope with header h
// (nextHeader): Prev is the hash of the newest job of the space still
// being signed, or else h.Prev, the head's. stateMu held (lockUnsettled).
func (a *Agent) handOff(sp *spaceState, h crypto.Header, body []byte, key *crypto.SpaceKey, plain []kvEntry) *signJob {
	l := &a.stateMu
	a.writeID++
	j := &signJob{sp: sp, hdr: h, body: body, key: key, plain: plain, gen: a.gen, writeID: a.writeID, done: make(chan struct{})}
	if n := len(l.jobs); n > 0 {
		j.prev = l.jobs[n-1]
		for i := n - 1; i >= 0; i-- {
			if o := l.jobs[i]; o.sp == sp && o.hdr.Author == h.Author {
				j.prevSame = o
				break
			}
		}
	}
	if j.prevSame == nil {
		j.prevHash = h.Prev // the head's hash, settled (nextHeader)
	}
	l.jobs = append(l.jobs, j)
	a.enqueueSign(j)
	return j
}

// signer is the goroutine that signs, seals and submits the handed-off
// changes, in the order they were handed off (one goroutine: the chain of
// Prev hashes is serial, and a hot loop over the queue costs no wake-up per
// write). Started on the first hand-off, stopped by Close.
type signer struct {
	queue   chan *signJob
	stopped chan struct{}
}

// enqueue hands j to the signer, starting it if needed. stateMu held: the
// queue's order is the write order.
func (a *Agent) enqueueSign(j *signJob) {
	l := &a.stateMu
	if l.signer == nil {
		l.signer = &signer{queue: make(chan *signJob, 1024), stopped: make(chan struct{})}
		go a.signLoop(l.signer)
	}
	l.signer.queue <- j // never blocks for long: the signer takes no lock
}

// stopSigner ends the signer once its queue is empty. stateMu held, and
// settled (Lock), so the queue is empty.
func (l *stateLock) stopSigner() {
	if l.signer != nil {
		close(l.signer.queue)
		<-l.signer.stopped
		l.signer = nil
	}
}

// signLoop signs every job waiting, then submits them together, so that
// one commit takes them all (the committer takes what waits when it is
// free: submitted one by one, they would trickle into small commits, and
// each commit's fsync costs CPU too).
func (a *Agent) signLoop(s *signer) {
	defer close(s.stopped)
	var batch []*signJob
	var ws []store.Write
	for j := range s.queue {
		batch = append(batch[:0], j)
	drain:
		for len(batch) < 256 {
			select {
			case j, ok := <-s.queue:
				if !ok {
					break drain
				}
				batch = append(batch, j)
			default:
				break drain
			}
		}
		ws = ws[:0]
		var signed []*signJob
		for _, j := range batch {
			if entries := a.signOne(j); entries != nil {
				ws = append(ws, store.Write{Entries: entries, Gen: j.gen, WriteID: j.writeID})
				signed = append(signed, j)
			} else {
				close(j.done) // failed: j.err is set
			}
		}
		res := a.com.SubmitAll(ws)
		for i, j := range signed {
			j.res = res[i]
			close(j.done)
		}
	}
}

// signOne signs and seals j and returns its entries, or sets j.err and
// returns nil. The job before it is signed already (one signer, in order).
func (a *Agent) signOne(j *signJob) (entries []kvEntry) {
	defer func() {
		if p := recover(); p != nil {
			j.err = fmt.Errorf("signing a change panicked: %v", p)
			entries = nil
		}
	}()
	if j.prev != nil && j.prev.err != nil {
		j.err = errEarlierSign
		return nil
	}
	h := j.hdr
	h.Prev = j.prevHash
	if j.prevSame != nil {
		h.Prev = j.prevSame.hash
	}
	env, err := crypto.Seal(h, j.body, j.key, a.id, rand.Reader)
	if err != nil {
		j.err = fmt.Errorf("seal envelope: %w", err)
		return nil
	}
	j.hash = crypto.Hash(env)
	entries = make([]kvEntry, 0, 2+len(j.plain))
	entries = append(entries,
		a.db.entry(envKey(h.Space, h.Author, h.Seq), env),
		a.db.entry(headKey(h.Space, h.Author), head{Seq: h.Seq, Hash: j.hash}.marshal()))
	for _, e := range j.plain {
		entries = append(entries, a.db.entry(e.Key, e.Val))
	}
	return entries
}

// waitSignJob returns once j is on disk, or failed. stateMu not held.
func waitSignJob(j *signJob) error {
	<-j.done
	if j.err != nil {
		return j.err
	}
	return <-j.res
}

func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
