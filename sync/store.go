package sync

import (
	"errors"
	"fmt"
	"time"
)

// ErrNotFound is returned by Store.Get for an envelope that is not held.
var ErrNotFound = errors.New("sync: not found")

// Envelope is one signed envelope as sync moves it: the (space, author, seq)
// taken from its clear header, and its bytes, opaque to sync.
//
// The triple travels next to the bytes on the wire; the receiving Store must
// check that it matches the envelope's own signed header (Ingest), so a lying
// peer gains nothing.
type Envelope struct {
	Space  SpaceID
	Author PeerID
	Seq    uint64
	Data   []byte
}

// Store is the envelope log and peer list that package agent supplies
// (backed by Badger) and that MemStore implements for tests.
//
// Concurrency: every method may be called from several goroutines at once
// (one per sync stream). Methods may block on disk I/O but never on the
// network. Byte slices passed in belong to the caller after the call returns
// (copy what you keep); byte slices returned belong to the receiver.
type Store interface {
	// Spaces lists the spaces whose envelopes this node holds (or is
	// entitled to and wants). Order does not matter.
	Spaces() ([]SpaceID, error)

	// Heads returns the version vector of a space: per author, the highest
	// seq of the contiguous prefix held on disk (see Ingest). An unknown
	// space has an empty vector.
	Heads(space SpaceID) (Vector, error)

	// Since calls fn, in (author raw bytes, seq) ascending order, with every
	// envelope of space that `have` lacks (seq > have[author]). fn's Data
	// may be reused after fn returns. If fn returns an error, Since stops and
	// returns it. The store may hold its read snapshot for the whole call,
	// which can last as long as the peer takes to read: don't hold locks that
	// Ingest needs.
	Since(space SpaceID, have Vector, fn func(Envelope) error) error

	// Get returns one envelope's bytes, or ErrNotFound.
	Get(space SpaceID, author PeerID, seq uint64) ([]byte, error)

	// Ingest verifies and stores one envelope received from peer `from`.
	// Verification is the store's (the agent's): signature, author
	// certificate and revocation, hash chain, and that env's (space, author,
	// seq) match its signed header. It must be idempotent: an envelope
	// already held returns (false, nil) and changes nothing. A rejected
	// envelope returns an error wrapping a *RejectError, whose Reason sync
	// counts; any other error is a local failure and ends the stream.
	//
	// Ingest may return added=true before env is on disk, so that one fsync
	// serves many envelopes, if the store keeps two promises: what it
	// acknowledged reaches the disk in order (a crash loses only the newest
	// few), and Heads reports only envelopes on disk. A sync that is cut
	// off, or a crash, then resumes from Heads and loses nothing a peer was
	// told we hold.
	Ingest(from PeerID, env Envelope) (added bool, err error)

	// LoadPeers returns the remembered peers (any order).
	LoadPeers() ([]KnownPeer, error)

	// SavePeer remembers (or updates) one peer; called when a peer
	// authenticates and when its address changes.
	SavePeer(p KnownPeer) error
}

// KnownPeer is a remembered peer, re-joined on start and with backoff while
// it is offline (docs/design.md §6).
type KnownPeer struct {
	ID       PeerID
	Addr     string // host:port of its memberlist (and sync) endpoint
	Role     Role
	LastSeen time.Time
}

// RejectError is how Store.Ingest and Authenticator.IngestMeshObject say
// that an input failed verification. Reason is a short, stable, lowercase
// token (e.g. "signature", "untrusted", "revoked", "expired", "gap", "fork",
// "mismatch", "malformed", "oversize"); sync counts rejections by it.
type RejectError struct {
	Reason string
	Err    error // the cause, may be nil
}

func (e *RejectError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("rejected (%s): %v", e.Reason, e.Err)
	}
	return "rejected (" + e.Reason + ")"
}

// Unwrap returns the cause.
func (e *RejectError) Unwrap() error { return e.Err }

// Reject returns a *RejectError with the given reason and cause.
func Reject(reason string, cause error) error { return &RejectError{Reason: reason, Err: cause} }

// rejectReason returns the reason of a *RejectError in err's chain.
func rejectReason(err error) (string, bool) {
	var re *RejectError
	if errors.As(err, &re) {
		r := re.Reason
		if r == "" {
			r = "unknown"
		}
		return r, true
	}
	return "", false
}

// PeerHeadsObserver is an optional interface of a Store: once per round and
// space, before sending, the engine tells it what the authenticated peer
// holds of the space (its version vector). The agent uses it to show how
// many of its own writes no peer holds yet (docs/design.md §3.3). It must not block.
type PeerHeadsObserver interface {
	ObservePeerHeads(peer PeerID, space SpaceID, have Vector)
}

// BatchIngester is an optional interface of a Store: the engine hands it the
// envelopes of a stream in batches (in stream order) instead of one Ingest
// call each, so the store can verify signatures in parallel. Results are per
// envelope, in order, with Ingest's meaning; a non-rejection error ends the
// stream.
type BatchIngester interface {
	IngestBatch(from PeerID, envs []Envelope) []IngestResult
}

// IngestResult is the outcome of one envelope of a batch.
type IngestResult struct {
	Added bool
	Err   error
}
