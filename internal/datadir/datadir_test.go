package datadir

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fieldsync/crypto"
	"fieldsync/internal/deptest"
)

func TestDeps(t *testing.T) {
	deptest.Check(t, "fieldsync/internal/datadir", func(p string) bool {
		return p == "fieldsync/crypto" || strings.HasPrefix(p, "fieldsync/crypto/internal/") || p == "fieldsync/internal/platform" ||
			strings.HasPrefix(p, "golang.org/x/crypto/") || strings.HasPrefix(p, "golang.org/x/sys/")
	})
}

// TestWriteFileReplaces: the new content replaces the old, with the mode
// asked for, and no temporary file is left behind.
func TestWriteFileReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "trust.json")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "new" {
		t.Fatalf("content %q (%v), want new", got, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	onlyFile(t, dir, "trust.json")
}

// TestWriteFileFailureLeavesOld: a write that fails before its rename (here
// the target is a directory, so the rename fails) leaves the old file as it
// was and no temporary file: a crash at any point before the rename is the
// same as this failure.
func TestWriteFileFailureLeavesOld(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cert.json")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	block := filepath.Join(dir, "store")
	if err := os.Mkdir(block, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(block, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(block, []byte("new"), 0o600); err == nil {
		t.Fatal("replacing a non-empty directory: no error")
	}
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Fatalf("old file now %q", got)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Fatalf("temporary file %s left behind", e.Name())
		}
	}
}

func onlyFile(t *testing.T, dir, name string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != name {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("directory holds %v, want only %s", names, name)
	}
}

func newKeystore(t *testing.T) *crypto.Keystore {
	t.Helper()
	id, err := crypto.NewIdentity(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ks := &crypto.Keystore{Identity: id, Officer: "Amina", MeshKey: bytes.Repeat([]byte{7}, 32)}
	rand.Read(ks.StorageKey[:])
	return ks
}

// TestKeystoreRoundTrip seals under a passphrase and under a key file,
// writes, and opens again; a wrong passphrase or key file is refused with
// crypto.ErrWrongPassphrase and opens nothing.
func TestKeystoreRoundTrip(t *testing.T) {
	keyFile, err := crypto.NewKeyFile(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherKeyFile, _ := crypto.NewKeyFile(rand.Reader)
	for _, c := range []struct {
		name         string
		right, wrong Unlock
	}{
		{"passphrase", Unlock{Passphrase: []byte("correct horse")}, Unlock{Passphrase: []byte("wrong horse")}},
		{"key file", Unlock{KeyFile: keyFile}, Unlock{KeyFile: otherKeyFile}},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := Layout{Dir: t.TempDir()}
			ks := newKeystore(t)
			sealed, err := SealKeystore(ks, c.right, crypto.TestKDFParams)
			if err != nil {
				t.Fatal(err)
			}
			if err := WriteKeystore(l, sealed); err != nil {
				t.Fatal(err)
			}
			if fi, _ := os.Stat(l.Keystore()); fi.Mode().Perm() != 0o600 {
				t.Fatalf("keystore mode %v, want 0600", fi.Mode().Perm())
			}
			got, err := LoadKeystore(l, c.right)
			if err != nil {
				t.Fatal(err)
			}
			if got.Identity.ID() != ks.Identity.ID() || got.Officer != ks.Officer || !bytes.Equal(got.MeshKey, ks.MeshKey) || got.StorageKey != ks.StorageKey {
				t.Fatal("the keystore opened is not the one sealed")
			}
			if _, err := LoadKeystore(l, c.wrong); !errors.Is(err, crypto.ErrWrongPassphrase) {
				t.Fatalf("wrong unlock: got %v, want ErrWrongPassphrase", err)
			}
		})
	}
	if _, err := LoadKeystore(Layout{Dir: t.TempDir()}, Unlock{Passphrase: []byte("x")}); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("no keystore: got %v, want ErrNotInitialized", err)
	}
	if _, err := SealKeystore(newKeystore(t), Unlock{}, crypto.TestKDFParams); err == nil {
		t.Fatal("sealing under neither a passphrase nor a key file: no error")
	}
}

// TestResealKeystore keeps the passphrase and argon2id parameters of the
// file on disk, and refuses when the file no longer opens with what
// unlocked it (its passphrase was changed) or holds another device.
func TestResealKeystore(t *testing.T) {
	l := Layout{Dir: t.TempDir()}
	u := Unlock{Passphrase: []byte("pass")}
	ks := newKeystore(t)
	sealed, err := SealKeystore(ks, u, crypto.TestKDFParams)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteKeystore(l, sealed); err != nil {
		t.Fatal(err)
	}
	next := *ks
	next.MeshKey = bytes.Repeat([]byte{9}, 32)
	if err := ResealKeystore(l, &next, u); err != nil {
		t.Fatal(err)
	}
	got, err := LoadKeystore(l, u)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.MeshKey, next.MeshKey) {
		t.Fatal("the resealed keystore does not hold the new mesh key")
	}
	if p, err := KeystoreKDF(l); err != nil || p != crypto.TestKDFParams {
		t.Fatalf("argon2id parameters after resealing: %+v (%v), want the original ones", p, err)
	}
	if err := ResealKeystore(l, &next, Unlock{Passphrase: []byte("changed")}); !errors.Is(err, crypto.ErrWrongPassphrase) {
		t.Fatalf("reseal with a passphrase the file no longer opens with: got %v", err)
	}
	if err := ResealKeystore(l, newKeystore(t), u); err == nil || !strings.Contains(err.Error(), "another device") {
		t.Fatalf("reseal another device's keystore: got %v", err)
	}
}

func TestTrustRoundTrip(t *testing.T) {
	l := Layout{Dir: t.TempDir()}
	ts, err := LoadTrust(l)
	if err != nil || len(ts.List()) != 0 {
		t.Fatalf("no trust list: %v, %d bureaus", err, len(ts.List()))
	}
	if _, err := LoadCert(l); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("no certificate: got %v, want ErrNotEnrolled", err)
	}
	if err := SaveTrust(l, ts); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTrust(l); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultDir(t *testing.T) {
	home := func() (string, error) { return "/home/amina", nil }
	noHome := func() (string, error) { return "", fs.ErrNotExist }
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	for _, c := range []struct {
		goos string
		env  map[string]string
		home func() (string, error)
		want string
	}{
		{"linux", nil, home, filepath.Join("/home/amina", ".local", "share", "fieldsync")},
		{"linux", map[string]string{"XDG_DATA_HOME": "/data"}, noHome, filepath.Join("/data", "fieldsync")},
		{"darwin", map[string]string{"XDG_DATA_HOME": "/data"}, home, filepath.Join("/home/amina", "Library", "Application Support", "fieldsync")},
		{"windows", map[string]string{"LocalAppData": `C:\Users\amina\AppData\Local`}, noHome, filepath.Join(`C:\Users\amina\AppData\Local`, "fieldsync")},
		{"windows", nil, home, ""},
		{"linux", nil, noHome, ""},
	} {
		got, err := defaultDir(c.goos, env(c.env), c.home)
		if got != c.want || (c.want == "") != (err != nil) {
			t.Errorf("%s %v: got %q, %v; want %q", c.goos, c.env, got, err, c.want)
		}
	}
}
