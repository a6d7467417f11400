package e2e

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"fieldsync/agent/api"
)

// TestPruneCollectsChunks, with real processes: a photo attached and
// replaced, then `fieldsync compact --min-age 0s --json`, reports the old
// photo's chunks collected; the store holds only the live photo's chunks
// (status), and the live photo still opens byte for byte.
func TestPruneCollectsChunks(t *testing.T) {
	cl, ctx := newCluster(t)
	a, err := cl.Add(ctx, "a", "Officer a", false)
	if err != nil {
		t.Fatal(err)
	}
	isolated(t, ctx, cl, a)
	var sp api.Space
	if err := cl.CLIJSON(ctx, a.Dir, &sp, "space", "create", "case"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var live []byte
	var res api.AttachResult
	for i := range 2 {
		b := make([]byte, 1<<20)
		rand.Read(b)
		p := filepath.Join(dir, "photo.jpg")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := cl.CLIJSON(ctx, a.Dir, &res, "record", "attach", sp.ID, "p1", "photo", "@"+p); err != nil {
			t.Fatalf("attach %d: %v", i, err)
		}
		live = b
	}
	var before api.Status
	if err := cl.CLIJSON(ctx, a.Dir, &before, "status"); err != nil {
		t.Fatal(err)
	}
	var c api.Compacted
	if err := cl.CLIJSON(ctx, a.Dir, &c, "compact", "--min-age", "0s", sp.ID); err != nil {
		t.Fatal(err)
	}
	var after api.Status
	if err := cl.CLIJSON(ctx, a.Dir, &after, "status"); err != nil {
		t.Fatal(err)
	}
	old := before.Attachments.Chunks - res.Attachment.Chunks
	t.Logf("compact: %+v; chunks held %d -> %d", c.Spaces[0], before.Attachments.Chunks, after.Attachments.Chunks)
	if old <= 0 || c.Spaces[0].ChunksCollected != old || after.Attachments.Chunks != res.Attachment.Chunks ||
		after.Attachments.Collected != uint64(old) || !c.Reclaimed {
		t.Fatalf("compact %+v; chunks held %d -> %d, want %d collected", c, before.Attachments.Chunks, after.Attachments.Chunks, old)
	}
	out := filepath.Join(dir, "out.jpg")
	if _, err := cl.CLI(ctx, a.Dir, "record", "open", "-o", out, sp.ID, "p1", "photo"); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, live) {
		t.Fatal("the live photo does not open as attached")
	}
}
