package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crypto"
)

// put writes one register field.
func bundlePut(t testing.TB, a *Agent, space, record, field, value string) {
	t.Helper()
	if _, err := a.PutFields(api.RecordPutRequest{Space: space, Record: record, Fields: []api.FieldValue{{Name: field, Value: value}}}); err != nil {
		t.Fatalf("put %s/%s: %v", record, field, err)
	}
}

// carry moves what to lacks from `from` through a want file and a bundle,
// as two officers would on a USB stick, and returns the import's result.
func bundleCarry(t testing.TB, dir string, from, to *Agent) api.BundleImportResult {
	t.Helper()
	n := time.Now().UnixNano()
	want := filepath.Join(dir, fmt.Sprintf("want-%d.fsw", n))
	if _, err := to.WriteWant(api.BundleWantRequest{Out: want}); err != nil {
		t.Fatalf("want: %v", err)
	}
	out := filepath.Join(dir, fmt.Sprintf("bundle-%d.fsb", n))
	exp, err := from.ExportBundle(context.Background(), api.BundleExportRequest{Want: want, Out: out}, nil)
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	_ = exp
	res, err := to.ImportBundle(context.Background(), api.BundleImportRequest{File: out}, nil)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	return res
}

func bundleDigest(t testing.TB, a *Agent, space string) api.Digest {
	t.Helper()
	d, err := a.Digest(api.SpaceRef{Space: space})
	if err != nil {
		t.Fatalf("digest: %v", err)
	}
	return d
}

// Two devices that never share a network converge through bundles carried
// both ways; importing a bundle twice changes nothing.
func TestBundleConverge(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Officer A", crypto.RoleOfficer))
	b := openTestAgent(t, newTestDevice(t, omn, "Officer B", crypto.RoleOfficer))
	dir := t.TempDir()
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		bundlePut(t, a, sp.ID, fmt.Sprintf("r%02d", i), "name", fmt.Sprintf("أمينة %d", i))
	}
	// B has never seen A: its want lists nothing; A's bundle carries a key share for B.
	want := filepath.Join(dir, "b.fsw")
	if _, err := b.WriteWant(api.BundleWantRequest{Out: want}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "a1.fsb")
	exp, err := a.ExportBundle(context.Background(), api.BundleExportRequest{Want: want, Out: out}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if exp.KeyShares < 1 || exp.Recipient != b.dev.String() {
		t.Fatalf("export for B: %d key shares, recipient %q", exp.KeyShares, exp.Recipient)
	}
	res, err := b.ImportBundle(context.Background(), api.BundleImportRequest{File: out}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Added != exp.Envelopes || res.Skipped != 0 {
		t.Fatalf("import: added %d of %d, skipped %d: %+v", res.Added, exp.Envelopes, res.Skipped, res.Skips)
	}
	rec, err := b.GetRecord(api.RecordRef{Space: sp.ID, Record: "r07"})
	if err != nil || rec.Fields["name"].Value != "أمينة 7" {
		t.Fatalf("B reads r07: %+v, %v", rec, err)
	}
	// Both write offline, one field concurrently.
	bundlePut(t, b, sp.ID, "r07", "name", "from B")
	bundlePut(t, a, sp.ID, "r07", "name", "from A")
	bundlePut(t, b, sp.ID, "b01", "village", "حلب")
	bundleCarry(t, dir, b, a)
	bundleCarry(t, dir, a, b)
	da, db := bundleDigest(t, a, sp.ID), bundleDigest(t, b, sp.ID)
	if da != db {
		t.Fatalf("not converged:\nA %+v\nB %+v", da, db)
	}
	rec, _ = b.GetRecord(api.RecordRef{Space: sp.ID, Record: "r07"})
	if !rec.Fields["name"].Conflict || len(rec.Fields["name"].Siblings) != 2 {
		t.Fatalf("the concurrent writes are not both kept: %+v", rec.Fields["name"])
	}
	// The first bundle again: nothing changes.
	again, err := b.ImportBundle(context.Background(), api.BundleImportRequest{File: out}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.Added != 0 || again.AlreadyHeld != exp.Envelopes || again.Certificates != 0 {
		t.Fatalf("second import added %d (held %d of %d), %d certificates", again.Added, again.AlreadyHeld, exp.Envelopes, again.Certificates)
	}
	if d := bundleDigest(t, b, sp.ID); d != db {
		t.Fatalf("second import changed B: %+v -> %+v", db, d)
	}
}

// A bundle with any one byte flipped is refused whole and leaves nothing.
func TestBundleTamperedRefused(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Officer A", crypto.RoleOfficer))
	b := openTestAgent(t, newTestDevice(t, omn, "Officer B", crypto.RoleOfficer))
	dir := t.TempDir()
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		bundlePut(t, a, sp.ID, fmt.Sprintf("r%d", i), "name", strings.Repeat("x", 100))
	}
	out := filepath.Join(dir, "a.fsb")
	if _, err := a.ExportBundle(context.Background(), api.BundleExportRequest{Out: out}, nil); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	certsBefore := len(b.Certificates())
	positions := []int{0, 4, 5, 20, 30, 31, 40, len(data) / 3, len(data) / 2, len(data) - 65, len(data) - 64, len(data) - 1}
	for _, pos := range positions {
		bad := append([]byte(nil), data...)
		bad[pos] ^= 0x04
		f := filepath.Join(dir, fmt.Sprintf("bad-%d.fsb", pos))
		if err := os.WriteFile(f, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := b.ImportBundle(context.Background(), api.BundleImportRequest{File: f}, nil)
		if !errors.Is(err, ErrRefused) {
			t.Fatalf("byte %d of %d flipped: got %v, want a refusal", pos, len(data), err)
		}
		if len(b.SpaceIDs()) != 0 || len(b.Certificates()) != certsBefore {
			t.Fatalf("byte %d flipped: the refused bundle left %d spaces, %d certificates", pos, len(b.SpaceIDs()), len(b.Certificates()))
		}
	}
	// Truncated: refused too.
	f := filepath.Join(dir, "short.fsb")
	os.WriteFile(f, data[:len(data)-1], 0o600)
	if _, err := b.ImportBundle(context.Background(), api.BundleImportRequest{File: f}, nil); !errors.Is(err, ErrRefused) {
		t.Fatalf("truncated: got %v", err)
	}
	// The intact bundle still imports.
	if res, err := b.ImportBundle(context.Background(), api.BundleImportRequest{File: out}, nil); err != nil || res.Added == 0 {
		t.Fatalf("intact bundle: %+v, %v", res, err)
	}
}

// A bundle signed by a device of a bureau this device does not trust is
// refused whole, with a reason that says so.
func TestBundleUntrustedExporter(t *testing.T) {
	omn, kaz := newTestBureau(t, "OMN"), newTestBureau(t, "KAZ")
	a := openTestAgent(t, newTestDevice(t, omn, "Officer A", crypto.RoleOfficer))
	k := openTestAgent(t, newTestDevice(t, kaz, "Officer K", crypto.RoleOfficer))
	dir := t.TempDir()
	sp, err := k.CreateSpace("kaz case", nil)
	if err != nil {
		t.Fatal(err)
	}
	bundlePut(t, k, sp.ID, "r1", "name", "x")
	out := filepath.Join(dir, "k.fsb")
	if _, err := k.ExportBundle(context.Background(), api.BundleExportRequest{Out: out}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = a.ImportBundle(context.Background(), api.BundleImportRequest{File: out}, nil)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "does not trust") {
		t.Fatalf("got %v, want a refusal naming the untrusted bureau", err)
	}
	if len(a.SpaceIDs()) != 0 || len(a.Certificates()) != 1 {
		t.Fatalf("refused bundle left %d spaces, %d certificates", len(a.SpaceIDs()), len(a.Certificates()))
	}
	// Its want file is refused by an exporter the same way.
	want := filepath.Join(dir, "k.fsw")
	if _, err := k.WriteWant(api.BundleWantRequest{Out: want}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ExportBundle(context.Background(), api.BundleExportRequest{Want: want, Out: filepath.Join(dir, "for-k.fsb")}, nil); !errors.Is(err, ErrRefused) {
		t.Fatalf("export for an untrusted want: %v", err)
	}
}

// Envelopes of an unknown author (its certificate is from a bureau the
// importer does not trust) and of a revoked author past its cut-off are
// left out and reported; the rest is imported.
func TestBundleSkipsUnknownAndRevoked(t *testing.T) {
	omn, kaz := newTestBureau(t, "OMN"), newTestBureau(t, "KAZ")
	a := openTestAgent(t, newTestDevice(t, omn, "Officer A", crypto.RoleOfficer, kaz))
	b := openTestAgent(t, newTestDevice(t, omn, "Officer B", crypto.RoleOfficer))
	c := openTestAgent(t, newTestDevice(t, omn, "Officer C", crypto.RoleOfficer))
	k := openTestAgent(t, newTestDevice(t, kaz, "Officer K", crypto.RoleOfficer, omn))
	dir := t.TempDir()
	sp, err := a.CreateSpace("shared", []string{"KAZ"})
	if err != nil {
		t.Fatal(err)
	}
	bundlePut(t, a, sp.ID, "r1", "name", "from A")
	for _, x := range []*Agent{k, c} {
		bundleCarry(t, dir, a, x)
	}
	bundlePut(t, k, sp.ID, "k1", "name", "from K")
	bundlePut(t, c, sp.ID, "c1", "name", "from C")
	bundlePut(t, c, sp.ID, "c2", "name", "from C")
	bundleCarry(t, dir, k, a)
	bundleCarry(t, dir, c, a)
	// The bureau revokes C: what it wrote up to its seq 1 in the space
	// stays valid. B learns it; A, the exporter, has not yet.
	rev, err := omn.b.Revoke(c.dev, map[crypto.SpaceID]uint64{bundleSpaceID(t, sp.ID): 1}, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, cb := range c.Certificates() { // a revocation is taken once its device's certificate is known
		if _, err := b.AddCertificate(cb); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.AddRevocation(rev.Marshal()); err != nil {
		t.Fatal(err)
	}
	res := bundleCarry(t, dir, a, b) // with B's want: A wraps the key to B
	var unknown, revoked bool
	for _, s := range res.Skips {
		switch {
		case s.Author == k.dev.String() && s.Reason == RejectUnknown && s.From == 1:
			unknown = true
		case s.Author == c.dev.String() && s.Reason == RejectRevoked && s.From == 2:
			revoked = true
		case s.Author == a.dev.String():
			t.Fatalf("A's envelopes skipped: %+v", s)
		}
	}
	if !unknown || !revoked || res.Added == 0 || res.SkippedObjects < 1 {
		t.Fatalf("skips %+v (unknown %v revoked %v), added %d, skipped objects %d", res.Skips, unknown, revoked, res.Added, res.SkippedObjects)
	}
	if rec, err := b.GetRecord(api.RecordRef{Space: sp.ID, Record: "r1"}); err != nil || rec.Fields["name"].Value != "from A" {
		t.Fatalf("A's record on B: %+v, %v", rec, err)
	}
	if _, err := b.GetRecord(api.RecordRef{Space: sp.ID, Record: "c1"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a revoked author's change was applied: %v", err)
	}
	st := b.Status()
	if st.Rejected[RejectUnknown] == 0 || st.Rejected[RejectRevoked] == 0 {
		t.Fatalf("status does not count the skipped envelopes: %v", st.Rejected)
	}
}

func bundleSpaceID(t testing.TB, s string) crypto.SpaceID {
	t.Helper()
	id, err := crypto.ParseSpaceID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// BenchmarkBundleImport imports a bundle of 5,000 changes into a fresh
// device (in process): `go test ./agent -run '^$' -bench BundleImport`.
func BenchmarkBundleImport(b *testing.B) {
	omn := newTestBureau(b, "OMN")
	a := openTestAgent(b, newTestDevice(b, omn, "Officer A", crypto.RoleOfficer))
	dir := b.TempDir()
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		b.Fatal(err)
	}
	const n = 5000
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 32 {
				bundlePut(b, a, sp.ID, fmt.Sprintf("r%05d", i), "name", strings.Repeat("أمينة market ", 3))
			}
		}(w)
	}
	wg.Wait()
	out := filepath.Join(dir, "a.fsb")
	exp, err := a.ExportBundle(context.Background(), api.BundleExportRequest{Out: out}, nil)
	if err != nil {
		b.Fatal(err)
	}
	// Write combining puts many of the 32 writers' records in one change:
	// the bundle holds fewer envelopes than records.
	envs := exp.Envelopes
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		to := openTestAgent(b, newTestDevice(b, omn, "Officer B", crypto.RoleOfficer))
		b.StartTimer()
		res, err := to.ImportBundle(context.Background(), api.BundleImportRequest{File: out}, nil)
		if err != nil || res.Added < envs {
			b.Fatalf("%+v %v", res, err)
		}
		b.StopTimer()
		to.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(envs*b.N)/b.Elapsed().Seconds(), "envelopes/s")
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
}

// An export for a want file carries only the spaces released to the
// receiver's bureau, with key shares for it; asking for another is forbidden.
func TestBundleEntitlement(t *testing.T) {
	omn, kaz := newTestBureau(t, "OMN"), newTestBureau(t, "KAZ")
	a := openTestAgent(t, newTestDevice(t, omn, "Officer A", crypto.RoleOfficer, kaz))
	k := openTestAgent(t, newTestDevice(t, kaz, "Officer K", crypto.RoleOfficer, omn))
	dir := t.TempDir()
	own, err := a.CreateSpace("omn only", nil)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := a.CreateSpace("shared", []string{"KAZ"})
	if err != nil {
		t.Fatal(err)
	}
	bundlePut(t, a, own.ID, "secret", "name", "not for KAZ")
	bundlePut(t, a, shared.ID, "r1", "name", "for KAZ")
	want := filepath.Join(dir, "k.fsw")
	if _, err := k.WriteWant(api.BundleWantRequest{Out: want}); err != nil {
		t.Fatal(err)
	}
	_, err = a.ExportBundle(context.Background(), api.BundleExportRequest{Want: want, Space: own.ID, Out: filepath.Join(dir, "own.fsb")}, nil)
	if !errors.Is(err, ErrForbidden) {
		t.Fatalf("export of a space not released to the receiver: %v", err)
	}
	out := filepath.Join(dir, "k.fsb")
	exp, err := a.ExportBundle(context.Background(), api.BundleExportRequest{Want: want, Out: out}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(exp.Spaces) != 1 || exp.Spaces[0].Space != shared.ID || len(exp.NotEntitled) != 1 || exp.NotEntitled[0] != own.ID {
		t.Fatalf("spaces %+v, not entitled %v", exp.Spaces, exp.NotEntitled)
	}
	if _, err := k.ImportBundle(context.Background(), api.BundleImportRequest{File: out}, nil); err != nil {
		t.Fatal(err)
	}
	if rec, err := k.GetRecord(api.RecordRef{Space: shared.ID, Record: "r1"}); err != nil || rec.Fields["name"].Value != "for KAZ" {
		t.Fatalf("K reads the shared space: %+v, %v", rec, err)
	}
	if ids := k.SpaceIDs(); len(ids) != 1 {
		t.Fatalf("K holds %d spaces", len(ids))
	}
}

// A relay carries bundles it cannot read: it imports a bundle made for an
// officer, and that officer reads the space from the relay's own bundle.
func TestBundleThroughRelay(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Officer A", crypto.RoleOfficer))
	b := openTestAgent(t, newTestDevice(t, omn, "Officer B", crypto.RoleOfficer))
	r := openTestAgent(t, newTestDevice(t, omn, "Relay", crypto.RoleRelay))
	dir := t.TempDir()
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	bundlePut(t, a, sp.ID, "r1", "name", "via the relay")
	want := filepath.Join(dir, "b.fsw")
	if _, err := b.WriteWant(api.BundleWantRequest{Out: want}); err != nil {
		t.Fatal(err)
	}
	forB := filepath.Join(dir, "a-for-b.fsb")
	if _, err := a.ExportBundle(context.Background(), api.BundleExportRequest{Want: want, Out: forB}, nil); err != nil {
		t.Fatal(err)
	}
	in, err := r.ImportBundle(context.Background(), api.BundleImportRequest{File: forB}, nil)
	if err != nil || in.Added == 0 || in.Recipient != b.dev.String() {
		t.Fatalf("relay import: %+v, %v", in, err)
	}
	fromRelay := filepath.Join(dir, "relay-for-b.fsb")
	exp, err := r.ExportBundle(context.Background(), api.BundleExportRequest{Want: want, Out: fromRelay}, nil)
	if err != nil || exp.Envelopes != in.Added {
		t.Fatalf("relay export: %+v, %v", exp, err)
	}
	if _, err := b.ImportBundle(context.Background(), api.BundleImportRequest{File: fromRelay}, nil); err != nil {
		t.Fatal(err)
	}
	if rec, err := b.GetRecord(api.RecordRef{Space: sp.ID, Record: "r1"}); err != nil || rec.Fields["name"].Value != "via the relay" {
		t.Fatalf("B reads through the relay: %+v, %v", rec, err)
	}
	if bundleDigest(t, a, sp.ID) != bundleDigest(t, b, sp.ID) {
		t.Fatal("A and B differ")
	}
}
