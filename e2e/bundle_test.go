package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fieldsync/agent"
	"fieldsync/agent/api"
	"fieldsync/bench/w1"
	"fieldsync/bench/w1agent"
	"fieldsync/internal/harness"
)

// Sneakernet (docs/bundle.md) with real agent processes that never share a
// network: each runs with its own mesh key and joins no one, and changes
// travel only as files made by `fieldsync bundle`.

// isolated starts an agent on a mesh of its own (its own mesh key, no join).
func isolated(t *testing.T, ctx context.Context, cl *harness.Cluster, n *harness.Node) {
	t.Helper()
	key := filepath.Join(cl.Root, n.Name+".mesh.key")
	if _, err := cl.CLI(ctx, "", "mesh-key", "new", "--out", key); err != nil {
		t.Fatal(err)
	}
	if err := cl.Start(ctx, n, key); err != nil {
		t.Fatal(err)
	}
}

// carryFile moves what `to` lacks from `from`: to's want file, from's
// bundle made for it, imported by to. It returns the import's result.
func carryFile(t testing.TB, ctx context.Context, cl *harness.Cluster, from, to *harness.Node, name string) api.BundleImportResult {
	t.Helper()
	want := filepath.Join(cl.Root, name+".fsw")
	out := filepath.Join(cl.Root, name+".fsb")
	if _, err := cl.CLI(ctx, to.Dir, "bundle", "want", "--out", want); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CLI(ctx, from.Dir, "bundle", "export", "--want", want, "--out", out); err != nil {
		t.Fatal(err)
	}
	var res api.BundleImportResult
	if err := cl.CLIJSON(ctx, to.Dir, &res, "bundle", "import", out); err != nil {
		t.Fatal(err)
	}
	return res
}

func cliDigest(t testing.TB, ctx context.Context, cl *harness.Cluster, n *harness.Node, space string) api.Digest {
	t.Helper()
	var d api.Digest
	if err := cl.CLIJSON(ctx, n.Dir, &d, "space", "digest", space); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestBundleSneakernet: two agents that never share a network converge
// through bundles carried both ways (equal `space digest`); importing the
// same bundle twice changes nothing; a bundle with any one byte flipped is
// refused whole and leaves nothing behind.
func TestBundleSneakernet(t *testing.T) {
	cl, ctx := newCluster(t)
	var nodes []*harness.Node
	for _, name := range []string{"a", "b", "c"} {
		n, err := cl.Add(ctx, name, "Officer "+strings.ToUpper(name), false)
		if err != nil {
			t.Fatal(err)
		}
		isolated(t, ctx, cl, n)
		nodes = append(nodes, n)
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	var sp api.Space
	if err := cl.CLIJSON(ctx, a.Dir, &sp, "space", "create", "قضية"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := cl.CLI(ctx, a.Dir, "record", "put", sp.ID, fmt.Sprintf("r%d", i), "name=أمينة "+fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	first := carryFile(t, ctx, cl, a, b, "a-to-b-1")
	if first.Added == 0 || first.Skipped != 0 {
		t.Fatalf("first bundle: %+v", first)
	}
	// Offline on both sides, one field concurrently.
	for _, w := range []struct {
		n    *harness.Node
		args []string
	}{{b, []string{"r1", "name=from B"}}, {a, []string{"r1", "name=from A"}}, {b, []string{"b1", "village=حلب"}}, {a, []string{"a1", "village=Alep"}}} {
		if _, err := cl.CLI(ctx, w.n.Dir, append([]string{"record", "put", sp.ID}, w.args...)...); err != nil {
			t.Fatal(err)
		}
	}
	carryFile(t, ctx, cl, b, a, "b-to-a")
	carryFile(t, ctx, cl, a, b, "a-to-b-2")
	da, db := cliDigest(t, ctx, cl, a, sp.ID), cliDigest(t, ctx, cl, b, sp.ID)
	if da != db {
		t.Fatalf("not converged:\na %+v\nb %+v", da, db)
	}
	var rec api.Record
	if err := cl.CLIJSON(ctx, b.Dir, &rec, "record", "get", sp.ID, "r1"); err != nil {
		t.Fatal(err)
	}
	if f := rec.Fields["name"]; !f.Conflict || len(f.Siblings) != 2 {
		t.Fatalf("concurrent writes not both kept: %+v", f)
	}

	// The same bundle twice: nothing changes.
	var again api.BundleImportResult
	if err := cl.CLIJSON(ctx, b.Dir, &again, "bundle", "import", filepath.Join(cl.Root, "a-to-b-2.fsb")); err != nil {
		t.Fatal(err)
	}
	if again.Added != 0 || again.AlreadyHeld != again.Envelopes || again.Envelopes == 0 {
		t.Fatalf("second import: %+v", again)
	}
	if d := cliDigest(t, ctx, cl, b, sp.ID); d != db {
		t.Fatalf("second import changed b: %+v -> %+v", db, d)
	}

	// One flipped byte anywhere: refused whole, nothing left on c.
	full := filepath.Join(cl.Root, "a-all.fsb")
	if _, err := cl.CLI(ctx, a.Dir, "bundle", "export", "--out", full); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	for _, pos := range []int{0, 7, 33, len(data) / 4, len(data) / 2, 3 * len(data) / 4, len(data) - 70, len(data) - 1} {
		bad := append([]byte(nil), data...)
		bad[pos] ^= 0x10
		f := filepath.Join(cl.Root, fmt.Sprintf("bad-%d.fsb", pos))
		if err := os.WriteFile(f, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := cl.CLI(ctx, c.Dir, "--json", "bundle", "import", f)
		if err == nil || !strings.Contains(err.Error(), "exit status 1") || !strings.Contains(err.Error(), `"code":"refused"`) {
			t.Fatalf("byte %d of %d flipped: %v", pos, len(data), err)
		}
		var spaces []api.Space
		if err := cl.CLIJSON(ctx, c.Dir, &spaces, "space", "list"); err != nil {
			t.Fatal(err)
		}
		var st api.Status
		if err := cl.CLIJSON(ctx, c.Dir, &st, "status"); err != nil {
			t.Fatal(err)
		}
		if len(spaces) != 0 || len(st.Rejected) != 0 {
			t.Fatalf("byte %d flipped: c holds %d spaces, rejected %v", pos, len(spaces), st.Rejected)
		}
	}
	// The intact file imports on c (it holds no key: it was made for anyone).
	var ok api.BundleImportResult
	if err := cl.CLIJSON(ctx, c.Dir, &ok, "bundle", "import", full); err != nil {
		t.Fatal(err)
	}
	if ok.Added != ok.Envelopes || ok.Envelopes == 0 {
		t.Fatalf("intact bundle on c: %+v", ok)
	}
}

// TestBundleUntrustedExporter: a bundle from a device whose bureau this
// device does not trust is refused, saying so, and nothing is stored.
func TestBundleUntrustedExporter(t *testing.T) {
	cl, ctx := newCluster(t)
	a, err := cl.Add(ctx, "a", "Officer A", false)
	if err != nil {
		t.Fatal(err)
	}
	isolated(t, ctx, cl, a)
	kroot := filepath.Join(cl.Root, "kaz")
	if err := os.MkdirAll(kroot, 0o700); err != nil {
		t.Fatal(err)
	}
	kcl, err := harness.New(ctx, binary, kroot, "KAZ")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kcl.StopAll)
	k, err := kcl.Add(ctx, "k", "Officer K", false)
	if err != nil {
		t.Fatal(err)
	}
	isolated(t, ctx, kcl, k)
	var sp api.Space
	if err := kcl.CLIJSON(ctx, k.Dir, &sp, "space", "create", "kaz case"); err != nil {
		t.Fatal(err)
	}
	if _, err := kcl.CLI(ctx, k.Dir, "record", "put", sp.ID, "r1", "name=x"); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(cl.Root, "k.fsb")
	if _, err := kcl.CLI(ctx, k.Dir, "bundle", "export", "--out", out); err != nil {
		t.Fatal(err)
	}
	_, err = cl.CLI(ctx, a.Dir, "bundle", "import", out)
	if err == nil || !strings.Contains(err.Error(), "exit status 1") || !strings.Contains(err.Error(), "which this device does not trust") {
		t.Fatalf("untrusted exporter: %v", err)
	}
	var spaces []api.Space
	if err := cl.CLIJSON(ctx, a.Dir, &spaces, "space", "list"); err != nil {
		t.Fatal(err)
	}
	if len(spaces) != 0 {
		t.Fatalf("a refused bundle left %d spaces", len(spaces))
	}
}

// TestBundleSkipsRevokedAndUnknown: envelopes whose author the importer
// cannot accept — revoked past its cut-off — are skipped and reported; the
// rest of the bundle is stored, including those of a bureau the importer
// does not trust but the space's owner released it to (scoped trust; before
// issue 12 they were skipped as unknown).
func TestBundleSkipsRevokedAndUnknown(t *testing.T) {
	cl, ctx := newCluster(t)
	kroot := filepath.Join(cl.Root, "kaz")
	if err := os.MkdirAll(kroot, 0o700); err != nil {
		t.Fatal(err)
	}
	kcl, err := harness.New(ctx, binary, kroot, "KAZ")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kcl.StopAll)
	add := func(c *harness.Cluster, name string) *harness.Node {
		n, err := c.Add(ctx, name, "Officer "+strings.ToUpper(name), false)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	a, b, c, d, k := add(cl, "a"), add(cl, "b"), add(cl, "c"), add(cl, "d"), add(kcl, "k")
	// A and K trust each other's bureau; B and C trust only their own.
	omnPub, kazPub := filepath.Join(cl.Root, "omn.pub"), filepath.Join(cl.Root, "kaz.pub")
	if _, err := cl.CLI(ctx, "", "bureau", "export", "--out", omnPub, cl.Bureau); err != nil {
		t.Fatal(err)
	}
	if _, err := kcl.CLI(ctx, "", "bureau", "export", "--out", kazPub, kcl.Bureau); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CLI(ctx, a.Dir, "trust", "add", kazPub); err != nil {
		t.Fatal(err)
	}
	if _, err := kcl.CLI(ctx, k.Dir, "trust", "add", omnPub); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*harness.Node{a, b, c, d} {
		isolated(t, ctx, cl, n)
	}
	isolated(t, ctx, kcl, k)

	var sp api.Space
	if err := cl.CLIJSON(ctx, a.Dir, &sp, "space", "create", "--release-to", "KAZ", "shared"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CLI(ctx, a.Dir, "record", "put", sp.ID, "r1", "name=from A"); err != nil {
		t.Fatal(err)
	}
	carryFile(t, ctx, cl, a, c, "a-to-c")
	// K's want and bundle go through files too (another bureau's tools).
	kwant, kout := filepath.Join(cl.Root, "k.fsw"), filepath.Join(cl.Root, "a-to-k.fsb")
	if _, err := kcl.CLI(ctx, k.Dir, "bundle", "want", "--out", kwant); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CLI(ctx, a.Dir, "bundle", "export", "--want", kwant, "--out", kout); err != nil {
		t.Fatal(err)
	}
	if _, err := kcl.CLI(ctx, k.Dir, "bundle", "import", kout); err != nil {
		t.Fatal(err)
	}
	if _, err := kcl.CLI(ctx, k.Dir, "record", "put", sp.ID, "k1", "name=from K"); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"c1", "c2"} {
		if _, err := cl.CLI(ctx, c.Dir, "record", "put", sp.ID, r, "name=from C"); err != nil {
			t.Fatal(err)
		}
	}
	kback := filepath.Join(cl.Root, "k-to-a.fsb")
	if _, err := kcl.CLI(ctx, k.Dir, "bundle", "export", "--out", kback); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CLI(ctx, a.Dir, "bundle", "import", kback); err != nil {
		t.Fatal(err)
	}
	carryFile(t, ctx, cl, c, a, "c-to-a")

	// D, which got C's log from C, revokes C keeping only its seq 1 (its
	// profile) in the space, and passes the revocation to B; A, the
	// exporter, has not heard of it and still holds C's seqs 2 and 3.
	carryFile(t, ctx, cl, c, d, "c-to-d")
	var cst api.Status
	if err := cl.CLIJSON(ctx, c.Dir, &cst, "status"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CLI(ctx, d.Dir, "revoke", "--bureau-key", cl.Bureau, "--cutoff", sp.ID+":1", cst.Device.ID); err != nil {
		t.Fatal(err)
	}
	if first := carryFile(t, ctx, cl, d, b, "d-to-b"); first.Revocations != 1 {
		t.Fatalf("d's bundle to b: %+v", first)
	}
	res := carryFile(t, ctx, cl, a, b, "a-to-b")
	// B does not trust KAZ, but the space's owner released it to KAZ: B
	// takes K's certificate and envelopes for this space (scoped trust,
	// docs/crypto.md "Pinning and scoped trust"); C's past its cut-off are
	// left out.
	var revoked bool
	for _, s := range res.Skips {
		switch {
		case s.Author == cst.Device.ID && s.Reason == agent.RejectRevoked && s.From == 2 && s.To == 3:
			revoked = true
		default:
			t.Fatalf("unexpected skip %+v", s)
		}
	}
	if !revoked || res.Added == 0 {
		t.Fatalf("import on b: %+v", res)
	}
	var krec api.Record
	if err := cl.CLIJSON(ctx, b.Dir, &krec, "record", "get", sp.ID, "k1"); err != nil || krec.Fields["name"].Value != "from K" {
		t.Fatalf("b reads K's record (scoped trust): %+v, %v", krec, err)
	}
	var rec api.Record
	if err := cl.CLIJSON(ctx, b.Dir, &rec, "record", "get", sp.ID, "r1"); err != nil || rec.Fields["name"].Value != "from A" {
		t.Fatalf("b reads A's record: %+v, %v", rec, err)
	}
	if _, err := cl.CLI(ctx, b.Dir, "record", "get", sp.ID, "c1"); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("b holds the revoked author's change: %v", err)
	}
	var bst api.Status
	if err := cl.CLIJSON(ctx, b.Dir, &bst, "status"); err != nil {
		t.Fatal(err)
	}
	if bst.Rejected[agent.RejectRevoked] == 0 {
		t.Fatalf("b's status does not count the skipped envelopes: %v", bst.Rejected)
	}
}

// BenchmarkBundleW1 measures bundles on BENCH.md's W1 workload (size S, or
// L with FIELDSYNC_BENCH_SIZE=L) with two agent processes that never share
// a network: the initial bundle A -> B (every record), then the offline
// phase's deltas both ways. Run it once:
//
//	go test ./e2e -run '^$' -bench BundleW1 -benchtime 1x
func BenchmarkBundleW1(b *testing.B) {
	size, err := w1.SizeByName(os.Getenv("FIELDSYNC_BENCH_SIZE"))
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		runBundleW1(b, size)
	}
}

func runBundleW1(b *testing.B, size w1.Size) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	cl, err := harness.New(ctx, binary, b.TempDir(), "OMN")
	if err != nil {
		b.Fatal(err)
	}
	defer cl.StopAll()
	na, err := cl.Add(ctx, "a", "Officer A", false)
	if err != nil {
		b.Fatal(err)
	}
	nb, err := cl.Add(ctx, "b", "Officer B", false)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []*harness.Node{na, nb} {
		key := filepath.Join(cl.Root, n.Name+".mesh.key")
		if _, err := cl.CLI(ctx, "", "mesh-key", "new", "--out", key); err != nil {
			b.Fatal(err)
		}
		if err := cl.Start(ctx, n, key); err != nil {
			b.Fatal(err)
		}
	}
	w := w1.Generate(size)
	ca, cb := na.Client(), nb.Client()
	sp, err := ca.SpaceCreate(ctx, api.SpaceCreateRequest{Name: "w1"})
	if err != nil {
		b.Fatal(err)
	}
	err = w1agent.Parallel(len(w.Initial), func(i int) error {
		fields := make([]api.FieldValue, len(w1.Fields))
		for f, name := range w1.Fields {
			fields[f] = api.FieldValue{Name: name, Value: w.Initial[i][f]}
		}
		_, err := ca.RecordPut(ctx, api.RecordPutRequest{Space: sp.ID, Record: w1.RecordID(i), Fields: fields})
		return err
	}, func(i int) int { return i })
	if err != nil {
		b.Fatal(err)
	}
	type leg struct {
		name               string
		envelopes          int
		bytes              int64
		export, importTime time.Duration
		rssMB              float64 // the importing agent's peak RSS so far
	}
	var legs []leg
	move := func(name string, from, to *harness.Node) {
		want := filepath.Join(cl.Root, name+".fsw")
		out := filepath.Join(cl.Root, name+".fsb")
		if _, err := to.Client().BundleWant(ctx, api.BundleWantRequest{Out: want}); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		exp, err := from.Client().BundleExport(ctx, api.BundleExportRequest{Want: want, Out: out}, nil)
		if err != nil {
			b.Fatal(err)
		}
		te := time.Since(t0)
		t0 = time.Now()
		imp, err := to.Client().BundleImport(ctx, api.BundleImportRequest{File: out}, nil)
		if err != nil {
			b.Fatal(err)
		}
		ti := time.Since(t0)
		if imp.Added != exp.Envelopes {
			b.Fatalf("%s: imported %d of %d envelopes: %+v", name, imp.Added, exp.Envelopes, imp.Skips)
		}
		legs = append(legs, leg{name: name, envelopes: exp.Envelopes, bytes: exp.Bytes, export: te, importTime: ti, rssMB: to.PeakRSSMB()})
	}
	b.ResetTimer()
	move("initial A->B", na, nb)
	// Offline phase: each side writes its updates alone.
	pair := func(p w1.Pick) int { return p.Record*len(w1.Fields) + p.Field }
	for _, side := range []struct {
		c     *api.Client
		picks []w1.Pick
	}{{ca, w.A}, {cb, w.B}} {
		err := w1agent.Parallel(len(side.picks), func(i int) error {
			p := side.picks[i]
			_, err := side.c.RecordPut(ctx, api.RecordPutRequest{Space: sp.ID, Record: w1.RecordID(p.Record),
				Fields: []api.FieldValue{{Name: w1.Fields[p.Field], Value: p.Value}}})
			return err
		}, func(i int) int { return pair(side.picks[i]) })
		if err != nil {
			b.Fatal(err)
		}
	}
	move("delta A->B", na, nb)
	move("delta B->A", nb, na)
	b.StopTimer()
	da, _ := ca.SpaceDigest(ctx, api.SpaceRef{Space: sp.ID})
	db, _ := cb.SpaceDigest(ctx, api.SpaceRef{Space: sp.ID})
	if da != db {
		b.Fatalf("not converged: %+v %+v", da, db)
	}
	conflicts, err := ca.ConflictsList(ctx, api.ConflictsListRequest{Space: sp.ID})
	if err != nil {
		b.Fatal(err)
	}
	var report strings.Builder
	fmt.Fprintf(&report, "W1-%s bundles (two agents, no network; conflicts %d of %d expected):\n", size.Name, len(conflicts), len(w.Conflicts))
	fmt.Fprintf(&report, "  %-14s %10s %10s %10s %10s %12s %12s %12s\n", "leg", "envelopes", "MB", "export s", "import s", "export env/s", "import env/s", "importer RSS")
	for _, l := range legs {
		fmt.Fprintf(&report, "  %-14s %10d %10.2f %10.2f %10.2f %12.0f %12.0f %9.0f MB\n", l.name, l.envelopes, float64(l.bytes)/1e6,
			l.export.Seconds(), l.importTime.Seconds(), float64(l.envelopes)/l.export.Seconds(), float64(l.envelopes)/l.importTime.Seconds(), l.rssMB)
		key := strings.NewReplacer(" ", "_", ">", "").Replace(l.name)
		b.ReportMetric(float64(l.bytes)/1e6, key+"_MB")
		b.ReportMetric(l.export.Seconds(), key+"_export_s")
		b.ReportMetric(l.importTime.Seconds(), key+"_import_s")
	}
	fmt.Fprint(os.Stdout, report.String())
	if j, err := json.Marshal(map[string]any{"size": size.Name, "conflicts": len(conflicts)}); err == nil {
		b.Logf("%s", j)
	}
}
