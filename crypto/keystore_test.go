package crypto

import (
	"bytes"
	"errors"
	"testing"
)

func testKeystore(t testing.TB) *Keystore {
	w := newWorld(t)
	ks := &Keystore{Identity: w.alice, Officer: w.aliceName, NameSalt: w.aliceSalt, MeshKey: bytes.Repeat([]byte{7}, 32)}
	copy(ks.StorageKey[:], "local storage master key 32 byte")
	return ks
}

func sameKeystore(t testing.TB, a, b *Keystore) {
	t.Helper()
	if a.Identity.ID() != b.Identity.ID() || !a.Identity.Public().Equal(b.Identity.Public()) ||
		a.StorageKey != b.StorageKey || !bytes.Equal(a.MeshKey, b.MeshKey) || a.Officer != b.Officer || a.NameSalt != b.NameSalt {
		t.Fatal("keystore differs after round trip")
	}
}

func TestKeystore(t *testing.T) {
	ks := testKeystore(t)
	data := must(SealKeystore(ks, []byte("correct horse"), TestKDFParams, detRand("ks")))
	if bytes.Contains(data, []byte(ks.Officer)) || bytes.Contains(data, ks.StorageKey[:]) {
		t.Fatal("secret in clear")
	}
	got := must(OpenKeystore(data, []byte("correct horse")))
	sameKeystore(t, ks, got)
	if kf := must(KeystoreUsesKeyFile(data)); kf {
		t.Fatal("passphrase keystore says key file")
	}
	if p := must(KeystoreKDFParams(data)); p != TestKDFParams {
		t.Fatal(p)
	}
	_, err := OpenKeystore(data, []byte("wrong horse"))
	wantErr(t, err, ErrWrongPassphrase)
	if errors.Is(err, ErrMalformed) {
		t.Fatal("wrong passphrase reported as malformed")
	}
	// Change passphrase.
	data2 := must(ChangePassphrase(data, []byte("correct horse"), []byte("battery staple"), TestKDFParams, detRand("ks2")))
	sameKeystore(t, ks, must(OpenKeystore(data2, []byte("battery staple"))))
	_, err = OpenKeystore(data2, []byte("correct horse"))
	wantErr(t, err, ErrWrongPassphrase)
	_, err = ChangePassphrase(data, []byte("nope"), []byte("x"), TestKDFParams, detRand("ks3"))
	wantErr(t, err, ErrWrongPassphrase)

	// Key-file mode.
	fk := must(ParseKeyFile(must(NewKeyFile(detRand("kf")))))
	kd := must(SealKeystoreWithKeyFile(ks, fk, detRand("ks4")))
	if kf := must(KeystoreUsesKeyFile(kd)); !kf {
		t.Fatal("key-file keystore says passphrase")
	}
	sameKeystore(t, ks, must(OpenKeystoreWithKeyFile(kd, fk)))
	other := bytes.Repeat([]byte{1}, 32)
	_, err = OpenKeystoreWithKeyFile(kd, other)
	wantErr(t, err, ErrWrongPassphrase)
	_, err = OpenKeystore(kd, []byte("correct horse"))
	wantErr(t, err, ErrWrongPassphrase)
	_, err = OpenKeystoreWithKeyFile(data, fk)
	wantErr(t, err, ErrWrongPassphrase)

	// Zero wipes.
	got.Zero()
	if got.StorageKey != ([32]byte{}) || !bytes.Equal(got.MeshKey, make([]byte, 32)) {
		t.Fatal("zero")
	}
	(*Keystore)(nil).Zero()
}

func TestBureauFile(t *testing.T) {
	w := newWorld(t)
	data := must(SealBureau(w.bureau, []byte("bureau pass"), TestKDFParams, detRand("b")))
	b := must(OpenBureau(data, []byte("bureau pass")))
	if b.Name != "OMN" || b.Public().Fingerprint() != w.bureau.Public().Fingerprint() {
		t.Fatal("bureau round trip")
	}
	_, err := OpenBureau(data, []byte("wrong"))
	wantErr(t, err, ErrWrongPassphrase)
	// A keystore is not a bureau file.
	ksd := must(SealKeystore(testKeystore(t), []byte("bureau pass"), TestKDFParams, detRand("ks")))
	_, err = OpenBureau(ksd, []byte("bureau pass"))
	wantErr(t, err, ErrMalformed, ErrUnknownVersion)
}

func TestKDFParamsBounds(t *testing.T) {
	ks := testKeystore(t)
	for _, p := range []KDFParams{{}, {Time: 1, MemoryKiB: 4, Threads: 1}, {Time: 1, MemoryKiB: MaxKDFMemoryKiB + 1, Threads: 1}, {Time: 99, MemoryKiB: 64, Threads: 1}} {
		if _, err := SealKeystore(ks, []byte("p"), p, detRand("x")); err == nil {
			t.Fatalf("params %+v accepted", p)
		}
	}
}

// TestKeystoreDefaultParams is the one test that pays argon2id at the
// defaults (64 MiB).
func TestKeystoreDefaultParams(t *testing.T) {
	if testing.Short() {
		t.Skip("argon2id at 64 MiB")
	}
	ks := testKeystore(t)
	data := must(SealKeystore(ks, []byte("pass"), DefaultKDFParams, detRand("d")))
	sameKeystore(t, ks, must(OpenKeystore(data, []byte("pass"))))
}
