package agent

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"fieldsync/crypto"
	"fieldsync/internal/datadir"
)

// testBureau is a bureau authority made for a test.
type testBureau struct {
	b *crypto.Bureau
}

func newTestBureau(t testing.TB, name string) *testBureau {
	t.Helper()
	b, err := crypto.NewBureau(name, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testBureau{b: b}
}

var testPassphrase = []byte("correct horse battery staple")

// newTestDevice initialises and enrolls a device in a fresh data directory
// and returns a Config for it. extraTrust are other bureaus it trusts.
func newTestDevice(t testing.TB, tb *testBureau, officer string, role crypto.Role, extraTrust ...*testBureau) Config {
	t.Helper()
	dir := t.TempDir()
	return initTestDevice(t, dir, tb, officer, role, extraTrust...)
}

func initTestDevice(t testing.TB, dir string, tb *testBureau, officer string, role crypto.Role, extraTrust ...*testBureau) Config {
	t.Helper()
	l := Layout{Dir: dir}
	id, err := crypto.NewIdentity(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ks := &crypto.Keystore{Identity: id, Officer: officer, MeshKey: make([]byte, 32)}
	rand.Read(ks.StorageKey[:])
	rand.Read(ks.NameSalt[:])
	rand.Read(ks.MeshKey)
	sealed, err := crypto.SealKeystore(ks, testPassphrase, crypto.TestKDFParams, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.Keystore(), sealed, 0o600); err != nil {
		t.Fatal(err)
	}
	req := crypto.NewRequest(id, crypto.NameCommitment(officer, ks.NameSalt))
	now := time.Now()
	cert, err := tb.b.Issue(req, role, now.Add(-time.Hour), now.Add(365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.Cert(), cert.Marshal(), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := crypto.NewTrustSet(tb.b.Public())
	for _, x := range extraTrust {
		ts.Add(x.b.Public())
	}
	if err := datadir.SaveTrust(l, ts); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Layout = l
	cfg.Unlock = Unlock{Passphrase: testPassphrase}
	cfg.Relay = role == crypto.RoleRelay
	cfg.Bind = "127.0.0.1:0"
	cfg.Profile = "local"
	cfg.MinFreeBytes = 32 << 20 // shared CI disks can be tight; the disk-full test sets its own
	return cfg
}

func openTestAgent(t testing.TB, cfg Config) *Agent {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("open agent: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// transfer copies every certificate and every envelope of every space from
// one agent to another through Ingest, as sync or a bundle would.
func transfer(t testing.TB, from, to *Agent) (added int) {
	t.Helper()
	for _, c := range from.Certificates() {
		if _, err := to.AddCertificate(c); err != nil {
			t.Fatalf("add certificate: %v", err)
		}
	}
	for _, sp := range from.SpaceIDs() {
		err := from.Envelopes(sp, func(env []byte) error {
			ok, err := to.Ingest(env)
			if err != nil {
				return err
			}
			if ok {
				added++
			}
			return nil
		})
		if err != nil {
			t.Fatalf("transfer: %v", err)
		}
	}
	return added
}

// runAgent serves the agent's API until the test ends.
func runAgent(t testing.TB, a *Agent) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	sock := a.cfg.Layout.Socket()
	for i := 0; i < 500; i++ {
		if _, err := os.Stat(sock); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("agent socket %s did not appear", filepath.Base(sock))
}
