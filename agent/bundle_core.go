package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"fieldsync/agent/bundle"
	"fieldsync/crypto"
	fsync "fieldsync/sync"
)

// bundleCore is what bundles need of the agent (bundle.Core). It is the
// only place bundle code touches the agent's state and its locks.
type bundleCore struct{ a *Agent }

var _ bundle.Core = bundleCore{}

func (b bundleCore) Self() (*crypto.Identity, *crypto.Certificate) { return b.a.id, b.a.cert }
func (b bundleCore) Now() time.Time                                { return b.a.cfg.now() }
func (b bundleCore) Log() *slog.Logger                             { return b.a.log }
func (b bundleCore) SpaceIDs() []crypto.SpaceID                    { return b.a.SpaceIDs() }

func (b bundleCore) ResolveSpace(ref string) (crypto.SpaceID, error) {
	var sp *spaceState
	err := b.a.withRead(func() (err error) {
		sp, err = b.a.resolveSpace(ref)
		return err
	})
	if err != nil {
		return crypto.SpaceID{}, err
	}
	return sp.id, nil
}

func (b bundleCore) Heads(space crypto.SpaceID) (map[crypto.DeviceID]uint64, error) {
	// What is held: an export sends up to it (not the heads lowered to
	// ask sync peers for whole copies of stubs, heal.go).
	v, err := syncAdapter{b.a}.heads(fsync.SpaceID(space))
	if err != nil {
		return nil, err
	}
	heads := make(map[crypto.DeviceID]uint64, len(v))
	for author, seq := range v {
		heads[crypto.DeviceID(author)] = seq
	}
	return heads, nil
}

func (b bundleCore) Entitled(cert *crypto.Certificate, space crypto.SpaceID) bool {
	peer := fsync.Peer{ID: fsync.PeerID(cert.Device.ID()), Bureau: cert.Bureau.Fingerprint(), Role: fsync.Role(cert.Role), SignKey: cert.Device.SignKey}
	return syncAdapter{b.a}.Entitled(peer, fsync.SpaceID(space))
}

func (b bundleCore) ReadLog(space crypto.SpaceID, author crypto.DeviceID, from, to uint64, fn func(env []byte) error) (bool, error) {
	return b.a.readLog(space, author, from, to, fn)
}

func (b bundleCore) Certificates() []*crypto.Certificate { return b.a.knownCerts() }

func (b bundleCore) Revocations() map[crypto.DeviceID]*crypto.Revocation {
	return maps.Clone(b.a.trustNow().revs)
}

func (b bundleCore) Evidence() [][]byte { return b.a.evidenceBlobs() }

func (b bundleCore) Pinned(dev crypto.DeviceID) *crypto.Certificate {
	return b.a.trustNow().certs[dev]
}

func (b bundleCore) Pin(c *crypto.Certificate) (*crypto.Certificate, bool) {
	pinned := b.Pinned(c.Device.ID())
	return pinned, pinned != nil && !sameEnrollment(pinned, c)
}

func (b bundleCore) TrustsBureau(fp string) bool {
	_, ok := b.a.trust.Lookup(fp)
	return ok || b.a.releasedAnywhere(fp)
}

func (b bundleCore) TrustAnywhere(cert *crypto.Certificate) *crypto.TrustSet {
	if cert == nil {
		return b.a.trust
	}
	return b.a.trustAnywhere(cert)
}

func (b bundleCore) CheckAuthor(h crypto.Header, cert *crypto.Certificate, rev *crypto.Revocation, at time.Time) (string, error) {
	if e := b.a.erasedSpace(h.Space); e != nil {
		// A bundle made before the erasure cannot bring the space back.
		return RejectErased, fmt.Errorf("space %s was erased on %s by device %s: its envelopes are refused for good", h.Space, e.IssuedAt.Format(time.RFC3339), e.Author)
	}
	if err := crypto.CheckAuthor(h, cert, rev, b.a.trustFor(h.Space, cert), at); err != nil {
		return rejectReason(err), err
	}
	return "", nil
}

func (b bundleCore) AddCertificate(blob []byte) (bool, error) { return b.a.AddCertificate(blob) }
func (b bundleCore) AddRevocation(blob []byte) (bool, error)  { return b.a.AddRevocation(blob) }
func (b bundleCore) AddEvidence(blob []byte) (bool, error)    { return b.a.ingestEvidence(blob) }
func (b bundleCore) AddErasure(blob []byte) (bool, error)     { return b.a.AddErasure(blob) }
func (b bundleCore) Erasures() [][]byte                       { return b.a.erasureBlobs() }

func (b bundleCore) Ingest(env []byte, h crypto.Header, cert *crypto.Certificate) (bundle.Outcome, error) {
	added, err := b.a.ingestVerified(env, h, cert, false)
	var re *RejectError
	switch {
	case errors.Is(err, errOrphanHeld):
		return bundle.Orphan, nil
	case errors.As(err, &re):
		return bundle.AlreadyHeld, &bundle.Reject{Reason: re.Reason, Message: re.Err.Error()}
	case err != nil:
		return bundle.AlreadyHeld, err
	case added:
		return bundle.Added, nil
	}
	return bundle.AlreadyHeld, nil
}

func (b bundleCore) Held(space crypto.SpaceID, author crypto.DeviceID, seq uint64) bool {
	_, err := b.a.db.get(envKey(space, author, seq))
	return err == nil
}

func (b bundleCore) CountReject(reason string) { b.a.countReject(reason) }

func (b bundleCore) WriteMark() uint64 {
	var gen uint64
	b.a.withRead(func() error { gen = b.a.gen; return nil })
	return gen
}

func (b bundleCore) Flush() {
	b.a.com.Barrier()
}

func (b bundleCore) FailedSince(mark uint64) bool { return b.a.com.FailedGen() >= mark }

func (b bundleCore) ShareKeys() (int, error) { return b.a.ShareKeys() }

func (b bundleCore) Imported(added, newCert bool) {
	a := b.a
	if added {
		a.notify()
	}
	if newCert {
		if _, err := a.ShareKeys(); err != nil {
			a.log.Warn("sharing keys with devices met in a bundle", "err", err)
		}
	}
	a.wrapIfDue() // keys that came in shares go on to entitled devices
	a.receiptsIfDue()
}
