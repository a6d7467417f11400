package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"fieldsync/agent/api"
	"fieldsync/crypto"
	"fieldsync/internal/datadir"
	fsync "fieldsync/sync"
)

// writeRandomFile writes n pseudo-random bytes (seeded: deterministic).
func writeRandomFile(t testing.TB, path string, n int, seed uint64) []byte {
	t.Helper()
	r := mrand.New(mrand.NewPCG(seed, seed^0x5eed))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestAttachChunkerCutsAreLocal(t *testing.T) {
	dir := t.TempDir()
	orig := writeRandomFile(t, filepath.Join(dir, "a"), 8<<20, 1)
	cuts := func(b []byte) (out []int) {
		for off := 0; off < len(b); {
			n := cutPoint(b[off:min(len(b), off+cdcMax)])
			if n < cdcMin && off+n != len(b) || n > cdcMax {
				t.Fatalf("chunk of %d bytes at %d", n, off)
			}
			off += n
			out = append(out, off)
		}
		return out
	}
	a := cuts(orig)
	edited := append([]byte(nil), orig...)
	for i := 4 << 20; i < 4<<20+1000; i++ {
		edited[i] ^= 0xff
	}
	b := cuts(edited)
	same := 0
	set := map[int]bool{}
	for _, c := range a {
		set[c] = true
	}
	for _, c := range b {
		if set[c] {
			same++
		}
	}
	t.Logf("8 MiB: %d chunks (avg %d KiB); after a 1000-byte edit %d of %d cut points unchanged", len(a), (8<<20)/len(a)>>10, same, len(b))
	if len(a) < 8 || len(a) > 128 {
		t.Fatalf("%d chunks for 8 MiB", len(a))
	}
	if same < len(b)-2 {
		t.Fatalf("an edit in the middle moved %d cut points", len(b)-same)
	}
}

// TestAttachDedupAndEdit: the same file attached to two records stores its
// chunks once; an edit in the middle stores only the chunks it touched;
// open writes the file back with its hash; record get describes it.
func TestAttachDedupAndEdit(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	photo := filepath.Join(dir, "passport.jpg")
	data := writeRandomFile(t, photo, 6<<20, 2)
	r1, err := a.Attach(api.AttachRequest{Space: sp.ID, Record: "p1", Field: "passport", Path: photo, Mime: "image/jpeg"})
	if err != nil {
		t.Fatal(err)
	}
	if r1.ReusedChunk != 0 || r1.NewChunks < 6 || r1.Attachment.SHA256 != sha(data) || r1.Attachment.State != "yes" || r1.Attachment.Name != "passport.jpg" {
		t.Fatalf("first attach: %+v", r1)
	}
	r2, err := a.Attach(api.AttachRequest{Space: sp.ID, Record: "p2", Field: "scan", Path: photo})
	if err != nil {
		t.Fatal(err)
	}
	if r2.NewChunks != 0 || r2.ReusedChunk != r1.NewChunks {
		t.Fatalf("same file on a second record stored %d new chunks (reused %d of %d)", r2.NewChunks, r2.ReusedChunk, r1.NewChunks)
	}
	if got := a.AttachStatus().Chunks; got != r1.NewChunks {
		t.Fatalf("store holds %d chunks, want %d", got, r1.NewChunks)
	}
	if m, err := a.MetricsText(); err != nil || !strings.Contains(m, fmt.Sprintf("\nfieldsync_attachment_chunks %d\n", r1.NewChunks)) {
		t.Fatalf("metrics (%v) lack fieldsync_attachment_chunks %d", err, r1.NewChunks)
	}
	// Edit 1000 bytes in the middle.
	for i := 3 << 20; i < 3<<20+1000; i++ {
		data[i] ^= 0x5a
	}
	if err := os.WriteFile(photo, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r3, err := a.Attach(api.AttachRequest{Space: sp.ID, Record: "p1", Field: "passport", Path: photo})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("6 MiB in %d chunks; after a 1000-byte edit: %d new chunks (%d bytes), %d reused", r1.NewChunks, r3.NewChunks, r3.NewBytes, r3.ReusedChunk)
	if r3.NewChunks < 1 || r3.NewChunks > 2 || r3.NewBytes > 2*cdcMax+2*crypto.ChunkOverhead {
		t.Fatalf("edit stored %d new chunks, %d bytes", r3.NewChunks, r3.NewBytes)
	}
	out := filepath.Join(dir, "out.jpg")
	res, err := a.Open(context.Background(), api.OpenRequest{Space: sp.ID, Record: "p1", Field: "passport", Out: out})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if sha(got) != sha(data) || res.Attachment.SHA256 != sha(data) {
		t.Fatal("opened file differs from the edited one")
	}
	rec, err := a.GetRecord(api.RecordRef{Space: sp.ID, Record: "p2"})
	if err != nil {
		t.Fatal(err)
	}
	if at := rec.Fields["scan"].Attachment; at == nil || at.Size != 6<<20 || at.Held != at.Chunks || at.State != "yes" {
		t.Fatalf("record get: %+v", rec.Fields["scan"])
	}
	// A plain value is not an attachment.
	if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "p3", Fields: []api.FieldValue{{Name: "name", Value: "x"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Open(context.Background(), api.OpenRequest{Space: sp.ID, Record: "p3", Field: "name", Out: out}); err == nil {
		t.Fatal("opened a plain value as an attachment")
	}
}

// cutter is a fsync.Faults that closes sync streams once the bytes through
// them (both directions, all streams) pass each of its cut points.
type cutter struct {
	mu    sync.Mutex
	total atomic.Int64
	cuts  []int64
	done  atomic.Int32
}

func (c *cutter) Drop(from, to string) bool { return false }

func (c *cutter) WrapSync(from, to string, conn net.Conn) net.Conn {
	return &cutConn{Conn: conn, c: c}
}

type cutConn struct {
	net.Conn
	c *cutter
}

func (cc *cutConn) NetConn() net.Conn { return cc.Conn }

func (cc *cutConn) count(n int) error {
	t := cc.c.total.Add(int64(n))
	cc.c.mu.Lock()
	defer cc.c.mu.Unlock()
	if len(cc.c.cuts) > 0 && t >= cc.c.cuts[0] {
		cc.c.cuts = cc.c.cuts[1:]
		cc.c.done.Add(1)
		_ = cc.Conn.Close()
		return net.ErrClosed
	}
	return nil
}

func (cc *cutConn) Read(p []byte) (int, error) {
	n, err := cc.Conn.Read(p)
	if err == nil {
		if cerr := cc.count(n); cerr != nil {
			return 0, cerr
		}
	}
	return n, err
}

func (cc *cutConn) Write(p []byte) (int, error) {
	n, err := cc.Conn.Write(p)
	if err == nil {
		if cerr := cc.count(n); cerr != nil {
			return n, cerr
		}
	}
	return n, err
}

// TestAttachSyncResumesAfterCuts: A attaches a 50 MiB file; B (all mode)
// fetches it while its sync streams are cut twice mid-transfer. The chunks a
// cut round delivered are kept: A sends less than 1.2× the file in all, and
// B opens the file with the right hash.
func TestAttachSyncResumesAfterCuts(t *testing.T) {
	const size = 50 << 20
	_, cfgA, cfgB := omnOfficers(t)
	cut := &cutter{cuts: []int64{15 << 20, 35 << 20}}
	cfgA.Faults, cfgB.Faults = cut, cut
	a := startSyncAgent(t, cfgA)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data := writeRandomFile(t, filepath.Join(dir, "scan.pdf"), size, 3)
	res, err := a.Attach(api.AttachRequest{Space: sp.ID, Record: "p1", Field: "scan", Path: filepath.Join(dir, "scan.pdf")})
	if err != nil {
		t.Fatal(err)
	}
	cfgB.Join = []string{a.SyncAddr()}
	b := startSyncAgent(t, cfgB)
	waitFor(t, "b to hold every chunk", func() bool {
		r, err := b.GetRecord(api.RecordRef{Space: sp.ID, Record: "p1"})
		return err == nil && r.Fields["scan"].Attachment != nil && r.Fields["scan"].Attachment.State == "yes"
	})
	out := filepath.Join(dir, "out.pdf")
	if _, err := b.Open(context.Background(), api.OpenRequest{Space: sp.ID, Record: "p1", Field: "scan", Out: out}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if sha(got) != sha(data) {
		t.Fatal("b's copy differs")
	}
	sa, sb := a.engine().Stats(), b.engine().Stats()
	t.Logf("50 MiB in %d chunks; cuts: %d; A sent %d chunks, %d chunk bytes, %d sync bytes on the socket; B stored %d chunks (%d bytes)",
		res.NewChunks, cut.done.Load(), sa.Chunks.Sent, sa.Chunks.BytesSent, sa.SyncBytesOut, sb.Chunks.Added, sb.Chunks.BytesIn)
	if cut.done.Load() != 2 {
		t.Fatalf("%d cuts, want 2", cut.done.Load())
	}
	if sa.SyncBytesOut+sb.SyncBytesOut > size*12/10 {
		t.Fatalf("%d bytes on the wire for a %d-byte file: resent from zero", sa.SyncBytesOut+sb.SyncBytesOut, size)
	}
	if sb.Chunks.Added != uint64(res.NewChunks) {
		t.Fatalf("b stored %d chunks, want %d", sb.Chunks.Added, res.NewChunks)
	}
}

// TestAttachOnDemand: an on-demand device gets the manifest but no chunk
// until `record open` asks; then it fetches them and opens the file.
func TestAttachOnDemand(t *testing.T) {
	_, cfgA, cfgB := omnOfficers(t)
	cfgB.Attachments = AttachOnDemand
	a := startSyncAgent(t, cfgA)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data := writeRandomFile(t, filepath.Join(dir, "plate.png"), 3<<20, 4)
	if _, err := a.Attach(api.AttachRequest{Space: sp.ID, Record: "car", Field: "plate", Path: filepath.Join(dir, "plate.png")}); err != nil {
		t.Fatal(err)
	}
	cfgB.Join = []string{a.SyncAddr()}
	b := startSyncAgent(t, cfgB)
	waitFor(t, "b to get the manifest", func() bool {
		r, err := b.GetRecord(api.RecordRef{Space: sp.ID, Record: "car"})
		return err == nil && r.Fields["plate"].Attachment != nil
	})
	// Two explicit rounds after the manifest arrived: still no chunk.
	for range 2 {
		if _, err := b.engine().SyncWith(context.Background(), fsync.PeerID(a.DeviceID())); err != nil {
			t.Fatal(err)
		}
	}
	r, _ := b.GetRecord(api.RecordRef{Space: sp.ID, Record: "car"})
	if at := r.Fields["plate"].Attachment; at.Held != 0 || at.State != "no" || b.AttachStatus().Chunks != 0 {
		t.Fatalf("on-demand device fetched chunks before open: %+v", at)
	}
	out := filepath.Join(dir, "out.png")
	if _, err := b.Open(context.Background(), api.OpenRequest{Space: sp.ID, Record: "car", Field: "plate", Out: out}); err == nil {
		t.Fatal("open without waiting succeeded with no chunk held")
	}
	res, err := b.Open(context.Background(), api.OpenRequest{Space: sp.ID, Record: "car", Field: "plate", Out: out, WaitMS: 60_000})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if sha(got) != sha(data) || res.Attachment.State != "yes" {
		t.Fatalf("opened %+v", res)
	}
}

// tamperChunks serves chunks with one byte flipped: a hostile member.
type tamperChunks struct{ syncAdapter }

func (t tamperChunks) GetChunk(space fsync.SpaceID, ref fsync.ChunkRef) ([]byte, error) {
	b, err := t.syncAdapter.GetChunk(space, ref)
	if err == nil {
		b[len(b)/2] ^= 1
	}
	return b, err
}

// TestAttachTamperedChunkRejected: a member whose chunks do not match their
// refs gets every one refused and counted; nothing of them is stored.
func TestAttachTamperedChunkRejected(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfgA := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	cfgV := newTestDevice(t, omn, "Victor", crypto.RoleOfficer)
	ks, _ := datadir.LoadKeystore(cfgA.Layout, cfgA.Unlock)
	cfgV.MeshKey = ks.MeshKey
	a := openTestAgent(t, cfgA) // its store serves the liar; its own engine never runs
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeRandomFile(t, filepath.Join(dir, "f"), 2<<20, 5)
	res, err := a.Attach(api.AttachRequest{Space: sp.ID, Record: "r", Field: "f", Path: filepath.Join(dir, "f")})
	if err != nil {
		t.Fatal(err)
	}
	v := startSyncAgent(t, cfgV)
	liar, err := fsync.New(fsync.Config{
		Store: tamperChunks{syncAdapter{a}}, Auth: syncAdapter{a}, Profile: fsync.ProfileLocal, BindAddr: "127.0.0.1:0",
		Advertise: "127.0.0.1:1", MeshKeys: [][]byte{ks.MeshKey}, SyncInterval: -1, DisableHints: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := liar.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = liar.Close() })
	// Round 1 brings the space (envelopes); round 2 its chunks.
	for range 2 {
		if _, err := liar.SyncWithAddr(context.Background(), fsync.PeerID(v.DeviceID()), v.SyncAddr()); err != nil {
			t.Fatalf("round with the liar: %v", err)
		}
	}
	// The liar, once authenticated, also joins V's mesh, so rounds of
	// their own may run beside these: wait (bounded) for every chunk to
	// have been refused at least once, then check none was stored.
	waitFor(t, "every tampered chunk to be refused", func() bool { return v.engine().Stats().Rejected["chunk"] >= uint64(res.NewChunks) })
	st := v.engine().Stats()
	t.Logf("%d chunks offered tampered: victim refused %d (%v), stored %d", res.NewChunks, st.Rejected["chunk"], st.Chunks, v.AttachStatus().Chunks)
	if n := v.AttachStatus().Chunks; n != 0 || st.Chunks.Added != 0 {
		t.Fatalf("victim stored %d tampered chunks", n)
	}
	if v.Status().Rejected["chunk"] < res.NewChunks {
		t.Fatalf("status.rejected: %v", v.Status().Rejected)
	}
}
