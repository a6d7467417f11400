package agent

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"testing"

	"fieldsync/crypto"
	"fieldsync/internal/datadir"
)

// TestMeshKeyringPersists: add, use and remove change the running engine's
// keyring and the keystore alike (here a relay's, sealed with a key file),
// so a restart starts with the rotated keyring; an agent started with
// --mesh-key-file refuses them.
func TestMeshKeyringPersists(t *testing.T) {
	tb := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, tb, "relay-1", crypto.RoleRelay)
	ks, err := datadir.LoadKeystore(cfg.Layout, cfg.Unlock)
	if err != nil {
		t.Fatal(err)
	}
	oldKey := bytes.Clone(ks.MeshKey)
	kf, _ := crypto.NewKeyFile(rand.Reader)
	fk, _ := crypto.ParseKeyFile(kf)
	sealed, err := crypto.SealKeystoreWithKeyFile(ks, fk, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := datadir.WriteFile(cfg.Layout.Keystore(), sealed, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Unlock = Unlock{KeyFile: kf}
	a := openTestAgent(t, cfg)
	runAgent(t, a)
	newKey := bytes.Repeat([]byte{0x5a}, 32)
	fp := crypto.MeshKeyFingerprint(newKey)

	kr, err := a.AddMeshKey(newKey)
	if err != nil || !kr.Changed || len(kr.Keys) != 2 || kr.Keys[1].Fingerprint != fp {
		t.Fatalf("add: %+v, %v", kr, err)
	}
	if kr, err := a.AddMeshKey(newKey); err != nil || kr.Changed {
		t.Fatalf("add again: %+v, %v", kr, err)
	}
	if _, err := a.RemoveMeshKey(oldKey); !errors.Is(err, ErrConflict) {
		t.Fatalf("remove the primary: %v", err)
	}
	if _, err := a.UseMeshKey(bytes.Repeat([]byte{1}, 32)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("use an absent key: %v", err)
	}
	if _, err := a.AddMeshKey(make([]byte, 7)); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("add a 7-byte key: %v", err)
	}
	if kr, err := a.UseMeshKey(newKey); err != nil || kr.Keys[0].Fingerprint != fp || !kr.Keys[0].Primary {
		t.Fatalf("use: %+v, %v", kr, err)
	}
	// Persisted, and the running engine agrees.
	ks, err = datadir.LoadKeystore(cfg.Layout, cfg.Unlock)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ks.MeshKey, newKey) || len(ks.MeshKeys) != 1 || !bytes.Equal(ks.MeshKeys[0], oldKey) {
		t.Fatal("keystore after use: wrong keyring")
	}
	if ek := a.engine().MeshKeys(); len(ek) != 2 || !bytes.Equal(ek[0], newKey) {
		t.Fatal("engine after use: wrong keyring")
	}
	if kr, err := a.RemoveMeshKey(oldKey); err != nil || len(kr.Keys) != 1 {
		t.Fatalf("remove: %+v, %v", kr, err)
	}
	ks, err = datadir.LoadKeystore(cfg.Layout, cfg.Unlock)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ks.MeshKey, newKey) || len(ks.MeshKeys) != 0 {
		t.Fatal("keystore after remove: wrong keyring")
	}
	if _, err := crypto.OpenKeystore(mustRead(t, cfg.Layout.Keystore()), testPassphrase); !errors.Is(err, crypto.ErrWrongPassphrase) {
		t.Fatalf("the resealed keystore must still need its key file: %v", err)
	}
	a.Close()

	// --mesh-key-file overrides the keystore: its key alone, no rotation.
	cfg.MeshKey = oldKey
	b := openTestAgent(t, cfg)
	if kr := b.MeshKeys(); !kr.Override || len(kr.Keys) != 1 || kr.Keys[0].Fingerprint != crypto.MeshKeyFingerprint(oldKey) {
		t.Fatalf("override keyring %+v", kr)
	}
	if _, err := b.AddMeshKey(newKey); !errors.Is(err, ErrConflict) {
		t.Fatalf("rotation with an override: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
