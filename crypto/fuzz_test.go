package crypto

import (
	"bytes"
	"errors"
	"testing"
)

// Every parser has a fuzz target: no input panics, every error is one of the
// package's typed errors, and what parses re-encodes to the same bytes where
// the format is canonical. Seeds: valid objects of each kind (and the
// vectors, for the envelope).

func fuzzWorld(f *testing.F) *world { return newWorld(f) }

func typedErr(t *testing.T, err error) {
	t.Helper()
	for _, e := range []error{ErrMalformed, ErrSignature, ErrAuth, ErrNoKey, ErrWrongRecipient, ErrWrongPassphrase} {
		if errors.Is(err, e) {
			return
		}
	}
	t.Fatalf("untyped error: %v", err)
}

func FuzzOpen(f *testing.F) {
	w := fuzzWorld(f)
	e1 := w.seal(f, KindChange, 1, [32]byte{}, []byte("change"))
	f.Add(e1)
	f.Add(w.seal(f, KindProfile, 2, Hash(e1), Profile{Officer: "x"}.Marshal()))
	f.Add(w.seal(f, KindKeyShare, 3, Hash(e1), must(WrapKey(w.key, w.space, w.bob.Public(), detRand("e")))))
	f.Add(w.seal(f, KindRouting, 4, Hash(e1), Routing{Space: w.space, Nonce: w.nonce, Owner: w.bureau.Public().Fingerprint()}.Marshal()))
	for _, v := range loadVectorsF(f, "envelope") {
		f.Add(v.payload)
	}
	pub := w.alice.Public()
	f.Fuzz(func(t *testing.T, env []byte) {
		h1, herr := ParseHeader(env)
		h, pt, err := Open(env, pub, w.keys)
		if err != nil {
			typedErr(t, err)
			return
		}
		if herr != nil || h1 != h {
			t.Fatalf("opened but ParseHeader says %v", herr)
		}
		if h.Kind.sealed() && len(pt)+sealOverhead != int(h.BodyLen) {
			t.Fatal("plaintext length")
		}
	})
}

func FuzzParseHeader(f *testing.F) {
	w := fuzzWorld(f)
	f.Add(w.seal(f, KindChange, 1, [32]byte{}, []byte("change")))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, env []byte) {
		h, err := ParseHeader(env)
		if err != nil {
			typedErr(t, err)
			return
		}
		if len(env) != envOverhead+int(h.BodyLen) {
			t.Fatal("length")
		}
		if !bytes.Equal(h.appendTo(nil), env[:HeaderSize]) {
			t.Fatal("header does not re-encode")
		}
	})
}

func FuzzUnwrapKey(f *testing.F) {
	w := fuzzWorld(f)
	f.Add(must(WrapKey(w.key, w.space, w.bob.Public(), detRand("e"))))
	f.Add(must(WrapKeyReplacing(w.key, w.space, w.bob.Public(), []KeyID{{1}, {2}}, detRand("e"))))
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, err := ParseKeyShare(body); err != nil {
			typedErr(t, err)
		}
		k, err := UnwrapKey(body, w.space, w.bob)
		if err != nil {
			typedErr(t, err)
			return
		}
		if k.ID() != must(ParseKeyShare(body)).Epoch {
			t.Fatal("epoch")
		}
	})
}

func FuzzParseCertificate(f *testing.F) {
	w := fuzzWorld(f)
	f.Add(w.aliceCert.MarshalBinary())
	f.Add(w.aliceCert.Marshal())
	f.Add(w.relayCert.MarshalBinary())
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCertificate(data)
		if err != nil {
			typedErr(t, err)
			return
		}
		if !isJSON(data) && !bytes.Equal(c.MarshalBinary(), data) {
			t.Fatal("binary does not re-encode")
		}
		if err := c.Verify(w.trust, t0); err != nil && !errors.Is(err, ErrUntrusted) && !errors.Is(err, ErrExpired) && !errors.Is(err, ErrNotYetValid) {
			t.Fatalf("parsed certificate fails verify with %v", err)
		}
	})
}

func FuzzParseRequest(f *testing.F) {
	w := fuzzWorld(f)
	r := NewRequest(w.alice, [32]byte{1})
	f.Add(r.MarshalBinary())
	f.Add(r.Marshal())
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRequest(data)
		if err != nil {
			typedErr(t, err)
			return
		}
		if !isJSON(data) && !bytes.Equal(r.MarshalBinary(), data) {
			t.Fatal("does not re-encode")
		}
	})
}

func FuzzParseRevocation(f *testing.F) {
	w := fuzzWorld(f)
	f.Add(must(w.bureau.Revoke(w.alice.ID(), map[SpaceID]uint64{w.space: 3, {1}: 9}, 0, t0)).Marshal())
	f.Add(must(w.bureau.Revoke(w.alice.ID(), nil, 0, t0)).Marshal())
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRevocation(data)
		if err != nil {
			typedErr(t, err)
			return
		}
		if !bytes.Equal(r.Marshal(), data) {
			t.Fatal("does not re-encode")
		}
	})
}

func FuzzParseRouting(f *testing.F) {
	w := fuzzWorld(f)
	f.Add(Routing{Space: w.space, Nonce: w.nonce, Owner: w.bureau.Public().Fingerprint(), Released: []string{w.other.Public().Fingerprint()}, SealedName: []byte("sealed")}.Marshal())
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRouting(data)
		if err != nil {
			typedErr(t, err)
			return
		}
		if !bytes.Equal(r.Marshal(), data) {
			t.Fatal("does not re-encode")
		}
	})
}

func FuzzParseProfile(f *testing.F) {
	f.Add(Profile{Officer: "Zoë", NameSalt: [32]byte{1}}.Marshal())
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseProfile(data)
		if err != nil {
			typedErr(t, err)
			return
		}
		if !bytes.Equal(p.Marshal(), data) {
			t.Fatal("does not re-encode")
		}
	})
}

func FuzzOpenKeystore(f *testing.F) {
	ks := testKeystore(f)
	f.Add(must(SealKeystore(ks, []byte("p"), TestKDFParams, detRand("k"))))
	f.Add(must(SealKeystoreWithKeyFile(ks, make([]byte, 32), detRand("k"))))
	f.Add(must(SealBureau(fuzzWorld(f).bureau, []byte("p"), TestKDFParams, detRand("k"))))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := KeystoreUsesKeyFile(data); err != nil {
			typedErr(t, err)
		}
		if _, err := OpenKeystore(data, []byte("p")); err != nil {
			typedErr(t, err)
		}
		if _, err := OpenKeystoreWithKeyFile(data, make([]byte, 32)); err != nil {
			typedErr(t, err)
		}
		if _, err := OpenBureau(data, []byte("p")); err != nil {
			typedErr(t, err)
		}
	})
}

func FuzzParseText(f *testing.F) {
	w := fuzzWorld(f)
	f.Add(w.bureau.Public().Marshal())
	f.Add(must(NewKeyFile(detRand("k"))))
	f.Add(must(NewMeshKeyFile(detRand("m"))))
	f.Add([]byte(w.alice.ID().String()))
	f.Fuzz(func(t *testing.T, data []byte) {
		if b, err := ParseBureauPublic(data); err == nil {
			if !bytes.Equal(must(ParseBureauPublic(b.Marshal())).Key, b.Key) {
				t.Fatal("bureau public round trip")
			}
		} else {
			typedErr(t, err)
		}
		for _, p := range []func([]byte) ([]byte, error){ParseKeyFile, ParseMeshKeyFile} {
			if k, err := p(data); err != nil {
				typedErr(t, err)
			} else if len(k) != 32 {
				t.Fatal("key length")
			}
		}
		if id, err := ParseDeviceID(string(data)); err == nil {
			if id.String() != string(bytes.ToLower(data)) {
				t.Fatal("non-canonical id accepted")
			}
		} else {
			typedErr(t, err)
		}
	})
}

func FuzzOpenValue(f *testing.F) {
	var k [32]byte
	f.Add(SealValue(&k, nil, []byte("v"), detRand("v")), []byte{})
	w := fuzzWorld(f)
	f.Add(SealName(w.key, w.space, "name", detRand("n")), []byte{})
	f.Fuzz(func(t *testing.T, sealed, ad []byte) {
		if _, err := OpenValue(&k, ad, sealed); err != nil && !errors.Is(err, ErrAuth) {
			t.Fatal(err)
		}
		if _, err := OpenName(w.key, w.space, sealed); err != nil && !errors.Is(err, ErrAuth) {
			t.Fatal(err)
		}
	})
}

func FuzzSegments(f *testing.F) {
	w := fuzzWorld(f)
	env := w.sealSegs(f, 1, [32]byte{}, "record a", "record b", "c")
	f.Add(env)
	f.Add(must(EraseSegments(env, 1)))
	f.Add(must(EraseSegments(env, 0, 1, 2)))
	f.Add(w.seal(f, KindChange, 1, [32]byte{}, []byte("change")))
	pub := w.alice.Public()
	f.Fuzz(func(t *testing.T, env []byte) {
		id := Hash(env)
		infos, serr := Segments(env)
		if serr != nil {
			typedErr(t, serr)
		}
		_, _, verr := Verify(env, pub)
		if verr != nil {
			typedErr(t, verr)
		}
		h, segs, err := OpenSegments(env, w.keys)
		if err != nil {
			typedErr(t, err)
		} else if h.Version == HeaderVersion2 && len(segs) != len(infos) {
			t.Fatal("segment count")
		}
		if serr != nil {
			return
		}
		er, err := EraseSegments(env, 0)
		if err != nil {
			t.Fatalf("erase of a parsed envelope: %v", err)
		}
		if Hash(er) != id {
			t.Fatal("erasure changed the ID")
		}
		if _, _, err := Verify(er, pub); (err == nil) != (verr == nil) {
			t.Fatalf("erasure changed verification: %v then %v", verr, err)
		}
	})
}

func FuzzParseRecordErasure(f *testing.F) {
	w := fuzzWorld(f)
	e := must(NewRecordErasure(w.alice, w.space, w.nonce, w.bureau.Public().Fingerprint(), w.key, "r",
		[]SegmentRef{{Author: w.alice.ID(), Seq: 1, Index: 0}, {Author: w.bob.ID(), Seq: 3, Index: 2}}, nil, t0))
	f.Add(e.Marshal())
	e2 := must(NewRecordErasure(w.alice, w.space, w.nonce, w.bureau.Public().Fingerprint(), w.key, "r",
		[]SegmentRef{{Author: w.alice.ID(), Seq: 1, Index: 0}}, []ChunkRef{{1}, {2}}, t0))
	f.Add(e2.Marshal())
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseRecordErasure(data)
		if err != nil {
			typedErr(t, err)
			return
		}
		if !bytes.Equal(p.Marshal(), data) {
			t.Fatal("does not re-encode")
		}
		if err := p.Verify(w.alice.Public()); err != nil {
			typedErr(t, err)
		}
	})
}
