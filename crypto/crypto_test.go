package crypto

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestIDs(t *testing.T) {
	w := newWorld(t)
	id := w.alice.ID()
	s := id.String()
	if len(s) != 26 || strings.ToLower(s) != s {
		t.Fatalf("device id text %q", s)
	}
	if got := must(ParseDeviceID(strings.ToUpper(s))); got != id {
		t.Fatal("parse upper-case id")
	}
	if w.alice.Public().ID() != id {
		t.Fatal("Public().ID() differs from ID()")
	}
	// The two spare bits of the last character must be zero: one ID, one text.
	last := s[25]
	alt := []byte(s)
	alt[25] = last ^ 1
	if _, err := ParseDeviceID(string(alt)); err == nil {
		t.Fatal("non-canonical id accepted")
	}
	for _, bad := range []string{"", "abc", s + "a", s[:25] + "!"} {
		if _, err := ParseDeviceID(bad); !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseDeviceID(%q) = %v", bad, err)
		}
	}
	sp := must(ParseSpaceID(w.space.String()))
	if sp != w.space {
		t.Fatal("space id round trip")
	}
	if w.bureau.Public().Fingerprint() == w.other.Public().Fingerprint() {
		t.Fatal("fingerprints collide")
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	w := newWorld(t)
	body := []byte("a change")
	e1 := w.seal(t, KindChange, 1, [32]byte{}, body)
	h, pt, err := Open(e1, w.alice.Public(), w.keys)
	if err != nil || !bytes.Equal(pt, body) {
		t.Fatalf("open: %v %q", err, pt)
	}
	if h.Seq != 1 || h.Author != w.alice.ID() || h.Epoch != w.key.ID() || h.Kind != KindChange || h.Version != HeaderVersion {
		t.Fatalf("header %+v", h)
	}
	if bytes.Contains(e1, body) {
		t.Fatal("change body in clear")
	}
	if err := CheckAuthor(h, w.aliceCert, nil, w.trust, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// Relay path.
	h2, stored, err := Verify(e1, w.alice.Public())
	if err != nil || h2 != h || len(stored) != int(h.BodyLen) {
		t.Fatalf("verify: %v", err)
	}
	if _, _, err := Open(e1, w.alice.Public(), nil); !errors.Is(err, ErrNoKey) {
		t.Fatalf("no keyring: %v", err)
	}
	if _, _, err := Open(e1, w.alice.Public(), mapKeyring{}); !errors.Is(err, ErrNoKey) {
		t.Fatalf("no key: %v", err)
	}
	// Chain: seq 2 links to seq 1.
	e2 := w.seal(t, KindProfile, 2, Hash(e1), Profile{Officer: w.aliceName, NameSalt: w.aliceSalt}.Marshal())
	h, pt, err = Open(e2, w.alice.Public(), w.keys)
	if err != nil || h.Prev != Hash(e1) {
		t.Fatal(err)
	}
	p := must(ParseProfile(pt))
	if !p.Matches(w.aliceCert) || p.Matches(w.bobCert) {
		t.Fatal("profile does not match its certificate")
	}
	// Key share to bob.
	ks := must(WrapKey(w.key, w.space, w.bob.Public(), detRand("eph")))
	e3 := w.seal(t, KindKeyShare, 3, Hash(e2), ks)
	h, pt, err = Open(e3, w.alice.Public(), nil)
	if err != nil || h.Epoch != w.key.ID() {
		t.Fatal(err)
	}
	k := must(UnwrapKey(pt, w.space, w.bob))
	if !bytes.Equal(k.Bytes(), w.key.Bytes()) || k.ID() != w.key.ID() {
		t.Fatal("unwrapped key differs")
	}
	// Routing.
	r := Routing{Space: w.space, Nonce: w.nonce, Owner: w.bureau.Public().Fingerprint(), Released: []string{w.other.Public().Fingerprint()},
		SealedName: SealName(w.key, w.space, "Case 17 — حالة", detRand("n"))}
	e4 := w.seal(t, KindRouting, 4, Hash(e3), r.Marshal())
	h, pt, err = Verify(e4, w.alice.Public())
	if err != nil {
		t.Fatal(err)
	}
	r2 := must(ParseRouting(pt))
	if !r2.Releases(w.bureau.Public().Fingerprint()) || !r2.Releases(w.other.Public().Fingerprint()) || len(r2.Released) != 2 {
		t.Fatalf("routing %+v", r2)
	}
	if name := must(OpenName(w.key, w.space, r2.SealedName)); name != "Case 17 — حالة" {
		t.Fatal(name)
	}
	if err := CheckRouting(h, r2, w.aliceCert); err != nil {
		t.Fatal(err)
	}
	if err := CheckRouting(h, r2, w.foreignCert); !errors.Is(err, ErrRole) {
		t.Fatalf("routing by another bureau: %v", err)
	}
	if Hash(e1) == Hash(e2) {
		t.Fatal("hash collision")
	}
}

func TestSealRefuses(t *testing.T) {
	w := newWorld(t)
	cases := []struct {
		name string
		h    Header
		body []byte
		key  *SpaceKey
		want error
	}{
		{"change without key", Header{Kind: KindChange, Space: w.space, Seq: 1}, nil, nil, ErrNoKey},
		{"zero key", Header{Kind: KindChange, Space: w.space, Seq: 1}, nil, &SpaceKey{}, ErrNoKey},
		{"seq 0", Header{Kind: KindChange, Space: w.space}, nil, w.key, ErrMalformed},
		{"prev on seq 1", Header{Kind: KindChange, Space: w.space, Seq: 1, Prev: [32]byte{1}}, nil, w.key, ErrMalformed},
		{"no prev on seq 2", Header{Kind: KindChange, Space: w.space, Seq: 2}, nil, w.key, ErrMalformed},
		{"unknown kind", Header{Kind: 9, Space: w.space, Seq: 1}, nil, w.key, ErrMalformed},
		{"bad key share", Header{Kind: KindKeyShare, Space: w.space, Seq: 1}, []byte{1, 2}, nil, ErrTruncated},
		{"routing of another space", Header{Kind: KindRouting, Space: SpaceID{9}, Seq: 1},
			Routing{Space: w.space, Nonce: w.nonce, Owner: w.bureau.Public().Fingerprint()}.Marshal(), nil, ErrMalformed},
		{"oversize", Header{Kind: KindChange, Space: w.space, Seq: 1}, make([]byte, maxPlainBody+1), w.key, ErrOversize},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Seal(c.h, c.body, c.key, w.alice, detRand("x"))
			wantErr(t, err, c.want)
		})
	}
}

func TestEnvelopeMaxSize(t *testing.T) {
	if testing.Short() {
		t.Skip("32 MiB")
	}
	w := newWorld(t)
	env := must(Seal(Header{Kind: KindChange, Space: w.space, Seq: 1}, make([]byte, maxPlainBody), w.key, w.alice, detRand("x")))
	if len(env) != MaxEnvelopeSize {
		t.Fatalf("len %d", len(env))
	}
	if _, _, err := Open(env, w.alice.Public(), w.keys); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseHeader(append(env, 0)); !errors.Is(err, ErrOversize) {
		t.Fatalf("oversize: %v", err)
	}
}

func TestEnvelopeWrongKeyAndAuthor(t *testing.T) {
	w := newWorld(t)
	env := w.seal(t, KindChange, 1, [32]byte{}, []byte("x"))
	// Another device's key: refused as a bad signature.
	if _, _, err := Verify(env, w.bob.Public()); !errors.Is(err, ErrSignature) {
		t.Fatalf("wrong author: %v", err)
	}
	// A keyring that answers with the wrong key for the epoch.
	other := must(NewSpaceKey(detRand("epoch 2")))
	liar := keyringFunc(func(SpaceID, KeyID) (*SpaceKey, bool) { return other, true })
	if _, _, err := Open(env, w.alice.Public(), liar); !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong key: %v", err)
	}
	// A validly signed envelope whose ciphertext does not open: ErrAuth.
	bad := must(seal(Header{Kind: KindChange, Space: w.space, Seq: 1}, []byte("x"), w.key, w.alice, detRand("n"), true))
	if _, _, err := Verify(bad, w.alice.Public()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(bad, w.alice.Public(), w.keys); !errors.Is(err, ErrAuth) {
		t.Fatalf("corrupt ciphertext: %v", err)
	}
}

type keyringFunc func(SpaceID, KeyID) (*SpaceKey, bool)

func (f keyringFunc) Key(s SpaceID, e KeyID) (*SpaceKey, bool) { return f(s, e) }

func TestKeyShareErrors(t *testing.T) {
	w := newWorld(t)
	ks := must(WrapKey(w.key, w.space, w.bob.Public(), detRand("eph")))
	if got := must(ParseKeyShare(ks)); got.Recipient != w.bob.ID() || got.Epoch != w.key.ID() {
		t.Fatalf("%+v", got)
	}
	if _, err := UnwrapKey(ks, w.space, w.alice); !errors.Is(err, ErrWrongRecipient) {
		t.Fatalf("wrong recipient: %v", err)
	}
	if _, err := UnwrapKey(ks, SpaceID{1}, w.bob); !errors.Is(err, ErrAuth) {
		t.Fatalf("other space: %v", err)
	}
	// Claiming another epoch breaks the AD and the HKDF info.
	forged := bytes.Clone(ks)
	forged[20] ^= 1
	if _, err := UnwrapKey(forged, w.space, w.bob); !errors.Is(err, ErrAuth) {
		t.Fatalf("forged epoch: %v", err)
	}
}

func TestCertificates(t *testing.T) {
	w := newWorld(t)
	mid := t0.Add(24 * time.Hour)
	for _, data := range [][]byte{w.aliceCert.Marshal(), w.aliceCert.MarshalBinary()} {
		c := must(ParseCertificate(data))
		if err := c.Verify(w.trust, mid); err != nil {
			t.Fatal(err)
		}
		if !c.Device.Equal(w.alice.Public()) || c.Role != RoleOfficer || !c.NotBefore.Equal(t0) || !c.NotAfter.Equal(t1) {
			t.Fatalf("%+v", c)
		}
	}
	wantErr(t, w.aliceCert.Verify(w.trust, t0.Add(-time.Second)), ErrNotYetValid)
	wantErr(t, w.aliceCert.Verify(w.trust, t1.Add(time.Second)), ErrExpired)
	if err := w.aliceCert.Verify(w.trust, t0); err != nil {
		t.Fatal("not before is inclusive:", err)
	}
	if err := w.aliceCert.Verify(w.trust, t1); err != nil {
		t.Fatal("not after is inclusive:", err)
	}
	wantErr(t, w.foreignCert.Verify(w.trust, mid), ErrUntrusted)
	wantErr(t, w.aliceCert.Verify(nil, mid), ErrUntrusted)
	wantErr(t, w.aliceCert.Verify(&TrustSet{}, mid), ErrUntrusted)
	// A field changed after signing is a bad signature.
	c := must(ParseCertificate(w.aliceCert.MarshalBinary()))
	c.Role = RoleRelay
	wantErr(t, c.Verify(w.trust, mid), ErrSignature)
	wantErr(t, (&Certificate{}).Verify(w.trust, mid), ErrSignature)
	// JSON whose readable fields lie.
	j := strings.Replace(string(w.aliceCert.Marshal()), `"role": "officer"`, `"role": "relay"`, 1)
	if _, err := ParseCertificate([]byte(j)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("lying json: %v", err)
	}
	// Request round trip and tamper.
	req := NewRequest(w.alice, [32]byte{7})
	for _, data := range [][]byte{req.Marshal(), req.MarshalBinary()} {
		r := must(ParseRequest(data))
		if !r.Device.Equal(w.alice.Public()) || r.NameCommitment != [32]byte{7} {
			t.Fatal("request round trip")
		}
	}
	forged := *req
	forged.NameCommitment = [32]byte{8}
	if _, err := w.bureau.Issue(&forged, RoleOfficer, t0, t1); !errors.Is(err, ErrSignature) {
		t.Fatalf("issue forged request: %v", err)
	}
	if _, err := w.bureau.Issue(req, RoleOfficer, t1, t0); err == nil {
		t.Fatal("inverted validity issued")
	}
	// Bureau public file.
	bp := must(ParseBureauPublic(w.bureau.Public().Marshal()))
	if bp.Fingerprint() != w.bureau.Public().Fingerprint() || bp.Name != "OMN" {
		t.Fatal("bureau public round trip")
	}
	for _, bad := range []string{"OMN", "o", "A", "ABCDEFGHIJKLMNOPQ", "OM N", "omn"} {
		if bad != "OMN" && ValidBureauName(bad) {
			t.Fatalf("bureau name %q accepted", bad)
		}
	}
}

func TestCheckAuthor(t *testing.T) {
	w := newWorld(t)
	mid := t0.Add(time.Hour)
	h := Header{Kind: KindChange, Space: w.space, Author: w.alice.ID(), Seq: 5}
	if err := CheckAuthor(h, w.aliceCert, nil, w.trust, mid); err != nil {
		t.Fatal(err)
	}
	wantErr(t, CheckAuthor(h, w.aliceCert, nil, w.trust, t1.Add(time.Hour)), ErrExpired)
	wantErr(t, CheckAuthor(h, w.aliceCert, nil, w.trust, t0.Add(-time.Hour)), ErrNotYetValid)
	wantErr(t, CheckAuthor(h, w.foreignCert, nil, w.trust, mid), ErrUntrusted)
	wantErr(t, CheckAuthor(h, w.bobCert, nil, w.trust, mid), ErrSignature)
	wantErr(t, CheckAuthor(h, nil, nil, w.trust, mid), ErrUntrusted)
	hr := h
	hr.Author = w.relay.ID()
	wantErr(t, CheckAuthor(hr, w.relayCert, nil, w.trust, mid), ErrRole)

	rev := must(w.bureau.Revoke(w.alice.ID(), map[SpaceID]uint64{w.space: 5}, 0, mid))
	rev = must(ParseRevocation(rev.Marshal()))
	if err := rev.Verify(w.trust); err != nil {
		t.Fatal(err)
	}
	if err := CheckAuthor(h, w.aliceCert, rev, w.trust, mid); err != nil {
		t.Fatal("a change at the cut-off stays valid:", err)
	}
	h6 := h
	h6.Seq = 6
	wantErr(t, CheckAuthor(h6, w.aliceCert, rev, w.trust, mid), ErrRevoked)
	hOther := h
	hOther.Space = SpaceID{3}
	hOther.Seq = 1
	wantErr(t, CheckAuthor(hOther, w.aliceCert, rev, w.trust, mid), ErrRevoked) // default cut-off 0
	all := must(w.bureau.Revoke(w.alice.ID(), nil, 0, mid))
	wantErr(t, CheckAuthor(h, w.aliceCert, all, w.trust, mid), ErrRevoked)
	// A revocation by an untrusted bureau is refused.
	foreign := must(w.other.Revoke(w.alice.ID(), nil, 0, mid))
	wantErr(t, foreign.Verify(w.trust), ErrUntrusted)
	// A revocation edited after signing.
	rev.Cutoffs[w.space] = 100
	wantErr(t, rev.Verify(w.trust), ErrSignature)
	if rev.Cutoff(SpaceID{4}) != 0 || rev.Cutoff(w.space) != 100 || (*Revocation)(nil).Cutoff(w.space) != ^uint64(0) {
		t.Fatal("cutoff lookup")
	}
}

func TestChallenge(t *testing.T) {
	w := newWorld(t)
	tr := Transcript{Label: "mesh-a", Binding: []byte("tls exporter"), Initiator: w.alice.ID(), Responder: w.bob.ID(),
		InitiatorNonce: must(NewNonce(detRand("n1"))), ResponderNonce: must(NewNonce(detRand("n2")))}
	si := SignChallenge(w.alice, tr, SideInitiator)
	sr := SignChallenge(w.bob, tr, SideResponder)
	if err := VerifyChallenge(w.alice.Public(), tr, SideInitiator, si); err != nil {
		t.Fatal(err)
	}
	if err := VerifyChallenge(w.bob.Public(), tr, SideResponder, sr); err != nil {
		t.Fatal(err)
	}
	// Replayed on another stream: fresh responder nonce.
	tr2 := tr
	tr2.ResponderNonce = must(NewNonce(detRand("n3")))
	wantErr(t, VerifyChallenge(w.alice.Public(), tr2, SideInitiator, si), ErrSignature)
	// Cross-stream: another channel binding.
	tr3 := tr
	tr3.Binding = []byte("another stream")
	wantErr(t, VerifyChallenge(w.alice.Public(), tr3, SideInitiator, si), ErrSignature)
	// Another mesh label.
	tr4 := tr
	tr4.Label = "mesh-b"
	wantErr(t, VerifyChallenge(w.alice.Public(), tr4, SideInitiator, si), ErrSignature)
	// Reflected: the initiator's signature presented as the responder's.
	wantErr(t, VerifyChallenge(w.alice.Public(), tr, SideResponder, si), ErrSignature)
	// Another device's key.
	wantErr(t, VerifyChallenge(w.bob.Public(), tr, SideInitiator, si), ErrSignature)
	// Zero nonce.
	tr5 := tr
	tr5.ResponderNonce = [32]byte{}
	wantErr(t, VerifyChallenge(w.alice.Public(), tr5, SideInitiator, si), ErrMalformed)
	// A challenge signature is no envelope, message or certificate signature.
	if VerifyMessage(w.alice.Public(), tr.message(SideInitiator), si) == nil {
		t.Fatal("challenge signature verified as a message")
	}
}

func TestDomainSeparation(t *testing.T) {
	w := newWorld(t)
	msg := []byte("same bytes")
	sig := w.alice.Sign(msg)
	if err := VerifyMessage(w.alice.Public(), msg, sig); err != nil {
		t.Fatal(err)
	}
	pub := w.alice.Public().SignKey
	if ed25519.Verify(pub, msg, sig) {
		t.Fatal("message signature verifies as pure Ed25519")
	}
	ctxs := map[string]*ed25519.Options{"envelope": ctxEnvelope, "envelope v2": ctxEnvelopeV2, "record erasure": ctxRecordErasure, "certificate": ctxCertificate,
		"request": ctxRequest, "revocation": ctxRevocation, "challenge": ctxChallenge, "message": ctxMessage}
	for name, ctx := range ctxs {
		s := signCtx(w.alice.sign, msg, ctx)
		for other, octx := range ctxs {
			if verifyCtx(pub, msg, s, octx) != (name == other) {
				t.Fatalf("a %s signature and the %s context", name, other)
			}
		}
	}
}

func TestValuesAndKeys(t *testing.T) {
	var master [32]byte
	copy(master[:], "storage master key of 32 bytes!")
	k1, k2 := DeriveKey(&master, "badger"), DeriveKey(&master, "values")
	if k1 == k2 || k1 == master {
		t.Fatal("derived keys not independent")
	}
	sealed := SealValue(&k1, []byte("rec/1"), []byte("canary"), detRand("v"))
	if pt := must(OpenValue(&k1, []byte("rec/1"), sealed)); string(pt) != "canary" {
		t.Fatal("value round trip")
	}
	wantErr(t, func() error { _, err := OpenValue(&k1, []byte("rec/2"), sealed); return err }(), ErrAuth)
	wantErr(t, func() error { _, err := OpenValue(&k2, []byte("rec/1"), sealed); return err }(), ErrAuth)
	wantErr(t, func() error { _, err := OpenValue(&k1, nil, sealed[:10]); return err }(), ErrAuth)
}

func TestKeyFiles(t *testing.T) {
	kf := must(NewKeyFile(detRand("kf")))
	if bytes.Count(kf, []byte("\n")) != 1 {
		t.Fatal("key file is not one line")
	}
	if k := must(ParseKeyFile(kf)); len(k) != 32 {
		t.Fatal("key length")
	}
	mk := must(NewMeshKeyFile(detRand("mk")))
	if k := must(ParseMeshKeyFile(mk)); len(k) != 32 {
		t.Fatal("mesh key length")
	}
	if _, err := ParseKeyFile(mk); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("mesh key file as key file: %v", err)
	}
	for _, bad := range []string{"", "fieldsync-key-file-v1", "fieldsync-key-file-v1 AAAA"} {
		if _, err := ParseKeyFile([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}

func TestSignChallengeRefuses(t *testing.T) {
	w := newWorld(t)
	tr := Transcript{Initiator: w.alice.ID(), Responder: w.bob.ID(), InitiatorNonce: [32]byte{1}, ResponderNonce: [32]byte{2}}
	if SignChallenge(w.bob, tr, SideInitiator) != nil {
		t.Fatal("signed as another device")
	}
	z := tr
	z.ResponderNonce = [32]byte{}
	if SignChallenge(w.alice, z, SideInitiator) != nil {
		t.Fatal("signed a zero nonce")
	}
	if SignChallenge(w.alice, tr, 3) != nil {
		t.Fatal("signed an unknown side")
	}
	wantErr(t, VerifyChallenge(w.alice.Public(), tr, SideInitiator, nil), ErrSignature)
}

func TestNewerBodyVersionIsForwarded(t *testing.T) {
	w := newWorld(t)
	// A key share body of a future version: Verify accepts it (signed), the
	// parser says it does not know it.
	body := append([]byte{keyShareVersion + 1}, make([]byte, 200)...)
	h := Header{Version: HeaderVersion, Kind: KindKeyShare, Space: w.space, Author: w.alice.ID(), Seq: 1, Epoch: KeyID{1}, BodyLen: uint32(len(body))}
	env := append(h.appendTo(nil), body...)
	env = append(env, signCtx(w.alice.sign, env, ctxEnvelope)...)
	if _, _, err := Verify(env, w.alice.Public()); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseKeyShare(body); !errors.Is(err, ErrUnknownVersion) {
		t.Fatal(err)
	}
	// Version 0 is no version: refused.
	body[0] = 0
	env = append(h.appendTo(nil), body...)
	env = append(env, signCtx(w.alice.sign, env, ctxEnvelope)...)
	if _, _, err := Verify(env, w.alice.Public()); !errors.Is(err, ErrUnknownVersion) {
		t.Fatal(err)
	}
}

// TestConcurrentUse: identities, space keys, certificates, revocations and
// trust sets are used from many goroutines at once by the agent (run with
// -race).
func TestConcurrentUse(t *testing.T) {
	w := newWorld(t)
	rev := must(w.bureau.Revoke(w.alice.ID(), map[SpaceID]uint64{w.space: 100}, 0, t0))
	done := make(chan error)
	for g := range 4 {
		go func() {
			var err error
			for i := range 20 {
				var env []byte
				env, err = Seal(Header{Kind: KindChange, Space: w.space, Seq: 1}, []byte{byte(g), byte(i)}, w.key, w.alice, rand.Reader)
				if err != nil {
					break
				}
				var h Header
				if h, _, err = Open(env, w.alice.Public(), w.keys); err != nil {
					break
				}
				if err = CheckAuthor(h, w.aliceCert, rev, w.trust, t0); err != nil {
					break
				}
				w.trust.Add(w.other.Public())
				w.trust.Remove(w.other.Public().Fingerprint())
			}
			done <- err
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func TestCheckAuthorRevocationMismatch(t *testing.T) {
	w := newWorld(t)
	h := Header{Kind: KindChange, Space: w.space, Author: w.alice.ID(), Seq: 1}
	// A revocation of another device, or by another bureau, is the caller's
	// mistake: an error, never silently ignored.
	revBob := must(w.bureau.Revoke(w.bob.ID(), nil, 0, t0))
	if err := CheckAuthor(h, w.aliceCert, revBob, w.trust, t0); err == nil {
		t.Fatal("revocation of another device accepted")
	}
	trustBoth := NewTrustSet(w.bureau.Public(), w.other.Public())
	revKAZ := must(w.other.Revoke(w.alice.ID(), nil, 0, t0))
	if err := CheckAuthor(h, w.aliceCert, revKAZ, trustBoth, t0); err == nil || errors.Is(err, ErrRevoked) {
		t.Fatalf("revocation by another bureau: %v", err)
	}
	if w.alice.ID().Compare(w.bob.ID()) != -w.bob.ID().Compare(w.alice.ID()) || w.alice.ID().Compare(w.alice.ID()) != 0 {
		t.Fatal("Compare is not antisymmetric")
	}
}
