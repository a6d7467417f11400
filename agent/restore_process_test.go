package agent_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/internal/harness"
)

type restoreJSON struct {
	Device       string `json:"device"`
	OldDevice    string `json:"old_device"`
	Enrolled     bool   `json:"enrolled"`
	Revoked      bool   `json:"revoked"`
	CutoffSource string `json:"cutoff_source"`
	Cutoffs      []struct {
		Space string `json:"space"`
		Seq   uint64 `json:"seq"`
	} `json:"cutoffs"`
	CaughtUpFrom []string `json:"caught_up_from"`
}

func put(ctx context.Context, t *testing.T, n *harness.Node, space, rec, val string) {
	t.Helper()
	if _, err := n.Client().RecordPut(ctx, api.RecordPutRequest{Space: space, Record: rec, Fields: []api.FieldValue{{Name: "v", Value: val}}}); err != nil {
		t.Fatalf("put %s on %s: %v", rec, n.Name, err)
	}
}

func waitConverged(ctx context.Context, t *testing.T, what, space string, nodes ...*harness.Node) {
	t.Helper()
	if _, err := harness.WaitUntil(ctx, 2*time.Minute, what, func() (bool, error) {
		return harness.Converged(ctx, space, nodes...)
	}); err != nil {
		t.Fatal(err)
	}
}

// TestBackupRestoreNoReusedSeq: write on A, back A up, write more on A
// that reach B, lose A; restore A's backup into a fresh data directory as
// A' (a new device, enrolled, A revoked at what the mesh holds), start A',
// which catches up from B, and write on A'. Every (author, seq) in the mesh
// names one envelope only, A's changes up to its cut-off (those after the
// backup included) stay valid everywhere, and A' writes as itself.
func TestBackupRestoreNoReusedSeq(t *testing.T) {
	exe := buildFieldsync(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cl, err := harness.New(ctx, exe, t.TempDir(), "OMN")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.StopAll()
	a, err := cl.Add(ctx, "a", "Amina", false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cl.Add(ctx, "b", "Boris", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Start(ctx, a, ""); err != nil {
		t.Fatal(err)
	}
	if err := cl.Start(ctx, b, "", a.Bind); err != nil {
		t.Fatal(err)
	}
	sp, err := a.Client().SpaceCreate(ctx, api.SpaceCreateRequest{Name: "case"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		put(ctx, t, a, sp.ID, fmt.Sprintf("r%d", i), "before the backup")
	}
	waitConverged(ctx, t, "b to hold a's first writes", sp.ID, a, b)

	backup := filepath.Join(cl.Root, "a.fsbackup")
	var info api.BackupInfo
	if err := cl.CLIJSON(ctx, a.Dir, &info, "backup", "--out", backup); err != nil {
		t.Fatal(err)
	}
	var backupHead uint64
	for _, h := range info.Heads {
		if h.Space == sp.ID {
			backupHead = h.Seq
		}
	}
	if backupHead == 0 || info.Entries == 0 {
		t.Fatalf("backup info %+v: no head for the space", info)
	}
	if _, err := cl.CLI(ctx, a.Dir, "backup", "--out", backup); err == nil {
		t.Fatal("backup overwrote an existing file")
	}
	const after = 5
	for i := 6; i <= 5+after; i++ {
		put(ctx, t, a, sp.ID, fmt.Sprintf("r%d", i), "after the backup")
	}
	waitConverged(ctx, t, "b to hold a's writes made after the backup", sp.ID, a, b)
	// A is lost.
	if err := cl.Stop(a); err != nil {
		t.Fatal(err)
	}
	// Restore refuses A's own data directory: it holds a device.
	if _, err := cl.CLI(ctx, a.Dir, "restore", "--bureau-key", cl.Bureau, backup); err == nil || !strings.Contains(err.Error(), "holds device") {
		t.Fatalf("restore into a's data directory: %v", err)
	}

	bind, err := harness.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	a2 := &harness.Node{Name: "a2", Dir: filepath.Join(cl.Root, "a2"), Bind: bind}
	cl.Nodes[a2.Name] = a2
	var res restoreJSON
	if err := cl.CLIJSON(ctx, a2.Dir, &res, "restore", "--bureau-key", cl.Bureau, "--join", b.Bind, "--profile", "local", backup); err != nil {
		t.Fatal(err)
	}
	if !res.Enrolled || !res.Revoked || res.CutoffSource != "peers" || res.Device == res.OldDevice || len(res.CaughtUpFrom) != 1 {
		t.Fatalf("restore: %+v", res)
	}
	// The cut-off is what the mesh held: the writes after the backup too.
	if len(res.Cutoffs) != 1 || res.Cutoffs[0].Space != sp.ID || res.Cutoffs[0].Seq != backupHead+after {
		t.Fatalf("cut-offs %+v, want %s at seq %d (backup head %d + %d)", res.Cutoffs, sp.ID, backupHead+after, backupHead, after)
	}

	if err := cl.Start(ctx, a2, "", b.Bind); err != nil {
		t.Fatal(err)
	}
	waitConverged(ctx, t, "a2 to catch up from b", sp.ID, a2, b)
	put(ctx, t, a2, sp.ID, "r6", "written by the new incarnation")
	put(ctx, t, a2, sp.ID, "r12", "new record from a2")
	waitConverged(ctx, t, "b to hold a2's writes", sp.ID, a2, b)

	// Every (author, seq) names one change: gather every node's history.
	seen := map[string]string{} // "author/seq" -> ops
	authors := map[string]int{}
	for _, n := range []*harness.Node{a2, b} {
		recs, err := n.Client().RecordList(ctx, api.SpaceRef{Space: sp.ID})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			hist, err := n.Client().History(ctx, api.RecordRef{Space: sp.ID, Record: r.ID})
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range hist {
				if h.Signature != "valid" {
					t.Errorf("%s: %s by %s seq %d: signature %s", n.Name, r.ID, h.Author, h.Seq, h.Signature)
				}
				key := fmt.Sprintf("%s/%d", h.Author, h.Seq)
				ops := fmt.Sprint(h.Ops)
				if prev, ok := seen[key]; ok && prev != ops {
					t.Errorf("(author, seq) %s names two changes: %s and %s", key, prev, ops)
				}
				if _, ok := seen[key]; !ok {
					authors[h.Author]++
				}
				seen[key] = ops
			}
		}
	}
	if authors[res.OldDevice] < 5+after || authors[res.Device] < 2 {
		t.Fatalf("changes by author: %v (old %s, new %s)", authors, res.OldDevice, res.Device)
	}
	// The old device's changes stay valid on both, those after the backup
	// included; a2's write on r6 builds on the old device's.
	for _, n := range []*harness.Node{a2, b} {
		r, err := n.Client().RecordGet(ctx, api.RecordRef{Space: sp.ID, Record: "r10"})
		if err != nil || r.Fields["v"].Value != "after the backup" {
			t.Fatalf("%s: r10 = %+v, %v", n.Name, r.Fields["v"], err)
		}
		r, err = n.Client().RecordGet(ctx, api.RecordRef{Space: sp.ID, Record: "r6"})
		if err != nil || r.Fields["v"].Value != "written by the new incarnation" || r.Fields["v"].Conflict {
			t.Fatalf("%s: r6 = %+v, %v", n.Name, r.Fields["v"], err)
		}
		st, err := n.Client().Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Forks) != 0 {
			t.Fatalf("%s reports forks: %+v", n.Name, st.Forks)
		}
	}

	// The revocation reached b with the restore: the old device, back from
	// the dead with its old data directory, is refused, and what it writes
	// now reaches nobody.
	st, err := b.Client().Status(ctx)
	if err != nil || st.Sync == nil {
		t.Fatalf("b status: %+v, %v", st.Sync, err)
	}
	refusedBefore := st.Sync.AuthFailures
	if err := cl.Start(ctx, a, "", b.Bind); err != nil {
		t.Fatal(err)
	}
	put(ctx, t, a, sp.ID, "r99", "written by the revoked device")
	if _, err := harness.WaitUntil(ctx, 2*time.Minute, "b to refuse the revoked device's stream", func() (bool, error) {
		st, err := b.Client().Status(ctx)
		return err == nil && st.Sync != nil && st.Sync.AuthFailures > refusedBefore, err
	}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*harness.Node{a2, b} {
		_, err := n.Client().RecordGet(ctx, api.RecordRef{Space: sp.ID, Record: "r99"})
		var ae *api.APIError
		if !errors.As(err, &ae) || ae.Code != api.CodeNotFound {
			t.Fatalf("%s: the revoked device's new write: %v (want not found)", n.Name, err)
		}
	}
}
