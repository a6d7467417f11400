package crypto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Test vectors live in testdata/vectors/*.txt. Each file is a header of
// "name: value" lines, a blank line and the payload in hex (64 characters a
// line). The header always has `expect:` (the outcome) and `type:` (which
// check applies). They were generated once from fixed seeds by
// `go test -run TestVectors -update`; the normal test only reads and checks
// them, so any format change shows up as a failing vector.
var update = flag.Bool("update", false, "rewrite testdata/vectors from fixed seeds")

const vectorDir = "testdata/vectors"

type vector struct {
	file    string
	fields  [][2]string
	payload []byte
}

func (v *vector) get(k string) string {
	for _, f := range v.fields {
		if f[0] == k {
			return f[1]
		}
	}
	return ""
}

func (v *vector) hex(t testing.TB, k string) []byte {
	b, err := hex.DecodeString(v.get(k))
	if err != nil {
		t.Fatalf("%s: field %s: %v", v.file, k, err)
	}
	return b
}

var expectations = map[string]error{
	"success": nil, "no key": ErrNoKey, "signature": ErrSignature, "auth failure": ErrAuth,
	"truncated": ErrTruncated, "oversize": ErrOversize, "unknown version": ErrUnknownVersion,
	"invalid": ErrInvalid, "expired": ErrExpired, "not yet valid": ErrNotYetValid, "revoked": ErrRevoked,
	"untrusted": ErrUntrusted, "wrong recipient": ErrWrongRecipient, "wrong passphrase": ErrWrongPassphrase,
	"role": ErrRole,
}

func parseVector(name string, data []byte) (*vector, error) {
	v := &vector{file: name}
	head, body, ok := bytes.Cut(data, []byte("\n\n"))
	if !ok {
		return nil, fmt.Errorf("%s: no blank line after the header", name)
	}
	for _, l := range strings.Split(string(head), "\n") {
		k, val, ok := strings.Cut(l, ": ")
		if !ok {
			return nil, fmt.Errorf("%s: header line %q", name, l)
		}
		v.fields = append(v.fields, [2]string{k, val})
	}
	p, err := hex.DecodeString(strings.Join(strings.Fields(string(body)), ""))
	if err != nil {
		return nil, fmt.Errorf("%s: payload: %v", name, err)
	}
	v.payload = p
	return v, nil
}

func (v *vector) encode() []byte {
	var b bytes.Buffer
	for _, f := range v.fields {
		fmt.Fprintf(&b, "%s: %s\n", f[0], f[1])
	}
	b.WriteString("\n")
	h := hex.EncodeToString(v.payload)
	for len(h) > 64 {
		b.WriteString(h[:64] + "\n")
		h = h[64:]
	}
	b.WriteString(h + "\n")
	return b.Bytes()
}

func loadVectors(t testing.TB) []*vector {
	files, err := filepath.Glob(filepath.Join(vectorDir, "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no vectors in %s: %v", vectorDir, err)
	}
	var out []*vector
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		v, err := parseVector(filepath.Base(f), data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func loadVectorsF(f *testing.F, typ string) []*vector {
	var out []*vector
	for _, v := range loadVectors(f) {
		if v.get("type") == typ {
			out = append(out, v)
		}
	}
	return out
}

func TestVectors(t *testing.T) {
	if *update {
		writeVectors(t)
	}
	seen := map[string]bool{}
	for _, v := range loadVectors(t) {
		t.Run(v.file, func(t *testing.T) {
			exp := v.get("expect")
			want, ok := expectations[exp]
			if !ok {
				t.Fatalf("unknown expectation %q", exp)
			}
			seen[exp] = true
			check, ok := vectorChecks[v.get("type")]
			if !ok {
				t.Fatalf("unknown type %q", v.get("type"))
			}
			err := check(t, v)
			if want == nil {
				if err != nil {
					t.Fatalf("want success, got %v", err)
				}
				return
			}
			if !errors.Is(err, want) {
				t.Fatalf("want %s, got %v", exp, err)
			}
		})
	}
	for exp := range expectations {
		if !seen[exp] {
			t.Errorf("no vector expects %q", exp)
		}
	}
}

func identityFromHex(t testing.TB, v *vector, k string) *Identity {
	return must(NewIdentity(bytes.NewReader(v.hex(t, k))))
}

func vectorTime(t testing.TB, v *vector) time.Time {
	at, err := time.Parse(time.RFC3339, v.get("at"))
	if err != nil {
		t.Fatalf("%s: at: %v", v.file, err)
	}
	return at
}

func vectorTrust(t testing.TB, v *vector) *TrustSet {
	return NewTrustSet(must(ParseBureauPublic([]byte(v.get("trust")))))
}

// vectorChecks run one vector: nil for success, else the error to match.
// On success they also compare the outputs the vector records.
var vectorChecks = map[string]func(t *testing.T, v *vector) error{
	"envelope": func(t *testing.T, v *vector) error {
		author := identityFromHex(t, v, "author")
		keys := mapKeyring{}
		if kb := v.get("space-key"); kb != "" {
			k := must(SpaceKeyFromBytes(v.hex(t, "space-key")))
			keys[k.ID()] = k
		}
		h, pt, err := Open(v.payload, author.Public(), keys)
		if err != nil {
			return err
		}
		if !bytes.Equal(pt, v.hex(t, "plaintext")) {
			t.Fatalf("plaintext %x", pt)
		}
		if h.Kind.String() != v.get("kind") || strconv.FormatUint(h.Seq, 10) != v.get("seq") || h.Space.String() != v.get("space") {
			t.Fatalf("header %+v", h)
		}
		if got := hex.EncodeToString(func() []byte { x := Hash(v.payload); return x[:] }()); got != v.get("hash") {
			t.Fatalf("hash %s", got)
		}
		return nil
	},
	"segmented": func(t *testing.T, v *vector) error {
		author := identityFromHex(t, v, "author")
		k := must(SpaceKeyFromBytes(v.hex(t, "space-key")))
		keys := mapKeyring{k.ID(): k}
		if _, _, err := Verify(v.payload, author.Public()); err != nil {
			return err
		}
		_, segs, err := OpenSegments(v.payload, keys)
		if err != nil {
			return err
		}
		want := strings.Split(v.get("segments"), ",")
		if len(segs) != len(want) {
			t.Fatalf("%d segments", len(segs))
		}
		for i, s := range segs {
			if hex.EncodeToString(s.Plain) != want[i] {
				t.Fatalf("segment %d: %x", i, s.Plain)
			}
		}
		hash := Hash(v.payload)
		if hex.EncodeToString(hash[:]) != v.get("hash") {
			t.Fatalf("hash %x", hash)
		}
		er := v.hex(t, "erased-1")
		if !bytes.Equal(er, must(EraseSegments(v.payload, 1))) {
			t.Fatal("erasure differs")
		}
		if _, _, err := Verify(er, author.Public()); err != nil {
			t.Fatalf("erased: %v", err)
		}
		if Hash(er) != hash {
			t.Fatal("erased hash differs")
		}
		return nil
	},
	"cold": func(t *testing.T, v *vector) error {
		k := must(SpaceKeyFromBytes(v.hex(t, "space-key")))
		env, err := ThawEnvelope(v.payload, mapKeyring{k.ID(): k})
		if err != nil {
			return err
		}
		if !bytes.Equal(env, v.hex(t, "envelope")) {
			t.Fatal("thawed to other bytes")
		}
		return nil
	},
	"key share": func(t *testing.T, v *vector) error {
		id := identityFromHex(t, v, "recipient")
		space := SpaceID(v.hex(t, "space"))
		k, err := UnwrapKey(v.payload, space, id)
		if err != nil {
			return err
		}
		if !bytes.Equal(k.Bytes(), v.hex(t, "key")) || k.ID().String() != v.get("epoch") {
			t.Fatal("unwrapped key differs")
		}
		ks, err := ParseKeyShare(v.payload)
		if err != nil {
			return err
		}
		var replaces []string
		for _, r := range ks.Replaces {
			replaces = append(replaces, r.String())
		}
		if strings.Join(replaces, ",") != v.get("replaces") {
			t.Fatalf("replaced epochs %v, want %q", replaces, v.get("replaces"))
		}
		return nil
	},
	"certificate": func(t *testing.T, v *vector) error {
		c, err := ParseCertificate(v.payload)
		if err != nil {
			return err
		}
		if err := c.Verify(vectorTrust(t, v), vectorTime(t, v)); err != nil {
			return err
		}
		if c.Device.ID().String() != v.get("device") || c.Role.String() != v.get("role") {
			t.Fatal("certificate fields differ")
		}
		if want := v.get("version"); want != "" && strconv.Itoa(c.Version()) != want {
			t.Fatalf("certificate version %d, want %s", c.Version(), want)
		}
		return nil
	},
	"request": func(t *testing.T, v *vector) error {
		r, err := ParseRequest(v.payload)
		if err != nil {
			return err
		}
		if r.Device.ID().String() != v.get("device") {
			t.Fatal("device differs")
		}
		return nil
	},
	"revocation": func(t *testing.T, v *vector) error {
		r, err := ParseRevocation(v.payload)
		if err != nil {
			return err
		}
		return r.Verify(vectorTrust(t, v))
	},
	"erasure": func(t *testing.T, v *vector) error {
		e, err := ParseErasure(v.payload)
		if err != nil {
			return err
		}
		if e.Space.String() != v.get("space") {
			t.Fatalf("space %s, want %s", e.Space, v.get("space"))
		}
		return e.Verify(identityFromHex(t, v, "author").Public())
	},
	"author": func(t *testing.T, v *vector) error {
		cert := must(ParseCertificate(v.hex(t, "certificate")))
		var rev *Revocation
		if len(v.payload) > 0 {
			rev = must(ParseRevocation(v.payload))
		}
		seq := must(strconv.ParseUint(v.get("seq"), 10, 64))
		h := Header{Kind: KindChange, Space: SpaceID(v.hex(t, "space")), Author: cert.Device.ID(), Seq: seq}
		return CheckAuthor(h, cert, rev, vectorTrust(t, v), vectorTime(t, v))
	},
	"keystore": func(t *testing.T, v *vector) error {
		var ks *Keystore
		var err error
		if kf := v.get("key-file"); kf != "" {
			ks, err = OpenKeystoreWithKeyFile(v.payload, v.hex(t, "key-file"))
		} else {
			ks, err = OpenKeystore(v.payload, []byte(v.get("passphrase")))
		}
		if err != nil {
			return err
		}
		if ks.Identity.ID().String() != v.get("device") || ks.Officer != v.get("officer") {
			t.Fatal("keystore contents differ")
		}
		return nil
	},
	"bureau file": func(t *testing.T, v *vector) error {
		b, err := OpenBureau(v.payload, []byte(v.get("passphrase")))
		if err != nil {
			return err
		}
		if b.Public().Fingerprint() != v.get("fingerprint") {
			t.Fatal("fingerprint differs")
		}
		return nil
	},
	"challenge": func(t *testing.T, v *vector) error {
		tr := Transcript{Label: v.get("label"), Binding: v.hex(t, "binding"),
			Initiator: DeviceID(v.hex(t, "initiator")), Responder: DeviceID(v.hex(t, "responder")),
			InitiatorNonce: [32]byte(v.hex(t, "initiator-nonce")), ResponderNonce: [32]byte(v.hex(t, "responder-nonce"))}
		signer := identityFromHex(t, v, "signer")
		side := SideInitiator
		if v.get("side") == "responder" {
			side = SideResponder
		}
		return VerifyChallenge(signer.Public(), tr, side, v.payload)
	},
	"value": func(t *testing.T, v *vector) error {
		pt, err := OpenValue((*[32]byte)(v.hex(t, "key")), v.hex(t, "ad"), v.payload)
		if err != nil {
			return err
		}
		if !bytes.Equal(pt, v.hex(t, "plaintext")) {
			t.Fatal("plaintext differs")
		}
		var master [32]byte
		if d := DeriveKey(&master, "vector"); hex.EncodeToString(d[:]) != v.get("derive-zero-vector") {
			t.Fatal("DeriveKey differs")
		}
		return nil
	},
	"routing": func(t *testing.T, v *vector) error {
		r, err := ParseRouting(v.payload)
		if err != nil {
			return err
		}
		k := must(SpaceKeyFromBytes(v.hex(t, "space-key")))
		name, err := OpenName(k, r.Space, r.SealedName)
		if err != nil {
			return err
		}
		if name != v.get("name") || !bytes.Equal(r.Marshal(), v.payload) {
			t.Fatal("routing differs")
		}
		return nil
	},
	"profile": func(t *testing.T, v *vector) error {
		p, err := ParseProfile(v.payload)
		if err != nil {
			return err
		}
		c := NameCommitment(p.Officer, p.NameSalt)
		if p.Officer != v.get("officer") || hex.EncodeToString(c[:]) != v.get("commitment") {
			t.Fatal("profile differs")
		}
		return nil
	},
}

// ---- generation (only with -update) ----

func seedHex(seed string, n int) string {
	b := make([]byte, n)
	io.ReadFull(detRand(seed), b)
	return hex.EncodeToString(b)
}

func writeVectors(t *testing.T) {
	w := newWorld(t)
	var vs []*vector
	add := func(file string, payload []byte, fields ...string) {
		v := &vector{file: file, payload: payload}
		for i := 0; i+1 < len(fields); i += 2 {
			v.fields = append(v.fields, [2]string{fields[i], fields[i+1]})
		}
		vs = append(vs, v)
	}
	alice, bob := seedHex("alice", 64), seedHex("bob", 64)
	keyHex := hex.EncodeToString(w.key.Bytes())
	trust := strings.TrimSpace(string(w.bureau.Public().Marshal()))
	sp := w.space.String()
	env := func(file, expect, comment string, e []byte, author, key string, pt []byte) {
		h, _ := ParseHeader(e)
		hash := Hash(e)
		add(file, e, "expect", expect, "type", "envelope", "comment", comment, "author", author, "space-key", key,
			"kind", h.Kind.String(), "seq", strconv.FormatUint(h.Seq, 10), "space", sp,
			"plaintext", hex.EncodeToString(pt), "hash", hex.EncodeToString(hash[:]))
	}
	change := []byte("{\"ops\":[\"set name Zoë\"]}")
	e1 := w.seal(t, KindChange, 1, [32]byte{}, change)
	env("envelope-change.txt", "success", "a change, opened with its epoch key", e1, alice, keyHex, change)
	prof := Profile{Officer: w.aliceName, NameSalt: w.aliceSalt}.Marshal()
	e2 := w.seal(t, KindProfile, 2, Hash(e1), prof)
	env("envelope-profile.txt", "success", "a profile, seq 2 chained to the change", e2, alice, keyHex, prof)
	ks := must(WrapKey(w.key, w.space, w.bob.Public(), detRand("eph")))
	e3 := w.seal(t, KindKeyShare, 3, Hash(e2), ks)
	env("envelope-keyshare.txt", "success", "a key share to bob (clear body)", e3, alice, "", ks)
	rt := Routing{Space: w.space, Nonce: w.nonce, Owner: w.bureau.Public().Fingerprint(), Released: []string{w.other.Public().Fingerprint()},
		SealedName: SealName(w.key, w.space, "Case 17", detRand("name"))}.Marshal()
	e4 := w.seal(t, KindRouting, 4, Hash(e3), rt)
	env("envelope-routing.txt", "success", "a routing record (clear body)", e4, alice, "", rt)
	env("envelope-no-key.txt", "no key", "a change opened without its epoch key (a relay)", e1, alice, "", nil)
	bad := bytes.Clone(e1)
	bad[HeaderSize+30] ^= 1
	env("envelope-signature.txt", "signature", "one ciphertext byte flipped", bad, alice, keyHex, nil)
	env("envelope-wrong-author.txt", "signature", "checked against another device", e1, bob, keyHex, nil)
	corrupt := must(seal(Header{Kind: KindChange, Space: w.space, Seq: 1}, change, w.key, w.alice, detRand("nonce"), true))
	env("envelope-auth.txt", "auth failure", "validly signed, ciphertext does not open", corrupt, alice, keyHex, nil)
	env("envelope-truncated.txt", "truncated", "the last signature byte missing", e1[:len(e1)-1], alice, keyHex, nil)
	over := bytes.Clone(e1[:HeaderSize])
	over[100], over[101], over[102], over[103] = 0x7f, 0xff, 0xff, 0xff
	env("envelope-oversize.txt", "oversize", "body length above the limit", over, alice, keyHex, nil)
	unk := bytes.Clone(e1)
	unk[0] = 3
	env("envelope-unknown-version.txt", "unknown version", "header version 3", unk, alice, keyHex, nil)
	seg := func(file, expect, comment string, e []byte, erased []byte, pts ...string) {
		hash := Hash(e)
		hx := make([]string, len(pts))
		for i, p := range pts {
			hx[i] = hex.EncodeToString([]byte(p))
		}
		add(file, e, "expect", expect, "type", "segmented", "comment", comment, "author", alice, "space-key", keyHex,
			"space", sp, "segments", strings.Join(hx, ","), "erased-1", hex.EncodeToString(erased), "hash", hex.EncodeToString(hash[:]))
	}
	s1 := w.sealSegs(t, 1, [32]byte{}, "record a: put name Zoë", "record b: CANARY", "record c: note")
	seg("envelope-v2-segments.txt", "success", "a version 2 change of three segments; erased-1 is it with segment 1 erased (same hash)",
		s1, must(EraseSegments(s1, 1)), "record a: put name Zoë", "record b: CANARY", "record c: note")
	sbad := bytes.Clone(s1)
	sbad[HeaderSize+2+5+30] ^= 1
	seg("envelope-v2-signature.txt", "signature", "version 2, one byte of segment 0 flipped", sbad, nil)
	// Cold envelopes: the decoder must keep reading these bytes (DEFLATE
	// output may differ between Go releases, so freezing is not pinned).
	cut := must(EraseSegments(s1, 1))
	cold := must(FreezeEnvelope(cut, w.keys))
	cv := func(file, expect, comment string, c []byte) {
		add(file, c, "expect", expect, "type", "cold", "comment", comment, "space-key", keyHex, "envelope", hex.EncodeToString(cut))
	}
	cv("cold-v1.txt", "success", "envelope-v2-segments with segment 1 cut, in cold form; thaws to envelope", cold)
	cbad := bytes.Clone(cold)
	cbad[1] ^= 1
	cv("cold-v1-damaged.txt", "invalid", "the recorded SHA-256 altered: the rebuilt envelope differs", cbad)
	cunk := bytes.Clone(cold)
	cunk[0] = 0xC2
	cv("cold-v1-unknown-version.txt", "unknown version", "cold form version 0xC2", cunk)
	res := bytes.Clone(e1)
	res[3] = 1
	env("envelope-invalid.txt", "invalid", "reserved header byte set", res, alice, keyHex, nil)

	bobHex := bob
	add("keyshare.txt", ks, "expect", "success", "type", "key share", "recipient", bobHex, "space", hex.EncodeToString(w.space[:]),
		"key", keyHex, "epoch", w.key.ID().String())
	add("keyshare-wrong-recipient.txt", ks, "expect", "wrong recipient", "type", "key share", "recipient", alice, "space", hex.EncodeToString(w.space[:]))
	add("keyshare-other-space.txt", ks, "expect", "auth failure", "type", "key share", "recipient", bobHex, "space", strings.Repeat("00", 16))
	// Version 2: the epochs the wrapped one replaces follow the wrapped key.
	old1, old2 := must(NewSpaceKey(detRand("epoch 0a"))).ID(), must(NewSpaceKey(detRand("epoch 0b"))).ID()
	ks2 := must(WrapKeyReplacing(w.key, w.space, w.bob.Public(), []KeyID{old2, old1}, detRand("eph")))
	sorted := []string{old1.String(), old2.String()}
	if bytes.Compare(old1[:], old2[:]) > 0 {
		sorted[0], sorted[1] = sorted[1], sorted[0]
	}
	add("keyshare-v2.txt", ks2, "expect", "success", "type", "key share", "recipient", bobHex, "space", hex.EncodeToString(w.space[:]),
		"key", keyHex, "epoch", w.key.ID().String(), "replaces", strings.Join(sorted, ","))
	unsorted := bytes.Clone(ks2)
	copy(unsorted[keyShareSize+1:], ks2[keyShareSize+17:])
	copy(unsorted[keyShareSize+17:], ks2[keyShareSize+1:keyShareSize+17])
	add("keyshare-v2-unsorted.txt", unsorted, "expect", "invalid", "type", "key share", "recipient", bobHex, "space", hex.EncodeToString(w.space[:]))

	cert := func(file, expect, comment string, data []byte, at time.Time, trust string) {
		add(file, data, "expect", expect, "type", "certificate", "comment", comment, "trust", trust, "at", at.Format(time.RFC3339),
			"device", w.alice.ID().String(), "role", "officer")
	}
	mid := t0.Add(24 * time.Hour)
	cb := w.aliceCert.MarshalBinary()
	cert("certificate.txt", "success", "binary form", cb, mid, trust)
	cert("certificate-json.txt", "success", "cert.json form", w.aliceCert.Marshal(), mid, trust)
	cert("certificate-expired.txt", "expired", "one second after not after", cb, t1.Add(time.Second), trust)
	cert("certificate-not-yet-valid.txt", "not yet valid", "one second before not before", cb, t0.Add(-time.Second), trust)
	cert("certificate-untrusted.txt", "untrusted", "issued by KAZ, only OMN trusted", w.foreignCert.MarshalBinary(), mid, trust)
	bc := bytes.Clone(cb)
	bc[len(bc)-70] ^= 1
	cert("certificate-signature.txt", "signature", "name commitment changed", bc, mid, trust)
	cert("certificate-truncated.txt", "truncated", "cut in the middle", cb[:100], mid, trust)
	uc := bytes.Clone(cb)
	uc[4] = 9
	cert("certificate-unknown-version.txt", "unknown version", "version 9", uc, mid, trust)
	cert2 := func(file, expect, comment string, data []byte) {
		add(file, data, "expect", expect, "type", "certificate", "comment", comment, "trust", trust, "at", mid.Format(time.RFC3339),
			"device", w.alice.ID().String(), "role", "officer", "version", "2")
	}
	c2 := must(w.aliceCert.Countersign(w.alice))
	cert2("certificate-v2.txt", "success", "version 2: the version 1 certificate countersigned by the device (fieldsync/enrollment/v1)", c2.MarshalBinary())
	cert2("certificate-v2-json.txt", "success", "version 2, cert.json form", c2.Marshal())
	cs := append([]byte("FSCT\x02"), cb...)
	cs = append(cs, signCtx(w.bob.sign, cb, ctxEnrollment)...)
	cert2("certificate-v2-countersignature.txt", "signature", "countersigned by another device's key (bob), not the certified one", cs)
	fc := w.foreignCert.MarshalBinary()
	fs := append(append([]byte("FSCT\x02"), fc...), c2.MarshalBinary()[len(c2.MarshalBinary())-SignatureSize:]...)
	cert2("certificate-v2-reused.txt", "signature", "alice's countersignature for OMN reused over KAZ's certificate of her keys", fs)

	req := NewRequest(w.alice, NameCommitment(w.aliceName, w.aliceSalt))
	add("request.txt", req.MarshalBinary(), "expect", "success", "type", "request", "device", w.alice.ID().String())
	add("request-json.txt", req.Marshal(), "expect", "success", "type", "request", "device", w.alice.ID().String())
	br := req.MarshalBinary()
	br[40] ^= 1
	add("request-signature.txt", br, "expect", "signature", "type", "request", "device", w.alice.ID().String())

	rev := must(w.bureau.Revoke(w.alice.ID(), map[SpaceID]uint64{w.space: 5}, 0, mid))
	add("revocation.txt", rev.Marshal(), "expect", "success", "type", "revocation", "trust", trust)
	add("revocation-untrusted.txt", must(w.other.Revoke(w.alice.ID(), nil, 0, mid)).Marshal(), "expect", "untrusted", "type", "revocation", "trust", trust)
	er := must(NewErasure(w.alice, w.space, w.nonce, w.bureau.Public().Fingerprint(), mid)).Marshal()
	add("erasure.txt", er, "expect", "success", "type", "erasure", "author", alice, "space", sp)
	add("erasure-wrong-author.txt", er, "expect", "signature", "type", "erasure", "comment", "alice's marker checked against bob's key", "author", bob, "space", sp)
	ert := bytes.Clone(er)
	ert[5] ^= 1 // another space: no longer bound to the owner by the nonce
	add("erasure-unbound.txt", ert, "expect", "invalid", "type", "erasure", "author", alice, "space", sp)
	add("erasure-truncated.txt", er[:100], "expect", "truncated", "type", "erasure", "author", alice, "space", sp)
	author := func(file, expect, comment string, c *Certificate, r *Revocation, space SpaceID, seq uint64) {
		var p []byte
		if r != nil {
			p = r.Marshal()
		}
		add(file, p, "expect", expect, "type", "author", "comment", comment, "trust", trust, "at", mid.Format(time.RFC3339),
			"certificate", hex.EncodeToString(c.MarshalBinary()), "space", hex.EncodeToString(space[:]), "seq", strconv.FormatUint(seq, 10))
	}
	author("author-at-cutoff.txt", "success", "a change at its space's cut-off stays valid", w.aliceCert, rev, w.space, 5)
	author("author-revoked.txt", "revoked", "a change past its space's cut-off", w.aliceCert, rev, w.space, 6)
	author("author-revoked-default.txt", "revoked", "another space: default cut-off 0", w.aliceCert, rev, SpaceID{1}, 1)
	author("author-role.txt", "role", "a relay authoring a change", w.relayCert, nil, w.space, 1)

	ksData := must(SealKeystore(testKeystore(t), []byte("correct horse battery staple"), TestKDFParams, detRand("keystore")))
	kst := func(file, expect, comment string, data []byte, extra ...string) {
		add(file, data, append([]string{"expect", expect, "type", "keystore", "comment", comment, "passphrase", "correct horse battery staple",
			"device", w.alice.ID().String(), "officer", w.aliceName}, extra...)...)
	}
	kst("keystore.txt", "success", "argon2id with TestKDFParams", ksData)
	add("keystore-wrong-passphrase.txt", ksData, "expect", "wrong passphrase", "type", "keystore", "passphrase", "Correct horse battery staple")
	kc := bytes.Clone(ksData)
	kc[len(kc)-20] ^= 1
	kst("keystore-corrupt.txt", "auth failure", "a ciphertext byte flipped: corrupt, not a wrong passphrase", kc)
	kh := bytes.Clone(ksData)
	kh[20] ^= 1
	kst("keystore-corrupt-header.txt", "invalid", "a salt byte flipped: header checksum", kh)
	kst("keystore-truncated.txt", "truncated", "last byte missing", ksData[:len(ksData)-1])
	fk := bytes.Repeat([]byte{0x42}, 32)
	kst("keystore-key-file.txt", "success", "key-file mode", must(SealKeystoreWithKeyFile(testKeystore(t), fk, detRand("kf"))), "key-file", hex.EncodeToString(fk))
	bf := must(SealBureau(w.bureau, []byte("bureau pass"), TestKDFParams, detRand("bureau file")))
	add("bureau-file.txt", bf, "expect", "success", "type", "bureau file", "passphrase", "bureau pass", "fingerprint", w.bureau.Public().Fingerprint())
	add("bureau-file-wrong-passphrase.txt", bf, "expect", "wrong passphrase", "type", "bureau file", "passphrase", "bureau pas")

	tr := Transcript{Label: "fieldsync-mesh", Binding: []byte("exporter keying material"), Initiator: w.alice.ID(), Responder: w.bob.ID(),
		InitiatorNonce: must(NewNonce(detRand("in"))), ResponderNonce: must(NewNonce(detRand("rn")))}
	ch := func(file, expect, comment string, tr Transcript, signer, side string, sig []byte) {
		add(file, sig, "expect", expect, "type", "challenge", "comment", comment, "label", tr.Label, "binding", hex.EncodeToString(tr.Binding),
			"initiator", hex.EncodeToString(tr.Initiator[:]), "responder", hex.EncodeToString(tr.Responder[:]),
			"initiator-nonce", hex.EncodeToString(tr.InitiatorNonce[:]), "responder-nonce", hex.EncodeToString(tr.ResponderNonce[:]),
			"signer", signer, "side", side)
	}
	sig := SignChallenge(w.alice, tr, SideInitiator)
	ch("challenge.txt", "success", "the initiator's signature", tr, alice, "initiator", sig)
	tr2 := tr
	tr2.ResponderNonce = must(NewNonce(detRand("rn2")))
	ch("challenge-replay.txt", "signature", "the same signature on a stream with a fresh responder nonce", tr2, alice, "initiator", sig)
	ch("challenge-reflect.txt", "signature", "the initiator's signature presented as the responder's", tr, bob, "responder", sig)

	var vk [32]byte
	copy(vk[:], "value key for the vectors, 32 b!")
	var zero [32]byte
	dz := DeriveKey(&zero, "vector")
	sv := SealValue(&vk, []byte("badger key"), []byte("canary"), detRand("value"))
	add("value.txt", sv, "expect", "success", "type", "value", "key", hex.EncodeToString(vk[:]), "ad", hex.EncodeToString([]byte("badger key")),
		"plaintext", hex.EncodeToString([]byte("canary")), "derive-zero-vector", hex.EncodeToString(dz[:]))
	add("value-wrong-ad.txt", sv, "expect", "auth failure", "type", "value", "key", hex.EncodeToString(vk[:]), "ad", hex.EncodeToString([]byte("badger kez")))
	add("routing.txt", rt, "expect", "success", "type", "routing", "space-key", keyHex, "name", "Case 17")
	c := NameCommitment(w.aliceName, w.aliceSalt)
	add("profile.txt", prof, "expect", "success", "type", "profile", "officer", w.aliceName, "commitment", hex.EncodeToString(c[:]))

	if err := os.MkdirAll(vectorDir, 0o755); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(vectorDir, "*.txt"))
	for _, f := range old {
		if !slices.ContainsFunc(vs, func(v *vector) bool { return v.file == filepath.Base(f) }) {
			os.Remove(f)
		}
	}
	for _, v := range vs {
		if err := os.WriteFile(filepath.Join(vectorDir, v.file), v.encode(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
