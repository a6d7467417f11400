package crypto

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// flips are the single-byte changes every tamper test applies at every offset.
var flips = []byte{0x01, 0x80, 0xff}

// tamperCase is one object, the function that checks it (nil error = accepted)
// and, per offset, which errors a change there may give.
type tamperCase struct {
	name  string
	data  []byte
	check func([]byte) error
	// allowed returns the errors acceptable for a change at offset i: the
	// error must match (errors.Is) one of them.
	allowed func(i int) []error
	// truncErr is what every truncation must give.
	truncErr error
}

func runTamper(t *testing.T, c tamperCase) {
	t.Helper()
	if err := c.check(c.data); err != nil {
		t.Fatalf("%s: the untouched object is refused: %v", c.name, err)
	}
	for i := range c.data {
		for _, m := range flips {
			d := bytes.Clone(c.data)
			d[i] ^= m
			err := c.check(d)
			if err == nil {
				t.Fatalf("%s: byte %d ^ %#x accepted", c.name, i, m)
			}
			ok := false
			for _, a := range c.allowed(i) {
				ok = ok || errors.Is(err, a)
			}
			if !ok {
				t.Fatalf("%s: byte %d ^ %#x: got %v, want one of %v", c.name, i, m, err, c.allowed(i))
			}
		}
	}
	for n := 0; n < len(c.data); n++ {
		err := c.check(bytes.Clone(c.data[:n]))
		if !errors.Is(err, c.truncErr) {
			t.Fatalf("%s: truncated to %d: got %v, want %v", c.name, n, err, c.truncErr)
		}
	}
	if err := c.check(append(bytes.Clone(c.data), 0)); err == nil {
		t.Fatalf("%s: a trailing byte is accepted", c.name)
	}
}

func errs(e ...error) []error { return e }

func envelopeTamper(name string, env []byte, author DevicePublic, keys Keyring) tamperCase {
	h, _ := ParseHeader(env)
	return tamperCase{
		name: name, data: env,
		check: func(d []byte) error { _, _, err := Open(d, author, keys); return err },
		allowed: func(i int) []error {
			switch {
			case i == 0:
				return errs(ErrUnknownVersion)
			case i == 3:
				return errs(ErrInvalid)
			case i >= 100 && i < HeaderSize: // body length
				return errs(ErrTruncated, ErrOversize, ErrInvalid)
			case i < HeaderSize:
				// Kind, seq, prev and epoch may break a structural rule
				// (ErrInvalid) before the signature is checked.
				return errs(ErrSignature, ErrInvalid)
			case i < HeaderSize+int(h.BodyLen):
				return errs(ErrSignature)
			default:
				return errs(ErrSignature)
			}
		},
		truncErr: ErrTruncated,
	}
}

func TestTamperEnvelopes(t *testing.T) {
	w := newWorld(t)
	ks := must(WrapKey(w.key, w.space, w.bob.Public(), detRand("eph")))
	r := Routing{Space: w.space, Nonce: w.nonce, Owner: w.bureau.Public().Fingerprint(), SealedName: SealName(w.key, w.space, "case", detRand("n"))}
	e1 := w.seal(t, KindChange, 1, [32]byte{}, []byte("change body"))
	e2 := w.seal(t, KindProfile, 2, Hash(e1), Profile{Officer: "A", NameSalt: w.aliceSalt}.Marshal())
	e3 := w.seal(t, KindKeyShare, 3, Hash(e2), ks)
	e4 := w.seal(t, KindRouting, 4, Hash(e3), r.Marshal())
	for _, c := range []struct {
		name string
		env  []byte
	}{{"change", e1}, {"profile", e2}, {"key share", e3}, {"routing", e4}} {
		runTamper(t, envelopeTamper(c.name+" envelope", c.env, w.alice.Public(), w.keys))
		// The relay path sees the same.
		tc := envelopeTamper(c.name+" envelope (verify)", c.env, w.alice.Public(), nil)
		tc.check = func(d []byte) error { _, _, err := Verify(d, w.alice.Public()); return err }
		runTamper(t, tc)
	}
}

func TestTamperWrappedKey(t *testing.T) {
	w := newWorld(t)
	ks := must(WrapKey(w.key, w.space, w.bob.Public(), detRand("eph")))
	runTamper(t, tamperCase{
		name: "wrapped key", data: ks,
		check: func(d []byte) error { _, err := UnwrapKey(d, w.space, w.bob); return err },
		allowed: func(i int) []error {
			switch {
			case i == 0:
				return errs(ErrUnknownVersion)
			case i < 17:
				return errs(ErrWrongRecipient)
			}
			return errs(ErrAuth)
		},
		truncErr: ErrTruncated,
	})
}

func TestTamperCertificate(t *testing.T) {
	w := newWorld(t)
	mid := t0.Add(1e9)
	data := w.aliceCert.MarshalBinary()
	runTamper(t, tamperCase{
		name: "certificate", data: data,
		check: func(d []byte) error {
			c, err := ParseCertificate(d)
			if err != nil {
				return err
			}
			return c.Verify(w.trust, mid)
		},
		allowed: func(i int) []error {
			switch {
			case i < 5:
				return errs(ErrUnknownVersion)
			case i == 5 || i == 102: // role, bureau name length
				return errs(ErrInvalid, ErrTruncated, ErrOversize, ErrSignature)
			case i < 102: // device and bureau keys
				return errs(ErrSignature)
			case i < 106: // bureau name
				return errs(ErrInvalid, ErrSignature)
			case i < 122: // validity
				return errs(ErrInvalid, ErrSignature)
			}
			return errs(ErrSignature)
		},
		truncErr: ErrTruncated,
	})
	// The JSON form: any change is refused, none panics.
	j := w.aliceCert.Marshal()
	for i := range j {
		d := bytes.Clone(j)
		d[i] ^= 0x01
		c, err := ParseCertificate(d)
		if err == nil {
			err = c.Verify(w.trust, mid)
		}
		if err == nil && !bytes.Equal(c.MarshalBinary(), data) {
			t.Fatalf("json byte %d: a different certificate accepted", i)
		}
	}
}

func TestTamperRequest(t *testing.T) {
	w := newWorld(t)
	runTamper(t, tamperCase{
		name: "request", data: NewRequest(w.alice, [32]byte{5}).MarshalBinary(),
		check: func(d []byte) error { _, err := ParseRequest(d); return err },
		allowed: func(i int) []error {
			if i < 5 {
				return errs(ErrUnknownVersion)
			}
			return errs(ErrSignature)
		},
		truncErr: ErrTruncated,
	})
}

func TestTamperRevocation(t *testing.T) {
	w := newWorld(t)
	rev := must(w.bureau.Revoke(w.alice.ID(), map[SpaceID]uint64{w.space: 5, {1}: 7}, 0, t0))
	runTamper(t, tamperCase{
		name: "revocation", data: rev.Marshal(),
		check: func(d []byte) error {
			r, err := ParseRevocation(d)
			if err != nil {
				return err
			}
			return r.Verify(w.trust)
		},
		allowed: func(i int) []error {
			switch {
			case i < 5:
				return errs(ErrUnknownVersion)
			case i >= 69 && i < 73: // count
				return errs(ErrTruncated, ErrOversize, ErrInvalid)
			case i >= 73 && i < 73+48: // entries: order may break
				return errs(ErrSignature, ErrInvalid)
			}
			return errs(ErrSignature)
		},
		truncErr: ErrTruncated,
	})
}

func TestTamperKeystore(t *testing.T) {
	ks := testKeystore(t)
	for _, c := range []struct {
		name string
		data []byte
		open func([]byte) error
	}{
		{"keystore", must(SealKeystore(ks, []byte("pass"), TestKDFParams, detRand("k"))),
			func(d []byte) error { _, err := OpenKeystore(d, []byte("pass")); return err }},
		{"key-file keystore", must(SealKeystoreWithKeyFile(ks, bytes.Repeat([]byte{3}, 32), detRand("k"))),
			func(d []byte) error { _, err := OpenKeystoreWithKeyFile(d, bytes.Repeat([]byte{3}, 32)); return err }},
		{"bureau file", must(SealBureau(newWorld(t).bureau, []byte("pass"), TestKDFParams, detRand("k"))),
			func(d []byte) error { _, err := OpenBureau(d, []byte("pass")); return err }},
	} {
		runTamper(t, tamperCase{
			name: c.name, data: c.data,
			check: func(d []byte) error {
				err := c.open(d)
				if errors.Is(err, ErrWrongPassphrase) {
					return fmt.Errorf("corruption reported as a wrong passphrase: %v", err)
				}
				return err
			},
			allowed: func(i int) []error {
				switch {
				case i < 5:
					return errs(ErrUnknownVersion)
				case i < fileHeaderSize:
					return errs(ErrInvalid) // header checksum
				}
				return errs(ErrAuth)
			},
			truncErr: ErrTruncated,
		})
	}
}

func TestTamperValue(t *testing.T) {
	var k [32]byte
	sealed := SealValue(&k, []byte("ad"), []byte("value"), detRand("v"))
	runTamper(t, tamperCase{
		name: "sealed value", data: sealed,
		check:    func(d []byte) error { _, err := OpenValue(&k, []byte("ad"), d); return err },
		allowed:  func(int) []error { return errs(ErrAuth) },
		truncErr: ErrAuth,
	})
}
