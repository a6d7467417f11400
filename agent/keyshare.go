package agent

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"errors"
	"maps"
	"slices"

	"fieldsync/crypto"
	"fieldsync/internal/rules"
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
	return rules.Entitled(c, sp.meta.ReleaseFP)
}

// ShareKeys wraps every epoch key of every space this device holds to every
// known officer device entitled to it that has no share of that key yet
// (docs/design.md §2: epoch keys are wrapped only to officer devices of released
// bureaus, never to relays; a device enrolled later gets the old epochs too,
// so it can read the history). It returns how many shares it wrote.
func (a *Agent) ShareKeys() (int, error) {
	if a.cfg.Relay {
		return 0, nil
	}
	n := 0
	err := a.withWrite(func(t *tx) error {
		certs := a.knownCerts()
		var entries []kvEntry
		for _, sp := range a.sortedSpaces() {
			es, shares, err := a.shareEntries(sp, certs)
			if err != nil {
				return t.fail(err)
			}
			entries = append(entries, es...)
			if shares > 0 {
				n += shares
				cb, _ := sp.ctx.MarshalBinary()
				entries = append(entries, a.db.entry(ctxKey(sp.id), cb))
			}
		}
		if n > 0 {
			t.changed()
			t.put(entries...)
			t.put(a.hlcEntry())
		}
		return nil
	})
	if err != nil || n == 0 {
		return 0, err
	}
	a.notify()
	return n, nil
}

// wrapIfDue wraps the epoch keys that came in key shares since it last ran
// on to every entitled device this device knows, whoever began the epoch —
// a rotator that cannot judge a released bureau's devices wraps only to
// those it can, and the others must not be cut off (issue 12). It runs at
// the end of each batch of received envelopes (a sync frame, a bundle):
// one pass serves the whole batch, and it sees the shares the rotator
// wrote to other devices further in the batch before deciding whom to
// wrap to. A failure leaves it due for the next batch.
func (a *Agent) wrapIfDue() {
	if a.cfg.Relay || !a.wrapDue.Swap(false) {
		return
	}
	if _, err := a.ShareKeys(); err != nil && !errors.Is(err, ErrClosed) {
		a.wrapDue.Store(true)
		a.log.Warn("wrapping received epoch keys on to entitled devices; will try again after the next batch", "err", err)
	}
}

// knownCerts returns the certificates this device knows, by device ID.
func (a *Agent) knownCerts() []*crypto.Certificate {
	certs := make([]*crypto.Certificate, 0, len(a.trustNow().certs))
	for _, c := range a.trustNow().certs {
		certs = append(certs, c)
	}
	slices.SortFunc(certs, func(x, y *crypto.Certificate) int {
		xi, yi := x.Device.ID(), y.Device.ID()
		return bytes.Compare(xi[:], yi[:])
	})
	return certs
}

// shareEntries wraps each epoch key of the space that this device holds to
// each entitled, unrevoked device in certs that has none of it yet, as key
// share envelopes of this device's log (its profile first if it has not
// written one), and how many shares it wrote. The current epoch goes last,
// and when it is held by a device not entitled to it, a new epoch is
// started first (needsRotation). stateMu held; the caller stores the
// context.
func (a *Agent) shareEntries(sp *spaceState, certs []*crypto.Certificate) (entries []kvEntry, shares int, err error) {
	if a.cfg.Relay || sp.current == nil {
		return nil, 0, nil
	}
	var targets []*crypto.Certificate
	due := false
	for _, c := range certs {
		dev := c.Device.ID()
		if dev == a.dev || !entitled(sp, c) || a.isRevoked(dev) {
			continue
		}
		targets = append(targets, c)
		for id := range sp.keys {
			if !sp.shared[shareKey{recipient: dev, epoch: id}] {
				due = true
			}
		}
	}
	if !due {
		return nil, 0, nil
	}
	if a.needsRotation(sp) {
		// The current epoch is held by a device no longer entitled (or one
		// that never was, which wrapped it to us): wrapped as the newest,
		// recipients would write under it — and a recipient that has not
		// yet seen who else holds it would not rotate. Start a new one, so
		// what goes last is an epoch only entitled devices hold.
		rot, err := a.rotateEpoch(sp)
		if err != nil {
			return nil, 0, err
		}
		entries = append(entries, rot...)
	}
	// Oldest first (by depth in the chain of replacements), the current
	// one last. A recipient orders epochs by the lists the shares carry,
	// not by their order; this order only keeps the current epoch out of
	// a recipient's hands until the ones it replaces are there too.
	_, depth := sp.epochOrder()
	var epochs []*crypto.SpaceKey
	for _, id := range slices.SortedFunc(maps.Keys(sp.keys), func(x, y crypto.KeyID) int {
		if dx, dy := depth[x], depth[y]; dx != dy {
			return cmp.Compare(dx, dy)
		}
		return bytes.Compare(x[:], y[:])
	}) {
		if id != sp.current.ID() {
			epochs = append(epochs, sp.keys[id])
		}
	}
	epochs = append(epochs, sp.current)
	for _, c := range targets {
		dev := c.Device.ID()
		for _, key := range epochs {
			sk := shareKey{recipient: dev, epoch: key.ID()}
			if sp.shared[sk] {
				continue
			}
			// The share carries what the epoch replaces, as this device
			// learnt it, whoever began it (docs/crdt.md, "Epochs").
			body, err := crypto.WrapKeyReplacing(key, sp.id, c.Device, sp.shareList(key.ID()), rand.Reader)
			if err != nil {
				return nil, 0, err
			}
			prof, err := a.ensureProfile(sp)
			if err != nil {
				return nil, 0, err
			}
			entries = append(entries, prof...)
			hlc := a.clock.Now(a.physMillis())
			env, err := a.appendEnvelope(sp, crypto.KindKeyShare, body, nil, hlc)
			if err != nil {
				return nil, 0, err
			}
			entries = append(entries, env...)
			if share, err := crypto.ParseKeyShare(body); err == nil {
				sp.noteShare(share, a.cert.Bureau.Fingerprint())
			}
			sp.markShared(sk)
			entries = append(entries, a.db.entry(sharedKey(sp.id, sk), nil))
			shares++
		}
	}
	if shares > 0 {
		entries = append(entries, a.db.entry(spaceKey(sp.id), sp.meta.marshal())) // the epochs' lists
	}
	return entries, shares, nil
}

func (s *spaceState) markShared(k shareKey) {
	if s.shared == nil {
		s.shared = map[shareKey]bool{}
	}
	s.shared[k] = true
}

// isRevoked reports whether dev is revoked: it gets no epoch key, whatever
// its cut-off in a space.
func (a *Agent) isRevoked(dev crypto.DeviceID) bool {
	return a.trustNow().revs[dev] != nil
}
