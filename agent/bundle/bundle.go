// Package bundle writes and reads sneakernet bundles (docs/design.md §6,
// docs/bundle.md): `bundle want` writes a device's version vectors, signed;
// `bundle export` writes what a receiver lacks and is entitled to (or
// everything) as one signed file; `bundle import` verifies a whole bundle
// before it stores any of it.
//
// The package knows the bundle format, its limits and its passes; what it
// needs of the agent (spaces and their logs, what this device trusts, where
// an import is stored) it asks through Core, which the agent implements in
// one file. Files are streamed from the store and to it, never held in
// memory whole.
package bundle

import (
	"errors"
	"log/slog"
	"time"

	"fieldsync/crypto"
)

// Core is what bundles need of the agent. The agent's implementation takes
// its own locks; a bundle holds none across calls.
type Core interface {
	// Self is this device's identity and certificate; Now its clock; Log
	// its logger.
	Self() (*crypto.Identity, *crypto.Certificate)
	Now() time.Time
	Log() *slog.Logger

	// SpaceIDs lists the spaces held here; ResolveSpace finds one by ID,
	// ID prefix or name.
	SpaceIDs() []crypto.SpaceID
	ResolveSpace(ref string) (crypto.SpaceID, error)
	// Heads is the last seq held of each author's log in space.
	Heads(space crypto.SpaceID) (map[crypto.DeviceID]uint64, error)
	// Entitled reports whether the device of cert may receive space.
	Entitled(cert *crypto.Certificate, space crypto.SpaceID) bool
	// ReadLog calls fn with the envelopes of author in space from seq from
	// to seq to, in order. An envelope corrupt in the store (counted by the
	// core) ends the run and returns corrupt=true.
	ReadLog(space crypto.SpaceID, author crypto.DeviceID, from, to uint64, fn func(env []byte) error) (corrupt bool, err error)

	// Certificates, Revocations and Evidence are what this device knows, to
	// pass on (certificates sorted by device ID; revocations a copy).
	Certificates() []*crypto.Certificate
	Revocations() map[crypto.DeviceID]*crypto.Revocation
	Evidence() [][]byte
	// Erasures are the erase markers (tombstones) held here, to pass on.
	Erasures() [][]byte
	// Pinned is the certificate the device is pinned to here, or nil; Pin
	// is the one c's device is pinned to and whether c conflicts with it
	// (another bureau or other keys: docs/crypto.md, "Pinning and scoped
	// trust").
	Pinned(dev crypto.DeviceID) *crypto.Certificate
	Pin(c *crypto.Certificate) (pinned *crypto.Certificate, conflict bool)
	// TrustsBureau reports whether the bureau of fingerprint fp is trusted
	// here or released by a space held here; TrustAnywhere is the trust set
	// that judges cert outside any one space (for nil, the trust list).
	TrustsBureau(fp string) bool
	TrustAnywhere(cert *crypto.Certificate) *crypto.TrustSet
	// CheckAuthor judges h's author as the sync path does (certificate,
	// revocation, trust in h's space, role) at time at; it returns "" or a
	// reject reason and the error.
	CheckAuthor(h crypto.Header, cert *crypto.Certificate, rev *crypto.Revocation, at time.Time) (reason string, err error)

	// AddCertificate, AddRevocation and AddEvidence store one object of a
	// bundle as if a peer had sent it; added is false for one held before.
	AddCertificate(blob []byte) (added bool, err error)
	AddRevocation(blob []byte) (added bool, err error)
	AddEvidence(blob []byte) (added bool, err error)
	// AddErasure takes an erase marker as if a peer had sent it: its
	// space is erased here (agent/erase.go).
	AddErasure(blob []byte) (added bool, err error)
	// Ingest stores a verified envelope as the next of its author's log,
	// not waiting for the disk (see Flush). It returns a *Reject for an
	// envelope refused, and Orphan for one held until its space's routing
	// record arrives.
	Ingest(env []byte, h crypto.Header, cert *crypto.Certificate) (Outcome, error)
	// Held reports whether the envelope is stored.
	Held(space crypto.SpaceID, author crypto.DeviceID, seq uint64) bool
	// CountReject counts an envelope left out, by reason, in status.
	CountReject(reason string)
	// WriteMark marks the store's writes so far; Flush waits until every
	// write handed to the store is on disk or failed; FailedSince reports
	// whether one after mark failed.
	WriteMark() uint64
	Flush()
	FailedSince(mark uint64) bool
	// ShareKeys wraps the space keys to entitled devices not yet holding
	// them; Imported tells the core what an import added (peers are told,
	// keys shared).
	ShareKeys() (int, error)
	Imported(added, newCert bool)
}

// Outcome is what Core.Ingest did with an envelope.
type Outcome int

const (
	AlreadyHeld Outcome = iota // held before
	Added                      // newly stored
	Orphan                     // held until its space's routing record arrives
)

// Reject is an envelope Core.Ingest refused; Reason is a reject reason of
// the agent's status (docs/api.md).
type Reject struct {
	Reason  string
	Message string
}

func (r *Reject) Error() string { return r.Message }

// Reject reasons this package gives itself: the same names as the agent's
// (docs/api.md, status.rejected).
const (
	ReasonMalformed = "malformed"
	ReasonUnknown   = "unknown_device"
	ReasonSignature = "signature"
	ReasonGap       = "gap"
	ReasonNoRouting = "no_routing"
)

// Errors. The agent maps ErrBadRequest, ErrNotFound, ErrForbidden and
// ErrTooLarge to its own API errors of the same names.
var (
	// ErrRefused is a bundle or want file refused whole; nothing of it
	// was stored.
	ErrRefused    = errors.New("refused")
	ErrBadRequest = errors.New("bad request")
	ErrNotFound   = errors.New("not found")
	ErrForbidden  = errors.New("not allowed")
	ErrTooLarge   = errors.New("too large")
)

// maxWantFile bounds a want file (vectors only: 24 bytes per author and space).
const maxWantFile = 64 << 20

// Bounds on what an import reports, so that its answer stays small whatever
// the bundle holds: runs of left-out envelopes listed (the rest are counted
// in skips_omitted), notes on objects left out, and messages kept for
// rejected envelopes.
const (
	maxListedSkips     = 4096
	maxObjectNotes     = 256
	maxSkipMessages    = 4096
	skipMessageNotKept = "(the details were not kept: too many envelopes left out)"
)

// verifyBatchBytes bounds the envelopes held at once while verifying.
const verifyBatchBytes = 32 << 20
