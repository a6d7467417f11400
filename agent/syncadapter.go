package agent

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"fieldsync/crypto"
	fsync "fieldsync/sync"
)

// syncAdapter gives package sync what it needs of this agent: the envelope
// log (fsync.Store) and the device identity and trust policy
// (fsync.Authenticator). sync never sees a space key.
type syncAdapter struct{ a *Agent }

var (
	_ fsync.Store             = syncAdapter{}
	_ fsync.Authenticator     = syncAdapter{}
	_ fsync.PeerHeadsObserver = syncAdapter{}
	_ fsync.BatchIngester     = syncAdapter{}
)

// --- fsync.Store ---

func (s syncAdapter) Spaces() ([]fsync.SpaceID, error) {
	var out []fsync.SpaceID
	for _, id := range s.a.SpaceIDs() {
		out = append(out, fsync.SpaceID(id))
	}
	return out, nil
}

// Heads is what this device tells peers it holds: its heads, lowered for
// an author below an envelope it holds only as a stub of a live write and
// wants whole (heal.go), so that peers send it again.
func (s syncAdapter) Heads(space fsync.SpaceID) (fsync.Vector, error) {
	v, err := s.heads(space)
	if err != nil {
		return nil, err
	}
	s.a.askWhole(crypto.SpaceID(space), v) // heal.go
	return v, nil
}

// heads is what this device holds of the space, each author's log to the
// first envelope lost from the store.
func (s syncAdapter) heads(space fsync.SpaceID) (fsync.Vector, error) {
	a := s.a
	// Report only what is on disk (fsync.Store's contract): the heads are
	// read together with the received envelopes still waiting for their
	// fsync, which are then waited for. If one failed, the state is
	// reloaded from the disk and read again.
	for range 3 {
		a.stateMu.Lock()
		v := fsync.Vector{}
		if sp := a.spaces[crypto.SpaceID(space)]; sp != nil {
			for author, h := range sp.heads {
				seq := h.Seq
				if author == a.dev {
					// Our own writes still being signed or synced are not
					// reported (docs/design.md §7, "Signing outside the
					// write lock").
					seq = a.ownStoredSeq(sp)
				}
				if f := a.missingFrom(sp.id, author); f > 0 && f-1 < seq {
					seq = f - 1 // lost from the store: ask peers for it again
				}
				v[fsync.PeerID(author)] = seq
			}
		}
		wait := a.takeInflight()
		a.stateMu.Unlock()
		failed := false
		for _, w := range wait {
			failed = <-w != nil || failed
		}
		if !failed {
			return v, nil
		}
		if err := a.reloadIfFailed(); err != nil {
			return nil, err
		}
	}
	return nil, &StoreError{Dir: a.cfg.Layout.Store(), Err: errors.New("received envelopes keep failing to reach the disk")}
}

func (s syncAdapter) Since(space fsync.SpaceID, have fsync.Vector, fn func(fsync.Envelope) error) error {
	a := s.a
	heads, err := s.heads(space) // everything held, stubs asked for again too
	if err != nil {
		return err
	}
	held := make(map[crypto.DeviceID]uint64, len(have))
	for author, seq := range have {
		held[crypto.DeviceID(author)] = seq
	}
	send := fn
	if a.cfg.Tamper != nil { // tests only: a hostile relay
		round := a.cfg.Tamper()
		send = func(e fsync.Envelope) error { return round(e, fn) }
	}
	// A corrupt envelope ends its author's run: the peer sees a gap and
	// fetches it from someone else.
	return a.scanToSend(crypto.SpaceID(space), held, heads, func(env []byte) error {
		h, err := crypto.ParseHeader(env)
		if err != nil {
			return nil // unreadable header: as corrupt, never sent
		}
		return send(fsync.Envelope{Space: space, Author: fsync.PeerID(h.Author), Seq: h.Seq, Data: env})
	}, func() {})
}

// ObservePeerHeads records what a peer holds of our own log: status shows
// how many of our writes are still only on this laptop (docs/design.md §3.3). A peer
// cannot hold more of our log than we have written: its claim is clamped to
// our own head in the space (a claim of seq 10^9 would otherwise make every
// later local write look safe elsewhere, for ever).
func (s syncAdapter) ObservePeerHeads(peer fsync.PeerID, space fsync.SpaceID, have fsync.Vector) {
	a := s.a
	claim := have[fsync.PeerID(a.dev)]
	if claim == 0 {
		return
	}
	a.stateMu.Lock()
	var own uint64
	if sp := a.spaces[crypto.SpaceID(space)]; sp != nil {
		own = sp.heads[a.dev].Seq
	}
	a.stateMu.Unlock()
	a.notePeerHeld(crypto.SpaceID(space), min(claim, own))
}

func (s syncAdapter) Get(space fsync.SpaceID, author fsync.PeerID, seq uint64) ([]byte, error) {
	env, err := s.a.db.get(envKey(crypto.SpaceID(space), crypto.DeviceID(author), seq))
	if errors.Is(err, errKVNotFound) {
		return nil, fsync.ErrNotFound
	}
	return env, err
}

func (s syncAdapter) Ingest(from fsync.PeerID, env fsync.Envelope) (bool, error) {
	defer s.a.wrapIfDue() // keys that came in shares go on to entitled devices
	defer s.a.receiptsIfDue()
	h, err := crypto.ParseHeader(env.Data)
	if err != nil {
		s.a.countReject(RejectMalformed)
		return false, fsync.Reject(RejectMalformed, err)
	}
	if fsync.SpaceID(h.Space) != env.Space || fsync.PeerID(h.Author) != env.Author || h.Seq != env.Seq {
		s.a.countReject(RejectMismatch)
		return false, fsync.Reject(RejectMismatch, errors.New("envelope does not match the (space, author, seq) it was sent as"))
	}
	added, err := s.a.ingest(env.Data, false)
	var re *RejectError
	if errors.As(err, &re) {
		return false, fsync.Reject(re.Reason, re.Err)
	}
	return added, err
}

// IngestBatch verifies a batch of envelopes on every core, then stores and
// applies them in order (fsync.BatchIngester). Verifying a signature costs
// far more than applying the change, so this is what bounds catch-up speed.
func (s syncAdapter) IngestBatch(from fsync.PeerID, envs []fsync.Envelope) []fsync.IngestResult {
	a := s.a
	defer a.wrapIfDue() // keys that came in shares go on to entitled devices
	defer a.receiptsIfDue()
	type checked struct {
		h    crypto.Header
		cert *crypto.Certificate
		err  error
	}
	out := make([]fsync.IngestResult, len(envs))
	pre := make([]checked, len(envs))
	forEachParallel(len(envs), func(i int) {
		env := envs[i]
		h, err := crypto.ParseHeader(env.Data)
		if err == nil && (fsync.SpaceID(h.Space) != env.Space || fsync.PeerID(h.Author) != env.Author || h.Seq != env.Seq) {
			a.countReject(RejectMismatch)
			pre[i].err = fsync.Reject(RejectMismatch, errors.New("envelope does not match the (space, author, seq) it was sent as"))
			return
		}
		pre[i].h, pre[i].cert, pre[i].err = a.verifyEnvelope(env.Data)
	})
	items := make([]verified, len(envs))
	for i, env := range envs {
		items[i] = verified{env: env.Data, h: pre[i].h, cert: pre[i].cert, err: pre[i].err}
		if pre[i].err == nil {
			items[i].env = a.eraseOnIngest(pre[i].h, env.Data) // recerase.go
		}
	}
	for i := 0; i < len(envs); i++ {
		// The plain case, runs of changes next in their logs, goes in one
		// write transaction per run (ingestRun); the rest one by one.
		if pre[i].err == nil {
			n, err := a.ingestRun(items[i:])
			if err != nil {
				for ; i < len(envs); i++ {
					out[i] = fsync.IngestResult{Err: err}
				}
				return out
			}
			if n > 0 {
				for j := i; j < i+n; j++ {
					out[j] = fsync.IngestResult{Added: true}
				}
				i += n - 1
				continue
			}
		}
		env := envs[i]
		err := pre[i].err
		added := false
		if err == nil {
			added, err = a.ingestVerified(env.Data, pre[i].h, pre[i].cert, false)
			if errors.Is(err, errOrphanHeld) {
				err = nil // held until its space's routing record comes
			}
		}
		var re *RejectError
		if errors.As(err, &re) {
			err = fsync.Reject(re.Reason, re.Err)
		}
		out[i] = fsync.IngestResult{Added: added, Err: err}
	}
	return out
}

// peerRecord is a known peer as stored under the N prefix.
type peerRecord struct {
	Addr     string    `json:"addr"`
	Role     uint8     `json:"role"`
	LastSeen time.Time `json:"last_seen"`
}

func (s syncAdapter) LoadPeers() ([]fsync.KnownPeer, error) {
	var out []fsync.KnownPeer
	err := s.a.db.scan([]byte{pfxPeer}, func(k, v []byte) error {
		if len(k) != 17 {
			return nil
		}
		var p peerRecord
		if err := json.Unmarshal(v, &p); err != nil {
			return nil
		}
		var id fsync.PeerID
		copy(id[:], k[1:])
		out = append(out, fsync.KnownPeer{ID: id, Addr: p.Addr, Role: fsync.Role(p.Role), LastSeen: p.LastSeen})
		return nil
	}, s.a.countCorrupt)
	return out, err
}

func (s syncAdapter) SavePeer(p fsync.KnownPeer) error {
	a := s.a
	b, _ := json.Marshal(peerRecord{Addr: p.Addr, Role: uint8(p.Role), LastSeen: p.LastSeen})
	return a.withWrite(func(t *tx) error {
		t.put(a.db.entry(peerKey(crypto.DeviceID(p.ID)), b))
		return nil
	})
}

// --- fsync.Authenticator ---

func (s syncAdapter) LocalID() fsync.PeerID { return fsync.PeerID(s.a.dev) }

func (s syncAdapter) TLSCertificate() (tls.Certificate, error) {
	return fsync.SelfSignedTLS(s.a.id.Ed25519())
}

func (s syncAdapter) Certificate() []byte { return s.a.cert.MarshalBinary() }

func toCryptoTranscript(t fsync.Transcript) crypto.Transcript {
	return crypto.Transcript{
		Label: t.Label, Binding: t.Binding,
		Initiator: crypto.DeviceID(t.Initiator), Responder: crypto.DeviceID(t.Responder),
		InitiatorNonce: t.InitiatorNonce, ResponderNonce: t.ResponderNonce,
	}
}

func (s syncAdapter) SignChallenge(t fsync.Transcript, side fsync.Side) ([]byte, error) {
	sig := crypto.SignChallenge(s.a.id, toCryptoTranscript(t), crypto.Side(side))
	if sig == nil {
		return nil, errors.New("challenge transcript refused")
	}
	return sig, nil
}

func (s syncAdapter) VerifyPeer(blob []byte, t fsync.Transcript, side fsync.Side, sig []byte) (fsync.Peer, error) {
	a := s.a
	c, err := crypto.ParseCertificate(blob)
	if err != nil {
		return fsync.Peer{}, fsync.Reject(RejectMalformed, err)
	}
	// A bureau this device does not trust is accepted when a space held
	// here is released to it; its device is then entitled to those spaces
	// alone (Entitled; certs.go, trustAnywhere).
	if err := c.Verify(a.trustAnywhere(c), a.cfg.now()); err != nil {
		// A certificate "not yet valid" by our clock says more about our
		// clock than about the peer (field laptops run hours or years
		// behind, docs/design.md §3.4); what the peer sends is judged by each
		// envelope's own time anyway. Expired and everything else refuse.
		if !errors.Is(err, crypto.ErrNotYetValid) {
			return fsync.Peer{}, fsync.Reject(rejectReason(err), err)
		}
		a.log.Warn("a peer's certificate is not yet valid by this device's clock; accepting it (is the clock behind?)", "peer", c.Device.ID().String(), "not_before", c.NotBefore)
	}
	id := c.Device.ID()
	rev := a.trustNow().revs[id]
	if rev != nil {
		return fsync.Peer{}, fsync.Reject(RejectRevoked, fmt.Errorf("device %s is revoked", id))
	}
	if err := crypto.VerifyChallenge(c.Device, toCryptoTranscript(t), crypto.Side(side), sig); err != nil {
		return fsync.Peer{}, fsync.Reject(RejectSignature, err)
	}
	// The peer is judged by the certificate pinned for it: one it presents
	// that contradicts the pin, or a version 1 one this device does not
	// hold, is refused (certs.go).
	added, err := a.AddCertificate(blob)
	if errors.Is(err, crypto.ErrUntrusted) {
		return fsync.Peer{}, fsync.Reject(RejectUntrusted, err)
	} else if err != nil {
		a.log.Warn("could not store a peer's certificate", "peer", id.String(), "err", err)
	}
	if added {
		a.queueShareKeys()
	}
	if p := a.trustNow().certs[id]; p != nil {
		c = p
	}
	return fsync.Peer{ID: fsync.PeerID(id), Bureau: c.Bureau.Fingerprint(), Role: fsync.Role(c.Role), SignKey: c.Device.SignKey}, nil
}

func (s syncAdapter) Entitled(p fsync.Peer, space fsync.SpaceID) bool {
	a := s.a
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	sp := a.spaces[crypto.SpaceID(space)]
	return sp != nil && slices.Contains(sp.meta.ReleaseFP, p.Bureau)
}

func (s syncAdapter) MeshObjects() ([][]byte, error) {
	out := s.a.Certificates()
	out = append(out, s.a.evidenceBlobs()...)
	for _, r := range s.a.trustNow().revs {
		out = append(out, r.Marshal())
	}
	out = append(out, s.a.erasureBlobs()...) // tombstones: erase.go
	return out, nil
}

func (s syncAdapter) IngestMeshObject(from fsync.Peer, obj []byte) (bool, error) {
	if _, err := crypto.ParseCertificate(obj); err == nil {
		added, err := s.a.AddCertificate(obj)
		if err != nil {
			return false, fsync.Reject(rejectReason(err), err)
		}
		if added {
			s.a.queueShareKeys()
		}
		return added, nil
	}
	if bytes.HasPrefix(obj, forkMagic) {
		added, err := s.a.ingestEvidence(obj)
		if err != nil {
			return false, fsync.Reject(RejectFork, err)
		}
		return added, nil
	}
	if crypto.IsErasure(obj) || crypto.IsRecordErasure(obj) {
		added, err := s.a.AddErasure(obj)
		var refused *erasureRefused
		if errors.As(err, &refused) {
			return false, fsync.Reject(rejectReason(err), err)
		}
		return added, err // a local failure ends the stream
	}
	if _, err := crypto.ParseRevocation(obj); err == nil {
		added, err := s.a.AddRevocation(obj)
		if err != nil {
			return false, fsync.Reject(rejectReason(err), err)
		}
		return added, nil
	}
	return false, fsync.Reject(RejectMalformed, errors.New("mesh object is neither a certificate, a revocation, fork evidence nor an erase marker"))
}
