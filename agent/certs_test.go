package agent

// Adversarial tests of certificate pinning and scoped trust (issue 12):
// a trusted partner bureau certifying another bureau's device, and a
// bureau a space is released to that this device does not trust.

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crypto"
	"fieldsync/internal/datadir"
	fsync "fieldsync/sync"
)

// seededBureau is a test bureau whose Ed25519 seed the test knows, so it can
// sign any bytes it likes — as a bureau holding its key can, whatever code
// it runs.
type seededBureau struct {
	*testBureau
	priv ed25519.PrivateKey
}

func newSeededBureau(t testing.TB, name string) *seededBureau {
	t.Helper()
	seed := make([]byte, 32)
	rand.Read(seed)
	b, err := crypto.NewBureau(name, bytes.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	return &seededBureau{testBureau: &testBureau{b: b}, priv: ed25519.NewKeyFromSeed(seed)}
}

// forgeCertV1 signs, with the bureau's own key, a version 1 certificate
// for any device keys (docs/crypto.md §4), with no request from the device.
func (b *seededBureau) forgeCertV1(t testing.TB, dev crypto.DevicePublic, role crypto.Role, nb, na time.Time, commitment [32]byte) []byte {
	t.Helper()
	var d []byte
	d = append(d, "FSCT"...)
	d = append(d, 1, byte(role))
	d = append(d, dev.SignKey...)
	d = append(d, dev.AgreeKey[:]...)
	d = append(d, b.priv.Public().(ed25519.PublicKey)...)
	d = append(d, byte(len(b.b.Name)))
	d = append(d, b.b.Name...)
	d = binary.BigEndian.AppendUint64(d, uint64(nb.Unix()))
	d = binary.BigEndian.AppendUint64(d, uint64(na.Unix()))
	d = append(d, commitment[:]...)
	sig, err := b.priv.Sign(nil, d, &ed25519.Options{Context: "fieldsync/certificate/v1"})
	if err != nil {
		t.Fatal(err)
	}
	return append(d, sig...)
}

// countersignV2 wraps a version 1 certificate into version 2 with a
// countersignature by key (docs/crypto.md §4): "FSCT" 2 ‖ v1 ‖ signature.
func countersignV2(t testing.TB, v1 []byte, key ed25519.PrivateKey) []byte {
	t.Helper()
	sig, err := key.Sign(nil, v1, &ed25519.Options{Context: "fieldsync/enrollment/v1"})
	if err != nil {
		t.Fatal(err)
	}
	out := append([]byte("FSCT"), 2)
	out = append(out, v1...)
	return append(out, sig...)
}

func countEnvelopes(t testing.TB, a *Agent, space crypto.SpaceID, author crypto.DeviceID) int {
	t.Helper()
	n := 0
	err := a.Envelopes(space, func(env []byte) error {
		if h, err := crypto.ParseHeader(env); err == nil && h.Author == author {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func spaceOwnerFP(a *Agent, space crypto.SpaceID) string {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	if sp := a.spaces[space]; sp != nil {
		return sp.meta.OwnerFP
	}
	return ""
}

// A trusted partner bureau X certifies device D of bureau Y with its own
// key (it has D's public keys from any certificate D gossips), then signs a
// '*:0' revocation of D. Before pinning, the replica replaced D's
// certificate and took the revocation: every envelope D ever wrote was
// deleted and its space lost its owner. Now X's certificate is refused (no
// countersignature by D), a version 2 countersigned with a key X holds does
// not parse, the revocation is refused (not D's bureau), and D's log, its
// space's owner and its record stay.
func TestCertPinnedAgainstPartnerBureau(t *testing.T) {
	y, x := newTestBureau(t, "YYY"), newSeededBureau(t, "XXX")
	d := openTestAgent(t, newTestDevice(t, y, "Dana", crypto.RoleOfficer, x.testBureau))
	o := openTestAgent(t, newTestDevice(t, y, "Omar", crypto.RoleOfficer, x.testBureau))
	sp, err := d.CreateSpace("Case 7", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := advSpaceID(t, sp.ID)
	advPut(t, d, sp.ID, "r1", "one")
	advPut(t, d, sp.ID, "r2", "two")
	advSettle(t, d, o)
	held := countEnvelopes(t, o, id, d.dev)
	if held < 3 {
		t.Fatalf("setup: o holds %d envelopes of d", held)
	}
	yFP := y.b.Public().Fingerprint()
	if got := spaceOwnerFP(o, id); got != yFP {
		t.Fatalf("setup: owner %q", got)
	}
	real := certOf(t, o, d.dev)

	// The attack: X certifies D's keys as its own, and revokes it.
	now := time.Now()
	forged := x.forgeCertV1(t, real.Device, crypto.RoleOfficer, now.Add(-time.Minute), now.Add(400*24*time.Hour), real.NameCommitment)
	_, errV1 := o.AddCertificate(forged)
	// Even countersigned by a device key X holds (its own device), not D's.
	xKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	_, errV2 := o.AddCertificate(countersignV2(t, forged, xKey))
	rev, err := x.b.Revoke(d.dev, nil, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	_, errRev := o.AddRevocation(rev.Marshal())

	if errV1 == nil {
		t.Errorf("X's certificate of D's keys was accepted (no countersignature by D)")
	}
	if errV2 == nil {
		t.Errorf("X's certificate countersigned with another key was accepted")
	}
	if errRev == nil {
		t.Errorf("X's '*:0' revocation of Y's device D was accepted")
	}
	if c := certOf(t, o, d.dev); c.Bureau.Fingerprint() != yFP {
		t.Errorf("D's certificate on o is now of bureau %s, not its own %s", c.Bureau.Name, y.b.Name)
	}
	if n := countEnvelopes(t, o, id, d.dev); n != held {
		t.Errorf("o holds %d of D's %d envelopes after the attack (wiped)", n, held)
	}
	if got := spaceOwnerFP(o, id); got != yFP {
		t.Errorf("space owner on o is %q after the attack, want %s", got, yFP)
	}
	if v, err := advValue(o, sp.ID, "r1"); err != nil || v != "one" {
		t.Errorf("record r1 on o after the attack: %q, %v", v, err)
	}
	// D is still served at the challenge.
	if err := verifyPeerOn(t, o, d.id, d.Certificates()); err != nil {
		t.Errorf("D refused at o's challenge after the attack: %v", err)
	}
}

// verifyPeerOn runs the stream challenge of peer id against a, presenting
// the certificate of id among certs.
func verifyPeerOn(t testing.TB, a *Agent, id *crypto.Identity, certs [][]byte) error {
	t.Helper()
	var blob []byte
	for _, c := range certs {
		if pc, err := crypto.ParseCertificate(c); err == nil && pc.ID() == id.ID() {
			blob = c
		}
	}
	if blob == nil {
		t.Fatalf("no certificate for %s", id.ID())
	}
	tr, side, sig := challengeFor(t, id, a.dev)
	_, err := (syncAdapter{a}).VerifyPeer(blob, tr, side, sig)
	return err
}

// Scoped trust: OMN device A trusts no KAZ key; OMN device B does and
// releases a space to KAZ. A must accept KAZ device K's certificate for
// that space only: K's changes there verify on A, A wraps the space's keys
// to K, K passes A's challenge and is entitled to that space alone. A
// certificate of a bureau no space releases is still refused.
func TestScopedTrustReleasedBureau(t *testing.T) {
	omn, kaz, zzz := newTestBureau(t, "OMN"), newTestBureau(t, "KAZ"), newTestBureau(t, "ZZZ")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	b := openTestAgent(t, newTestDevice(t, omn, "Bakyt", crypto.RoleOfficer, kaz))
	k := openTestAgent(t, newTestDevice(t, kaz, "Kairat", crypto.RoleOfficer, omn))
	z := openTestAgent(t, newTestDevice(t, zzz, "Zed", crypto.RoleOfficer, omn))
	joint, err := b.CreateSpace("Joint", []string{"KAZ"})
	if err != nil {
		t.Fatal(err)
	}
	jid := advSpaceID(t, joint.ID)
	advPut(t, b, joint.ID, "r1", "from B")
	home, err := b.CreateSpace("OMN only", nil)
	if err != nil {
		t.Fatal(err)
	}
	hid := advSpaceID(t, home.ID)
	advSettle(t, a, b) // A holds both spaces and their keys; K is not met yet

	// A meets K: it must accept K's certificate, scoped to Joint.
	kCert := k.cert.MarshalBinary()
	if _, err := a.AddCertificate(kCert); err != nil {
		t.Fatalf("A refuses the certificate of KAZ device K although Joint is released to KAZ: %v", err)
	}
	n, err := a.ShareKeys()
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("A wrapped no key to K")
	}
	wrappedToK := false
	for _, env := range advLog(t, a, jid, a.dev) {
		h, body, err := crypto.Verify(env, a.cert.Device)
		if err == nil && h.Kind == crypto.KindKeyShare {
			if s, err := crypto.ParseKeyShare(body); err == nil && s.Recipient == k.dev {
				wrappedToK = true
			}
		}
	}
	if !wrappedToK {
		t.Fatal("A wrote no key share to K in Joint")
	}
	for _, env := range advLog(t, a, hid, a.dev) {
		if h, body, err := crypto.Verify(env, a.cert.Device); err == nil && h.Kind == crypto.KindKeyShare {
			if s, err := crypto.ParseKeyShare(body); err == nil && s.Recipient == k.dev {
				t.Fatal("A wrapped the OMN-only space's key to K")
			}
		}
	}
	// K learns the key from A alone (B is not involved) and writes.
	advMove(t, a, k)
	if v, err := advValue(k, joint.ID, "r1"); err != nil || v != "from B" {
		t.Fatalf("K reads Joint through A's key share: %q, %v", v, err)
	}
	advPut(t, k, joint.ID, "r2", "from K")
	for _, env := range advLog(t, k, jid, k.dev) {
		if _, err := a.Ingest(env); err != nil {
			t.Fatalf("A refuses K's envelope in Joint: %v", err)
		}
	}
	if v, err := advValue(a, joint.ID, "r2"); err != nil || v != "from K" {
		t.Fatalf("K's change on A: %q, %v", v, err)
	}
	// K forging into the OMN-only space is refused: its bureau is not
	// released there.
	fake, err := crypto.NewSpaceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	share, err := crypto.WrapKey(fake, hid, a.cert.Device, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	forged := advForge(t, k, hid, crypto.KindKeyShare, share)
	advReject(t, a, forged, RejectUntrusted)
	// The challenge: K passes, entitled to Joint only.
	tr, side, sig := challengeFor(t, k.id, a.dev)
	p, err := (syncAdapter{a}).VerifyPeer(kCert, tr, side, sig)
	if err != nil {
		t.Fatalf("K refused at A's challenge: %v", err)
	}
	if !(syncAdapter{a}).Entitled(p, fsync.SpaceID(jid)) || (syncAdapter{a}).Entitled(p, fsync.SpaceID(hid)) {
		t.Fatal("K's entitlement on A is not Joint alone")
	}
	// KAZ may revoke its own device on A; ZZZ may not revoke anything.
	kHead := uint64(len(advLog(t, k, jid, k.dev)))
	krev, err := kaz.b.Revoke(k.dev, map[crypto.SpaceID]uint64{jid: kHead}, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddRevocation(krev.Marshal()); err != nil {
		t.Fatalf("KAZ revoking its own device on A: %v", err)
	}
	zrev, err := zzz.b.Revoke(k.dev, nil, 0, time.Now().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddRevocation(zrev.Marshal()); !errors.Is(err, crypto.ErrUntrusted) {
		t.Fatalf("ZZZ revoking KAZ's device on A: %v", err)
	}
	// ZZZ: no held space releases it.
	if _, err := a.AddCertificate(z.cert.MarshalBinary()); !errors.Is(err, crypto.ErrUntrusted) {
		t.Fatalf("certificate of an unreleased, untrusted bureau: %v", err)
	}
	if err := verifyPeerOn(t, a, z.id, [][]byte{z.cert.MarshalBinary()}); !isSyncReject(err, RejectUntrusted) {
		t.Fatalf("ZZZ device at A's challenge: %v", err)
	}
}

// challengeFor signs a fresh initiator transcript of id towards responder.
func challengeFor(t testing.TB, id *crypto.Identity, responder crypto.DeviceID) (fsync.Transcript, fsync.Side, []byte) {
	t.Helper()
	tr := fsync.Transcript{Label: "fieldsync", Initiator: fsync.PeerID(id.ID()), Responder: fsync.PeerID(responder)}
	rand.Read(tr.InitiatorNonce[:])
	rand.Read(tr.ResponderNonce[:])
	sig := crypto.SignChallenge(id, crypto.Transcript{Label: tr.Label, Initiator: id.ID(), Responder: responder,
		InitiatorNonce: tr.InitiatorNonce, ResponderNonce: tr.ResponderNonce}, crypto.SideInitiator)
	return tr, fsync.SideInitiator, sig
}

// D itself (a compromised laptop, or one that also enrolled with partner X)
// countersigns X's certificate of its keys: a valid version 2 certificate
// that contradicts D's pinned one. It is kept as evidence, counted and shown
// in status — across a restart — and never replaces the pin: X still cannot
// revoke D, and D presenting it at the challenge is refused. A renewal by
// D's own bureau (same keys, later NotAfter) replaces the pin; an older one
// is ignored; a version 1 certificate of an unknown device is refused.
func TestCertConflictIsEvidence(t *testing.T) {
	y, x := newSeededBureau(t, "YYY"), newSeededBureau(t, "XXX")
	d := openTestAgent(t, newTestDevice(t, y.testBureau, "Dana", crypto.RoleOfficer, x.testBureau))
	o := openTestAgent(t, newTestDevice(t, y.testBureau, "Omar", crypto.RoleOfficer, x.testBureau))
	sp, err := d.CreateSpace("Case 8", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := advSpaceID(t, sp.ID)
	advPut(t, d, sp.ID, "r1", "one")
	advSettle(t, d, o)
	held := countEnvelopes(t, o, id, d.dev)
	pinned := certOf(t, o, d.dev)
	if !pinned.Countersigned() {
		t.Fatal("the agent did not countersign its own version 1 certificate at start")
	}
	if onDisk, err := datadir.LoadCert(d.cfg.Layout); err != nil || !bytes.Equal(onDisk.MarshalBinary(), pinned.MarshalBinary()) {
		t.Fatalf("cert.json was not rewritten countersigned: %v", err)
	}
	now := time.Now()
	xCert := x.forgeCertV1(t, pinned.Device, crypto.RoleOfficer, now.Add(-time.Minute), now.Add(800*24*time.Hour), pinned.NameCommitment)
	parsed, err := crypto.ParseCertificate(xCert)
	if err != nil {
		t.Fatal(err)
	}
	byD, err := parsed.Countersign(d.id)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 { // gossip brings it again and again: one piece of evidence
		if _, err := o.AddCertificate(byD.MarshalBinary()); !errors.Is(err, ErrCertConflict) || !errors.Is(err, crypto.ErrUntrusted) {
			t.Fatalf("conflicting countersigned certificate: %v", err)
		}
	}
	if c := certOf(t, o, d.dev); !bytes.Equal(c.MarshalBinary(), pinned.MarshalBinary()) {
		t.Fatal("the pin was replaced by the conflicting certificate")
	}
	rev, err := x.b.Revoke(d.dev, nil, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.AddRevocation(rev.Marshal()); !errors.Is(err, crypto.ErrUntrusted) {
		t.Fatalf("X's revocation of D: %v", err)
	}
	tr, side, sig := challengeFor(t, d.id, o.dev)
	if _, err := (syncAdapter{o}).VerifyPeer(byD.MarshalBinary(), tr, side, sig); !isSyncReject(err, RejectUntrusted) {
		t.Fatalf("D presenting X's certificate at the challenge: %v", err)
	}
	check := func(a *Agent) {
		t.Helper()
		st := a.Status()
		want := []api.CertConflict{{Device: d.dev.String(), PinnedBureau: "YYY", PinnedFingerprint: y.b.Public().Fingerprint(),
			OtherBureau: "XXX", OtherFingerprint: x.b.Public().Fingerprint()}}
		if len(st.CertConflicts) != 1 || st.CertConflicts[0] != want[0] {
			t.Fatalf("status cert_conflicts %+v, want %+v", st.CertConflicts, want)
		}
		if n := countEnvelopes(t, a, id, d.dev); n != held {
			t.Fatalf("%d of D's %d envelopes left", n, held)
		}
	}
	check(o)
	if n := o.Status().Rejected[RejectCertConflict]; n != 1 {
		t.Fatalf("cert_conflict counted %d times", n)
	}
	o = advReopen(t, o)
	check(o)

	// A renewal by D's own bureau replaces the pin; the older one is then ignored.
	req := crypto.NewRequest(d.id, pinned.NameCommitment)
	renewed, err := y.b.Issue(req, crypto.RoleOfficer, now.Add(-time.Minute), pinned.NotAfter.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if added, err := o.AddCertificate(renewed.MarshalBinary()); err == nil || added {
		t.Fatalf("version 1 renewal, not countersigned: added %v, %v", added, err)
	}
	renewed2, err := renewed.Countersign(d.id)
	if err != nil {
		t.Fatal(err)
	}
	if added, err := o.AddCertificate(renewed2.MarshalBinary()); err != nil || !added {
		t.Fatalf("countersigned renewal: added %v, %v", added, err)
	}
	if added, err := o.AddCertificate(pinned.MarshalBinary()); err != nil || added {
		t.Fatalf("the older certificate after the renewal: added %v, %v", added, err)
	}
	if c := certOf(t, o, d.dev); !bytes.Equal(c.MarshalBinary(), renewed2.MarshalBinary()) {
		t.Fatal("the renewal did not replace the pin")
	}
	// The pinned bureau certifying D's signing key with another X25519 key
	// (so that keys wrapped to D go elsewhere), countersigned by D: a
	// conflict, not a renewal.
	agree := pinned.Device
	agree.AgreeKey[0] ^= 1
	swapped := countersignV2(t, y.forgeCertV1(t, agree, crypto.RoleOfficer, now.Add(-time.Minute), now.Add(900*24*time.Hour), pinned.NameCommitment), d.id.Ed25519())
	if _, err := o.AddCertificate(swapped); !errors.Is(err, ErrCertConflict) {
		t.Fatalf("the pinned bureau's certificate with another X25519 key: %v", err)
	}
	if got := len(o.Status().CertConflicts); got != 2 {
		t.Fatalf("%d conflicts in status, want 2", got)
	}
	// A version 1 certificate of a device this agent does not know.
	stranger, _ := crypto.NewIdentity(rand.Reader)
	sc, err := y.b.Issue(crypto.NewRequest(stranger, [32]byte{}), crypto.RoleOfficer, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	before := o.Status().Rejected[RejectUntrusted]
	if _, err := o.AddCertificate(sc.MarshalBinary()); !errors.Is(err, crypto.ErrUntrusted) {
		t.Fatalf("version 1 certificate of an unknown device: %v", err)
	}
	if o.Status().Rejected[RejectUntrusted] != before+1 {
		t.Fatal("the refused version 1 certificate was not counted")
	}
}

// The same attack over real memberlist and sync streams on 127.0.0.1: X's
// device xa holds a certificate of D's keys by X, countersigned by D (a
// laptop compromised before it is revoked), pinned there as D's, and X's
// '*:0' revocation of D. When xa syncs with o, o keeps D pinned to Y: the
// certificate arrives as conflict evidence, the revocation is refused, and
// D's envelopes, its space's owner and its records stay.
func TestCertPinnedOverSync(t *testing.T) {
	y, x := newTestBureau(t, "YYY"), newSeededBureau(t, "XXX")
	cfgD := newTestDevice(t, y, "Dana", crypto.RoleOfficer, x.testBureau)
	cfgO := newTestDevice(t, y, "Omar", crypto.RoleOfficer, x.testBureau)
	cfgX := newTestDevice(t, x.testBureau, "Xavier", crypto.RoleOfficer, y)
	ks, err := datadir.LoadKeystore(cfgD.Layout, cfgD.Unlock)
	if err != nil {
		t.Fatal(err)
	}
	cfgD.MeshKey, cfgO.MeshKey, cfgX.MeshKey = ks.MeshKey, ks.MeshKey, ks.MeshKey
	d := startSyncAgent(t, cfgD)
	sp, err := d.CreateSpace("Case 9", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := advSpaceID(t, sp.ID)
	advPut(t, d, sp.ID, "r1", "one")
	cfgO.Join = []string{d.SyncAddr()}
	o := startSyncAgent(t, cfgO)
	waitFor(t, "o to get D's record", func() bool { v, err := advValue(o, sp.ID, "r1"); return err == nil && v == "one" })
	held := countEnvelopes(t, o, id, d.dev)

	// X's device, which never met D, takes the countersigned certificate
	// as D's and X's revocation of it.
	xa := openTestAgent(t, cfgX)
	pinned := certOf(t, o, d.dev)
	now := time.Now()
	byX, err := crypto.ParseCertificate(x.forgeCertV1(t, pinned.Device, crypto.RoleOfficer, now.Add(-time.Minute), now.Add(800*24*time.Hour), pinned.NameCommitment))
	if err != nil {
		t.Fatal(err)
	}
	byD, err := byX.Countersign(d.id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := xa.AddCertificate(byD.MarshalBinary()); err != nil {
		t.Fatalf("xa, which never met D: %v", err)
	}
	rev, err := x.b.Revoke(d.dev, nil, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := xa.AddRevocation(rev.Marshal()); err != nil {
		t.Fatalf("xa takes X's revocation of the device it pinned to X: %v", err)
	}
	xa.Close()
	cfgX.Join = []string{o.SyncAddr()}
	startSyncAgent(t, cfgX)
	waitFor(t, "o to see X's certificate of D as a conflict", func() bool { return len(o.Status().CertConflicts) == 1 })
	// Each session with xa refuses its certificate and its revocation of D
	// (both "untrusted"): after several, the revocation has been judged.
	waitFor(t, "o to refuse xa's mesh objects in several sessions", func() bool { return o.engine().Stats().Rejected[RejectUntrusted] >= 4 })
	if c := certOf(t, o, d.dev); !bytes.Equal(c.MarshalBinary(), pinned.MarshalBinary()) {
		t.Fatal("o replaced D's certificate")
	}
	revoked := o.trustNow().revs[d.dev] != nil
	if revoked {
		t.Fatal("o took X's revocation of D")
	}
	if n := countEnvelopes(t, o, id, d.dev); n < held {
		t.Fatalf("o holds %d of D's %d envelopes", n, held)
	}
	if got := spaceOwnerFP(o, id); got != y.b.Public().Fingerprint() {
		t.Fatalf("space owner on o: %q", got)
	}
	if v, err := advValue(o, sp.ID, "r1"); err != nil || v != "one" {
		t.Fatalf("record on o: %q, %v", v, err)
	}
}
