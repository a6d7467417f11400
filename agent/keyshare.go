package agent

import (
	"crypto/rand"
	"slices"

	"fieldsync/crypto"
)

// shareKey identifies one epoch key wrapped to one device in a space.
type shareKey struct {
	recipient crypto.DeviceID
	epoch     crypto.KeyID
}

func sharedKey(space crypto.SpaceID, s shareKey) []byte {
	k := append([]byte{pfxShared}, space[:]...)
	k = append(k, s.recipient[:]...)
	return append(k, s.epoch[:]...)
}

// entitled reports whether a certificate's device may read the space: an
// officer of a bureau the space is released to (never a relay).
func entitled(sp *spaceState, c *crypto.Certificate) bool {
	return c.Role == crypto.RoleOfficer && slices.Contains(sp.meta.ReleaseFP, c.Bureau.Fingerprint())
}

// ShareKeys wraps the current epoch key of every space this device writes in
// to every known officer device entitled to it that has no share of that key
// yet (DESIGN §2: epoch keys are wrapped only to officer devices of released
// bureaus, never to relays). It returns how many shares it wrote.
func (a *Agent) ShareKeys() (int, error) {
	if a.cfg.Relay {
		return 0, nil
	}
	if err := a.beginWrite(); err != nil {
		return 0, err
	}
	a.statMu.Lock()
	certs := make([]*crypto.Certificate, 0, len(a.certs))
	for _, c := range a.certs {
		certs = append(certs, c)
	}
	a.statMu.Unlock()
	var entries []kvEntry
	n := 0
	for _, sp := range a.sortedSpaces() {
		if sp.current == nil {
			continue
		}
		for _, c := range certs {
			dev := c.Device.ID()
			sk := shareKey{recipient: dev, epoch: sp.current.ID()}
			if dev == a.dev || !entitled(sp, c) || sp.shared[sk] {
				continue
			}
			if a.isRevoked(dev, sp.id) {
				continue
			}
			body, err := crypto.WrapKey(sp.current, sp.id, c.Device, rand.Reader)
			if err != nil {
				a.abortWrite()
				return 0, err
			}
			if prof, err := a.ensureProfile(sp); err != nil {
				a.abortWrite()
				return 0, err
			} else {
				entries = append(entries, prof...)
			}
			_, env, err := a.appendEnvelope(sp, crypto.KindKeyShare, body, nil, a.clock.Now(a.physMillis()))
			if err != nil {
				a.abortWrite()
				return 0, err
			}
			entries = append(entries, env...)
			sp.markShared(sk)
			entries = append(entries, a.db.entry(sharedKey(sp.id, sk), nil))
			n++
		}
		if n > 0 {
			cb, _ := sp.ctx.MarshalBinary()
			entries = append(entries, a.db.entry(ctxKey(sp.id), cb))
		}
	}
	if n == 0 {
		a.writeMu.Unlock()
		return 0, nil
	}
	entries = append(entries, a.hlcEntry())
	if err := a.commitWrite(entries); err != nil {
		return 0, err
	}
	a.notify()
	return n, nil
}

func (s *spaceState) markShared(k shareKey) {
	if s.shared == nil {
		s.shared = map[shareKey]bool{}
	}
	s.shared[k] = true
}

// isRevoked reports whether dev is revoked with nothing more accepted in the space.
func (a *Agent) isRevoked(dev crypto.DeviceID, space crypto.SpaceID) bool {
	a.statMu.Lock()
	defer a.statMu.Unlock()
	return a.revs[dev] != nil
}
