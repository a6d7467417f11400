package agent

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sort"

	"fieldsync/agent/api"
	"fieldsync/crypto"
	"fieldsync/internal/datadir"
	"fieldsync/internal/rules"
)

// Certificates of other devices: pinning and scoped trust (docs/crypto.md
// §4, "Pinning and scoped trust").
//
// A device ID is bound to the bureau that first certified it here, with the
// device's own countersignature (certificate version 2) as proof that the
// device accepted that enrollment. A later certificate replaces it only as a
// renewal: same bureau, same device keys, a later NotAfter. Anything else is
// a conflict, kept as evidence (bounded), counted and shown in status, never
// used.

// RejectCertConflict counts certificates that contradict a device's pinned
// certificate (status "rejected" and the rejections metric).
const RejectCertConflict = "cert_conflict"

// pfxCertConflict keys conflicting certificates kept as evidence:
// Z device(16) sha256(certificate)[:16] -> the certificate (binary).
const pfxCertConflict = 'Z'

// maxCertConflicts bounds the conflicting certificates kept (all devices).
const maxCertConflicts = 64

// ErrCertConflict is a certificate for a device pinned to another bureau or
// other keys. It wraps crypto.ErrUntrusted too.
var ErrCertConflict = errors.New("certificate conflicts with the device's pinned certificate")

func certConflictKey(dev crypto.DeviceID, blob []byte) []byte {
	sum := sha256.Sum256(blob)
	k := append([]byte{pfxCertConflict}, dev[:]...)
	return append(k, sum[:16]...)
}

// certConflict is one conflicting certificate held as evidence.
type certConflict struct {
	key    string // certConflictKey
	pinned *crypto.Certificate
	other  *crypto.Certificate
}

// AddCertificate stores a device certificate, so that the device's
// envelopes can be verified. It reports whether it was new (stored or
// renewed). It refuses (error wrapping crypto.ErrUntrusted):
//   - a version 1 certificate, without its device's countersignature, unless
//     it is the bureau-signed part of the certificate held for that device;
//   - a certificate of a bureau neither trusted nor released in a space this
//     device holds (scoped trust: such a certificate is usable only in the
//     spaces that release its bureau, trustFor);
//   - a certificate that contradicts the pinned one (ErrCertConflict: kept
//     as evidence, counted, shown in status).
//
// An older certificate of the pinned bureau for the same keys is ignored.
func (a *Agent) AddCertificate(blob []byte) (bool, error) {
	c, err := crypto.ParseCertificate(blob)
	if err != nil {
		return false, fmt.Errorf("certificate: %w", err)
	}
	id := c.Device.ID()
	old := a.trustNow().certs[id]
	if old != nil && bytes.Equal(old.MarshalBinary(), c.MarshalBinary()) {
		return false, nil
	}
	if !c.Countersigned() {
		if old != nil && bytes.Equal(old.BureauSigned(), c.BureauSigned()) {
			return false, nil // the form held before its device countersigned it
		}
		a.countReject(RejectUntrusted)
		a.log.Warn("refused a version 1 certificate: it lacks its device's countersignature, so it does not prove the device enrolled with that bureau (the device upgrades its certificate at its next start with this version)",
			"device", id.String(), "bureau", c.Bureau.Name, "bureau_fingerprint", c.Bureau.Fingerprint())
		return false, fmt.Errorf("certificate of device %s by bureau %s: %w: version 1, without the device's countersignature (the device countersigns it when it starts with this version)", id, c.Bureau.Name, crypto.ErrUntrusted)
	}
	fp := c.Bureau.Fingerprint()
	if _, ok := a.trust.Lookup(fp); !ok && !a.releasedAnywhere(fp) {
		return false, fmt.Errorf("certificate of device %s: %w (bureau %s, %s: not trusted, and no space held here is released to it)", id, crypto.ErrUntrusted, c.Bureau.Name, fp)
	}
	if old != nil {
		switch rules.PinCertificate(old, c, id == a.dev) {
		case rules.PinConflict:
			return false, a.noteConflict(old, c)
		case rules.PinKeep:
			// An older certificate of the pinned bureau, or our own (which
			// comes only from our data dir).
			return false, nil
		}
		// rules.PinRenew: a renewal by the pinned bureau, or the
		// countersigned form of a certificate held from before version 2.
	}
	added := false
	err = a.withWrite(func(t *tx) error {
		if a.trustNow().certs[id] != old {
			// Another certificate of this device came in meanwhile: judge
			// this one again against it.
			return errCertRaced
		}
		t.editTrust(func(tt *trustTables) { tt.certs[id] = c })
		t.put(a.db.entry(certKey(id), c.MarshalBinary()))
		added = true
		return nil
	})
	if errors.Is(err, errCertRaced) {
		return a.AddCertificate(blob)
	}
	return added, err
}

// sameEnrollment reports whether c is of the same bureau (key and name) and
// for the same device keys (Ed25519 and X25519) as pinned.
// errCertRaced: another certificate of the device was stored between the
// check and the write; AddCertificate judges again.
var errCertRaced = errors.New("certificate raced")

func sameEnrollment(pinned, c *crypto.Certificate) bool {
	return rules.SameEnrollment(pinned, c)
}

// noteConflict keeps c, which contradicts the pinned certificate, as
// evidence (once; at most maxCertConflicts), counts and logs it, and returns
// the error for the caller.
func (a *Agent) noteConflict(pinned, c *crypto.Certificate) error {
	id := c.Device.ID()
	blob := c.MarshalBinary()
	key := certConflictKey(id, blob)
	err := fmt.Errorf("%w (%w): device %s is pinned to bureau %s (%s); this certificate by bureau %s (%s) is kept as evidence, never used",
		ErrCertConflict, crypto.ErrUntrusted, id, pinned.Bureau.Name, pinned.Bureau.Fingerprint(), c.Bureau.Name, c.Bureau.Fingerprint())
	tt := a.trustNow()
	known := slices.ContainsFunc(tt.conflicts, func(x certConflict) bool { return x.key == string(key) })
	full := len(tt.conflicts) >= maxCertConflicts
	if known {
		return err
	}
	a.countReject(RejectCertConflict)
	a.log.Error("a certificate contradicts the device's pinned certificate: another bureau (or other keys) claims this device; kept as evidence, not used — tell both bureaus",
		"device", id.String(), "pinned_bureau", pinned.Bureau.Name, "pinned_fingerprint", pinned.Bureau.Fingerprint(),
		"other_bureau", c.Bureau.Name, "other_fingerprint", c.Bureau.Fingerprint(), "stored", !full)
	if full {
		return err
	}
	werr := a.withWrite(func(t *tx) error {
		if !slices.ContainsFunc(a.trustNow().conflicts, func(x certConflict) bool { return x.key == string(key) }) {
			t.editTrust(func(tt *trustTables) {
				tt.conflicts = append(tt.conflicts, certConflict{key: string(key), pinned: pinned, other: c})
			})
		}
		t.put(a.db.entry(key, blob))
		return nil
	})
	if werr != nil {
		return werr
	}
	return err
}

// loadCertConflicts reads the conflict evidence into the trust tables
// being loaded (load.go).
func (a *Agent) loadCertConflicts(tt *trustTables) error {
	var out []certConflict
	err := a.db.scan([]byte{pfxCertConflict}, func(k, v []byte) error {
		c, err := crypto.ParseCertificate(v)
		if err != nil || len(k) != 1+16+16 {
			return nil // evidence only: an unreadable entry is skipped
		}
		pinned := tt.certs[c.Device.ID()]
		if pinned != nil && len(out) < maxCertConflicts {
			out = append(out, certConflict{key: string(k), pinned: pinned, other: c})
		}
		return nil
	}, a.countCorrupt)
	tt.conflicts = out
	return err
}

// CertConflicts lists the conflicting certificates held as evidence.
func (a *Agent) CertConflicts() []api.CertConflict {
	tt := a.trustNow()
	out := make([]api.CertConflict, 0, len(tt.conflicts))
	for _, x := range tt.conflicts {
		out = append(out, api.CertConflict{
			Device:       x.other.Device.ID().String(),
			PinnedBureau: x.pinned.Bureau.Name, PinnedFingerprint: x.pinned.Bureau.Fingerprint(),
			OtherBureau: x.other.Bureau.Name, OtherFingerprint: x.other.Bureau.Fingerprint(),
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Device != out[j].Device {
			return out[i].Device < out[j].Device
		}
		return out[i].OtherFingerprint < out[j].OtherFingerprint
	})
	return out
}

// Certificates returns every certificate this agent knows and gossips,
// binary form: this device's own and the countersigned ones (a version 1
// certificate held from before version 2 is kept for local use but not
// passed on: no peer would take it).
func (a *Agent) Certificates() [][]byte {
	tt := a.trustNow()
	out := make([][]byte, 0, len(tt.certs))
	for id, c := range tt.certs {
		if c.Countersigned() || id == a.dev {
			out = append(out, c.MarshalBinary())
		}
	}
	return out
}

// ---- scoped trust ----

// noteReleased publishes a space's effective release list in the trust
// tables, for the lock-free readers (verifyEnvelope, VerifyPeer), when it
// changed: routing.go calls it whenever the list may have. stateMu held.
func (a *Agent) noteReleased(sp *spaceState) {
	if slices.Equal(a.trustNow().released[sp.id], sp.meta.ReleaseFP) {
		return
	}
	a.editTrustLocked(func(tt *trustTables) { setReleased(tt, sp) })
}

// setReleased records a space's effective release list in trust tables
// being built (load.go, noteReleased).
func setReleased(tt *trustTables, sp *spaceState) {
	if len(sp.meta.ReleaseFP) == 0 {
		delete(tt.released, sp.id)
		return
	}
	tt.released[sp.id] = slices.Clone(sp.meta.ReleaseFP)
}

// releasedAnywhere reports whether some space held here releases the bureau
// of fingerprint fp.
func (a *Agent) releasedAnywhere(fp string) bool {
	for _, fps := range a.trustNow().released {
		if slices.Contains(fps, fp) {
			return true
		}
	}
	return false
}

// trustFor is the trust set that judges cert's device in space: this
// device's trust list, extended with cert's bureau when the space's
// effective release list names that bureau's fingerprint. The owning
// bureau's release, signed by one of its officer devices that this device
// trusts (crypto.CheckRouting), is what vouches for the released bureau —
// and only in that space (docs/crypto.md, "Pinning and scoped trust").
func (a *Agent) trustFor(space crypto.SpaceID, cert *crypto.Certificate) *crypto.TrustSet {
	if cert == nil {
		return a.trust
	}
	fp := cert.Bureau.Fingerprint()
	if _, ok := a.trust.Lookup(fp); ok {
		return a.trust
	}
	rel := slices.Contains(a.trustNow().released[space], fp)
	if !rel {
		return a.trust
	}
	return crypto.NewTrustSet(append(a.trust.List(), cert.Bureau)...)
}

// trustAnywhere is trustFor for objects not tied to one space (a device's
// revocation, the stream challenge): the trust list, extended with cert's
// bureau when some space held here releases it. What a device so accepted
// may then read or write is still decided per space (Entitled, trustFor).
func (a *Agent) trustAnywhere(cert *crypto.Certificate) *crypto.TrustSet {
	fp := cert.Bureau.Fingerprint()
	if _, ok := a.trust.Lookup(fp); ok || !a.releasedAnywhere(fp) {
		return a.trust
	}
	return crypto.NewTrustSet(append(a.trust.List(), cert.Bureau)...)
}

// ---- this device's own certificate ----

// upgradeOwnCert countersigns this device's own certificate if it is still
// version 1 (issued before version 2, or by `enroll` and installed without
// countersigning) and rewrites the certificate file, so that peers accept
// it. No user action is needed: the device holds its key. A file that
// cannot be written is logged; the countersigned form is used anyway.
func (a *Agent) upgradeOwnCert() {
	if a.cert == nil || a.id == nil || a.cert.Countersigned() {
		return
	}
	c, err := a.cert.Countersign(a.id)
	if err != nil {
		a.log.Error("could not countersign this device's certificate; peers will refuse it", "err", err)
		return
	}
	a.cert = c
	if err := datadir.WriteFile(a.cfg.Layout.Cert(), c.Marshal(), 0o644); err != nil {
		a.log.Warn("countersigned this device's certificate but could not rewrite the file; it is countersigned again at each start", "file", a.cfg.Layout.Cert(), "err", err)
		return
	}
	a.log.Info("countersigned this device's certificate (version 2)", "file", a.cfg.Layout.Cert())
}
