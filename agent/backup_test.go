package agent

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"strconv"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crypto"
	"fieldsync/internal/datadir"
)

// backupBytes takes a backup of a in memory, as the API serves it.
func backupBytes(t *testing.T, a *Agent) []byte {
	t.Helper()
	hdr, key, id, err := a.backupHeader()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	info, err := a.writeBackup(&buf, hdr, &key, id)
	if err != nil {
		t.Fatal(err)
	}
	if info.Bytes != int64(buf.Len()) || info.Entries == 0 {
		t.Fatalf("backup info %+v for %d bytes", info, buf.Len())
	}
	if err := CheckBackupFraming(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("framing of a good backup: %v", err)
	}
	return buf.Bytes()
}

func restoreInto(t *testing.T, tb *testBureau, data []byte, dir string) (*RestoreResult, error) {
	t.Helper()
	b, err := OpenBackup(bytes.NewReader(data), Unlock{Passphrase: testPassphrase})
	if err != nil {
		return nil, err
	}
	return Restore(RestoreConfig{
		Layout: Layout{Dir: dir}, Unlock: Unlock{Passphrase: testPassphrase}, KDF: crypto.TestKDFParams,
		Enroll: func(req *crypto.Request, role crypto.Role) (*crypto.Certificate, error) {
			now := time.Now()
			return tb.b.Issue(req, role, now.Add(-time.Hour), now.Add(time.Hour))
		},
	}, b)
}

// TestBackupRestoreRoundTrip: a restored store opens as a new device with
// the old one's records, envelopes and heads; the backup hides its
// contents; the new device writes from seq 1 under its own ID.
func TestBackupRestoreRoundTrip(t *testing.T) {
	tb := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, tb, "Canary Officer", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"first", "second CANARY-VALUE"} {
		if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "r1", Fields: []api.FieldValue{{Name: "f", Value: v}}}); err != nil {
			t.Fatal(err)
		}
	}
	data := backupBytes(t, a)
	for _, secret := range []string{"CANARY-VALUE", "Canary Officer", "case"} {
		if bytes.Contains(data, []byte(secret)) {
			t.Fatalf("%q in clear in the backup", secret)
		}
	}
	oldHead := a.authorHeads(a.dev)[mustSpaceID(t, sp.ID)]

	dir := t.TempDir()
	res, err := restoreInto(t, tb, data, dir)
	if err != nil {
		t.Fatal(err)
	}
	if res.Device == a.dev || res.OldDevice != a.dev || res.Cert == nil {
		t.Fatalf("restore result %+v", res)
	}
	if got := res.OldHeads[mustSpaceID(t, sp.ID)]; got != oldHead || got == 0 {
		t.Fatalf("old heads %v, want %d", res.OldHeads, oldHead)
	}
	cfg := newTestDevice(t, tb, "unused", crypto.RoleOfficer)
	cfg.Layout = Layout{Dir: dir}
	b := openTestAgent(t, cfg)
	if b.dev != res.Device || b.ks.Officer != "Canary Officer" || !bytes.Equal(b.ks.MeshKey, a.ks.MeshKey) {
		t.Fatal("restored keystore: wrong device, officer or mesh key")
	}
	r, err := b.GetRecord(api.RecordRef{Space: sp.ID, Record: "r1"})
	if err != nil || r.Fields["f"].Value != "second CANARY-VALUE" {
		t.Fatalf("restored record %+v: %v", r.Fields, err)
	}
	if _, err := b.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "r1", Fields: []api.FieldValue{{Name: "f", Value: "third"}}}); err != nil {
		t.Fatal(err)
	}
	heads := b.authorHeads(b.dev)[mustSpaceID(t, sp.ID)]
	if heads == 0 || heads > 2 { // its profile, then its change
		t.Fatalf("new device's head %d: it must start its own log at seq 1", heads)
	}
	if b.authorHeads(a.dev)[mustSpaceID(t, sp.ID)] != oldHead {
		t.Fatal("the old device's log changed")
	}
	// A data directory that holds a device is refused; so is a running one.
	if _, err := restoreInto(t, tb, data, dir); !errors.Is(err, ErrRestoreTarget) {
		t.Fatalf("restore over a device: %v", err)
	}
}

func mustSpaceID(t *testing.T, s string) crypto.SpaceID {
	t.Helper()
	id, err := crypto.ParseSpaceID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestBackupDamageRefused: a wrong passphrase, a truncated file, a flipped
// bit and a frame from another backup are each refused with a clear error,
// and a failed restore leaves the data directory empty.
func TestBackupDamageRefused(t *testing.T) {
	tb := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, tb, "Officer", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "r1", Fields: []api.FieldValue{{Name: "f", Value: "v"}}}); err != nil {
		t.Fatal(err)
	}
	data := backupBytes(t, a)
	other := backupBytes(t, a)

	if _, err := OpenBackup(bytes.NewReader(data), Unlock{Passphrase: []byte("wrong")}); !errors.Is(err, crypto.ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	hdrLen, _, err := crypto.BackupHeaderLen(data[:crypto.SealedHeaderSize])
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(data)
	flipped[len(flipped)-20] ^= 1
	// Splice: the other backup's first frame (manifest) in place of ours.
	spliced := append(bytes.Clone(data[:hdrLen]), other[hdrLen:]...)
	cases := map[string][]byte{
		"empty":        {},
		"header only":  data[:hdrLen],
		"cut in frame": data[:len(data)-7],
		"no trailer":   data[:len(data)-60],
		"trailing":     append(bytes.Clone(data), 0),
		"flipped bit":  flipped,
		"spliced":      spliced,
	}
	for name, bad := range cases {
		dir := t.TempDir()
		_, err := restoreInto(t, tb, bad, dir)
		if !errors.Is(err, crypto.ErrMalformed) {
			t.Errorf("%s: %v (want malformed)", name, err)
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Errorf("%s: a failed restore left %d files", name, len(left))
		}
		if name != "flipped bit" && name != "spliced" && CheckBackupFraming(bytes.NewReader(bad)) == nil {
			t.Errorf("%s: framing check passed", name)
		}
	}
}

// TestBackupIsConsistentUnderWrites: a backup taken while writers commit is
// one snapshot: the restored store acknowledges no envelope it lacks, and
// rebuilding its materialized state from its envelopes changes nothing.
func TestBackupIsConsistentUnderWrites(t *testing.T) {
	tb := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, tb, "Officer", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan error, 4)
	for w := 0; w < 4; w++ {
		go func(w int) {
			for i := 0; ; i++ {
				select {
				case <-stop:
					done <- nil
					return
				default:
				}
				rec := "r" + string(rune('a'+w)) + string(rune('a'+i%7))
				if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: rec, Fields: []api.FieldValue{{Name: "f", Value: time.Now().String()}}}); err != nil {
					done <- err
					return
				}
			}
		}(w)
	}
	time.Sleep(50 * time.Millisecond) // let the writers get going; correctness does not depend on it
	data := backupBytes(t, a)
	close(stop)
	for w := 0; w < 4; w++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	if _, err := restoreInto(t, tb, data, dir); err != nil {
		t.Fatal(err)
	}
	cfg := newTestDevice(t, tb, "unused", crypto.RoleOfficer)
	cfg.Layout = Layout{Dir: dir}
	b := openTestAgent(t, cfg)
	if st := b.Status(); len(st.Gaps) != 0 || len(st.Missing) != 0 || st.CorruptValues != 0 {
		t.Fatalf("restored store: gaps %+v, missing %+v, corrupt %d", st.Gaps, st.Missing, st.CorruptValues)
	}
	before, err := b.Digest(api.SpaceRef{Space: sp.ID})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	var out bytes.Buffer
	if err := Repair(t.Context(), cfg, &out); err != nil {
		t.Fatalf("repair: %v\n%s", err, out.String())
	}
	b = openTestAgent(t, cfg)
	after, err := b.Digest(api.SpaceRef{Space: sp.ID})
	if err != nil {
		t.Fatal(err)
	}
	if before != after {
		t.Fatalf("rebuilding the restored store changed it: %+v -> %+v", before, after)
	}
	if before.Count < 2 {
		t.Fatalf("only %d envelopes in the backup", before.Count)
	}
}

// TestBackupWithKeyFile: a relay unlocked by a key file backs up under that
// key file; the passphrase does not open it; restored, it is a relay again,
// sealed with the same key file.
func TestBackupWithKeyFile(t *testing.T) {
	tb := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, tb, "relay-1", crypto.RoleRelay)
	ks, err := datadir.LoadKeystore(cfg.Layout, cfg.Unlock)
	if err != nil {
		t.Fatal(err)
	}
	kf, err := crypto.NewKeyFile(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	fk, err := crypto.ParseKeyFile(kf)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := crypto.SealKeystoreWithKeyFile(ks, fk, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := datadir.WriteFile(cfg.Layout.Keystore(), sealed, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Unlock = Unlock{KeyFile: kf}
	a := openTestAgent(t, cfg)
	data := backupBytes(t, a)
	if _, err := OpenBackup(bytes.NewReader(data), Unlock{Passphrase: testPassphrase}); !errors.Is(err, crypto.ErrWrongPassphrase) {
		t.Fatalf("a key-file backup opened with a passphrase: %v", err)
	}
	b, err := OpenBackup(bytes.NewReader(data), Unlock{KeyFile: kf})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	res, err := Restore(RestoreConfig{Layout: Layout{Dir: dir}, Unlock: Unlock{KeyFile: kf},
		Enroll: func(req *crypto.Request, role crypto.Role) (*crypto.Certificate, error) {
			if role != crypto.RoleRelay {
				t.Errorf("enrolled as %s, want relay", role)
			}
			now := time.Now()
			return tb.b.Issue(req, role, now.Add(-time.Hour), now.Add(time.Hour))
		}}, b)
	if err != nil {
		t.Fatal(err)
	}
	rcfg := cfg
	rcfg.Layout = Layout{Dir: dir}
	r := openTestAgent(t, rcfg)
	if r.dev != res.Device || r.cert.Role != crypto.RoleRelay {
		t.Fatalf("restored relay: device %s role %s", r.dev, r.cert.Role)
	}
}

// BenchmarkBackupRestore measures a backup of a store of 2,000 records
// (one change each, ~300-byte values) and its restore into a new data
// directory; it reports the store's entries and the backup's size.
func BenchmarkBackupRestore(b *testing.B) {
	tb := newTestBureau(b, "OMN")
	a := openTestAgent(b, newTestDevice(b, tb, "Officer", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		b.Fatal(err)
	}
	val := string(bytes.Repeat([]byte("v"), 300))
	for i := 0; i < 2000; i++ {
		if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "r" + strconv.Itoa(i), Fields: []api.FieldValue{{Name: "f", Value: val}}}); err != nil {
			b.Fatal(err)
		}
	}
	var data []byte
	b.Run("backup", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			hdr, key, id, err := a.backupHeader()
			if err != nil {
				b.Fatal(err)
			}
			var buf bytes.Buffer
			info, err := a.writeBackup(&buf, hdr, &key, id)
			if err != nil {
				b.Fatal(err)
			}
			data = buf.Bytes()
			b.SetBytes(info.Bytes)
			b.ReportMetric(float64(info.Entries), "entries")
		}
	})
	b.Run("restore", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			dir := b.TempDir()
			b.StartTimer()
			r, err := OpenBackup(bytes.NewReader(data), Unlock{Passphrase: testPassphrase})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := Restore(RestoreConfig{Layout: Layout{Dir: dir}, Unlock: Unlock{Passphrase: testPassphrase}, KDF: crypto.TestKDFParams}, r); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
		}
	})
}

// backupVector is a version-1 backup kept in testdata, so that every later
// fieldsync still reads it. Regenerate (only with a format change that
// keeps reading version 1) with FIELDSYNC_WRITE_BACKUP_VECTOR=1.
const backupVector = "testdata/backup-v1.fsbackup"

func TestBackupFormatV1Vector(t *testing.T) {
	if os.Getenv("FIELDSYNC_WRITE_BACKUP_VECTOR") == "1" {
		tb := newTestBureau(t, "OMN")
		a := openTestAgent(t, newTestDevice(t, tb, "Vector Officer", crypto.RoleOfficer))
		sp, err := a.CreateSpace("vector case", nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "r1", Fields: []api.FieldValue{{Name: "f", Value: "vector value"}}}); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(backupVector, backupBytes(t, a), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(backupVector)
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenBackup(bytes.NewReader(data), Unlock{Passphrase: testPassphrase})
	if err != nil {
		t.Fatal(err)
	}
	m := b.manifest
	if m.Format != 1 || m.Officer != "Vector Officer" || len(m.Heads) != 1 || m.Heads[0].Seq == 0 || len(m.MeshKeys) != 1 {
		t.Fatalf("manifest %+v", m)
	}
	var records, envelopes int
	found := false
	n, err := b.entries(func(k, v []byte) error {
		switch k[0] {
		case pfxRecord:
			records++
			found = found || bytes.Contains(v, []byte("vector value"))
		case pfxEnvelope:
			envelopes++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if records != 1 || envelopes < 2 || !found || n < records+envelopes {
		t.Fatalf("%d entries: %d records (value found %v), %d envelopes", n, records, found, envelopes)
	}
}
