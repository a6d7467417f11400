package crypto

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
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

// TestKeystoreMeshKeys: the other accepted mesh keys of a rotation survive a
// round trip (payload v2), a keystore without them stays v1, and a bad
// keyring is refused at seal time.
func TestKeystoreMeshKeys(t *testing.T) {
	ks := testKeystore(t)
	v1 := must(OpenKeystore(must(SealKeystore(ks, []byte("p"), TestKDFParams, detRand("v1"))), []byte("p")))
	if len(v1.MeshKeys) != 0 {
		t.Fatal("v1 keystore grew mesh keys")
	}
	pl := must(ks.payload())
	if pl[0] != keystorePayloadVersion {
		t.Fatalf("keystore without extra keys wrote payload version %d", pl[0])
	}
	ks.MeshKeys = [][]byte{bytes.Repeat([]byte{8}, 32), bytes.Repeat([]byte{9}, 16)}
	got := must(OpenKeystore(must(SealKeystore(ks, []byte("p"), TestKDFParams, detRand("v2"))), []byte("p")))
	sameKeystore(t, ks, got)
	if len(got.MeshKeys) != 2 || !bytes.Equal(got.MeshKeys[0], ks.MeshKeys[0]) || !bytes.Equal(got.MeshKeys[1], ks.MeshKeys[1]) {
		t.Fatalf("mesh keys after round trip: %x", got.MeshKeys)
	}
	fk := must(ParseKeyFile(must(NewKeyFile(detRand("kf")))))
	got = must(OpenKeystoreWithKeyFile(must(SealKeystoreWithKeyFile(ks, fk, detRand("v2k"))), fk))
	if len(got.MeshKeys) != 2 {
		t.Fatal("key-file keystore lost its mesh keys")
	}
	for name, bad := range map[string][][]byte{
		"primary twice": {bytes.Clone(ks.MeshKey)},
		"bad length":    {make([]byte, 7)},
		"too many":      make([][]byte, MaxMeshKeys),
	} {
		k := *ks
		k.MeshKeys = bad
		if name == "too many" {
			for i := range bad {
				bad[i] = bytes.Repeat([]byte{byte(i + 20)}, 32)
			}
		}
		if _, err := SealKeystore(&k, []byte("p"), TestKDFParams, detRand("bad")); err == nil {
			t.Errorf("%s: sealed", name)
		}
	}
	if MeshKeyFingerprint(ks.MeshKey) == MeshKeyFingerprint(ks.MeshKeys[0]) || len(MeshKeyFingerprint(ks.MeshKey)) != 16 {
		t.Fatal("fingerprints")
	}
}

// TestBackupHeader: a backup header opens with its passphrase or key file
// only, and BackupHeaderLen reads its length from the fixed part.
func TestBackupHeader(t *testing.T) {
	payload := []byte("backup header payload")
	data := must(SealBackupHeader(payload, []byte("pass"), TestKDFParams, detRand("bh")))
	n, kf, err := BackupHeaderLen(data[:SealedHeaderSize])
	if err != nil || n != len(data) || kf {
		t.Fatalf("header len %d (want %d) keyfile %v: %v", n, len(data), kf, err)
	}
	if got := must(OpenBackupHeader(data, []byte("pass"))); !bytes.Equal(got, payload) {
		t.Fatal("payload differs")
	}
	_, err = OpenBackupHeader(data, []byte("wrong"))
	wantErr(t, err, ErrWrongPassphrase)
	if _, _, err := BackupHeaderLen(data[:10]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short header: %v", err)
	}
	ks := must(SealKeystore(testKeystore(t), []byte("pass"), TestKDFParams, detRand("ks")))
	if _, _, err := BackupHeaderLen(ks[:SealedHeaderSize]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a keystore taken for a backup: %v", err)
	}
	fk := must(ParseKeyFile(must(NewKeyFile(detRand("kf")))))
	kd := must(SealBackupHeaderWithKeyFile(payload, fk, detRand("bk")))
	if _, kf, _ := BackupHeaderLen(kd[:SealedHeaderSize]); !kf {
		t.Fatal("key-file backup says passphrase")
	}
	if got := must(OpenBackupHeaderWithKeyFile(kd, fk)); !bytes.Equal(got, payload) {
		t.Fatal("key-file payload differs")
	}
}

// keystoreV2Vector is a keystore with payload version 2 (a mesh keyring of
// three keys), kept so that every later build still opens it. Regenerate
// with FIELDSYNC_WRITE_KEYSTORE_VECTOR=1 (it is deterministic).
const keystoreV2Vector = "testdata/keystore/keystore-v2.fsks"

func TestKeystoreV2Vector(t *testing.T) {
	ks := testKeystore(t)
	ks.MeshKeys = [][]byte{bytes.Repeat([]byte{8}, 32), bytes.Repeat([]byte{9}, 16)}
	if os.Getenv("FIELDSYNC_WRITE_KEYSTORE_VECTOR") == "1" {
		data := must(SealKeystore(ks, []byte("correct horse battery staple"), TestKDFParams, detRand("keystore-v2")))
		if err := os.MkdirAll(filepath.Dir(keystoreV2Vector), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keystoreV2Vector, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(keystoreV2Vector)
	if err != nil {
		t.Fatal(err)
	}
	got := must(OpenKeystore(data, []byte("correct horse battery staple")))
	sameKeystore(t, ks, got)
	if len(got.MeshKeys) != 2 || !bytes.Equal(got.MeshKeys[0], ks.MeshKeys[0]) || !bytes.Equal(got.MeshKeys[1], ks.MeshKeys[1]) {
		t.Fatal("the vector's other mesh keys differ")
	}
}
