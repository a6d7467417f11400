package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"fieldsync/agent/api"
	"fieldsync/crypto"
	"fieldsync/internal/datadir"
	fsync "fieldsync/sync"
)

// Resumable large envelopes (docs/sync.md "Resumable envelopes"): a large
// register value whose round is cut continues where it stopped.

const resumeValueSize = 20 << 20

// putLargeValue writes a random value of resumeValueSize bytes as a
// register field (`record put SPACE big scan @file`) and returns it.
func putLargeValue(t *testing.T, a interface {
	PutFields(api.RecordPutRequest) (api.Record, error)
}, space string) []byte {
	t.Helper()
	v := make([]byte, resumeValueSize)
	_, _ = rand.Read(v)
	if _, err := a.PutFields(api.RecordPutRequest{Space: space, Record: "big", Fields: []api.FieldValue{{Name: "scan", ValueBase64: base64.StdEncoding.EncodeToString(v)}}}); err != nil {
		t.Fatal(err)
	}
	return v
}

func holdsValue(a *Agent, space string, v []byte) bool {
	r, err := a.GetRecord(api.RecordRef{Space: space, Record: "big"})
	if err != nil || len(r.Fields["scan"].Siblings) != 1 {
		return false
	}
	got, err := base64.StdEncoding.DecodeString(r.Fields["scan"].Siblings[0].ValueBase64)
	return err == nil && bytes.Equal(got, v)
}

// gate cuts sync streams after byte marks (like cutter) and, once cut,
// can block pairs of nodes entirely (Drop).
type gate struct {
	cutter
	mu2     sync.Mutex
	blocked map[[2]string]bool
	// isolate: a node that talks to nobody but except.
	isolate, except string
}

func (g *gate) block(a, b string, on bool) {
	g.mu2.Lock()
	defer g.mu2.Unlock()
	if g.blocked == nil {
		g.blocked = map[[2]string]bool{}
	}
	g.blocked[[2]string{a, b}], g.blocked[[2]string{b, a}] = on, on
}

func (g *gate) Drop(from, to string) bool {
	g.mu2.Lock()
	defer g.mu2.Unlock()
	if g.isolate != "" && (from == g.isolate || to == g.isolate) && from != g.except && to != g.except {
		return true
	}
	return g.blocked[[2]string{from, to}]
}

func (g *gate) WrapSync(from, to string, conn net.Conn) net.Conn {
	return &cutConn{Conn: conn, c: &g.cutter}
}

// TestLargeValueResumesAfterCuts: a 20 MiB register value over a link cut
// twice mid-value arrives intact, and the bytes on the wire are about the
// value's size once: each round after a cut sends only the rest. Before
// resumption the rounds sent 7 + 7 + 20 MiB and more (each from zero).
func TestLargeValueResumesAfterCuts(t *testing.T) {
	_, cfgA, cfgB := omnOfficers(t)
	cut := &cutter{cuts: []int64{7 << 20, 14 << 20}}
	cfgA.Faults, cfgB.Faults = cut, cut
	a := startSyncAgent(t, cfgA)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	v := putLargeValue(t, a, sp.ID)
	cfgB.Join = []string{a.SyncAddr()}
	b := startSyncAgent(t, cfgB)
	waitFor(t, "b to hold the 20 MiB value", func() bool { return holdsValue(b, sp.ID, v) })
	da, _ := a.Digest(api.SpaceRef{Space: sp.ID})
	db, _ := b.Digest(api.SpaceRef{Space: sp.ID})
	if da != db {
		t.Fatalf("digests differ: %+v %+v", da, db)
	}
	sa, sb := a.engine().Stats(), b.engine().Stats()
	wire := sa.SyncBytesOut + sb.SyncBytesOut
	t.Logf("20 MiB value, cuts: %d; on the wire %d bytes (%.2fx); A resumed %d sends, skipping %d bytes; B completed %d from disk, %d bad",
		cut.done.Load(), wire, float64(wire)/resumeValueSize, sa.Resume.Resumed, sa.Resume.BytesSkipped, sb.Resume.Completed, sb.Resume.Bad)
	if cut.done.Load() != 2 {
		t.Fatalf("%d cuts, want 2", cut.done.Load())
	}
	if wire > resumeValueSize*12/10 {
		t.Fatalf("%d bytes on the wire for a %d-byte value: resent from zero", wire, resumeValueSize)
	}
	if sa.Resume.Resumed < 2 || sb.Resume.Completed < 1 || sb.Resume.Bad != 0 {
		t.Fatalf("resume counters: A %+v, B %+v", sa.Resume, sb.Resume)
	}
	if st := b.PartialStatus(); st.Held != 0 || st.HeldBytes != 0 {
		t.Fatalf("partial envelopes still held after the value arrived: %+v", st)
	}
	if m, err := a.MetricsText(); err != nil || !strings.Contains(m, "\nfieldsync_resumed_bytes_skipped_total "+strconv.FormatFloat(float64(sa.Resume.BytesSkipped), 'g', -1, 64)+"\n") {
		t.Fatalf("metrics (%v) lack fieldsync_resumed_bytes_skipped_total %d", err, sa.Resume.BytesSkipped)
	}
}

// TestLargeValuePrefixSurvivesRestart: the receiving agent stops between
// two cuts; the prefix it held is on disk (sealed, key space U) and the
// next run of the agent asks only for the rest.
func TestLargeValuePrefixSurvivesRestart(t *testing.T) {
	if raceOn && testing.Short() {
		// 20 MiB through the sync path takes ~14 s under the race
		// detector; TestLargeValueResumesAfterCuts keeps the same
		// transfer and resume code in CI's race pass.
		t.Skip("checked without the race detector")
	}
	_, cfgA, cfgB := omnOfficers(t)
	g := &gate{cutter: cutter{cuts: []int64{9 << 20}}}
	cfgA.Faults, cfgB.Faults = g, g
	A := startStoppable(t, cfgA)
	sp, err := A.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	v := putLargeValue(t, A, sp.ID)
	cfgB.Join = []string{A.SyncAddr()}
	B := startStoppable(t, cfgB)
	waitFor(t, "the cut", func() bool { return g.done.Load() == 1 })
	g.block(A.DeviceID().String(), B.DeviceID().String(), true)
	waitFor(t, "b to hold a prefix", func() bool { return B.PartialStatus().HeldBytes > 0 })
	B.stop()
	held := openHeld(t, cfgB)
	if held.Held != 1 || held.HeldBytes < 4<<20 {
		t.Fatalf("after restart b holds %+v, want one prefix of several MiB", held)
	}
	g.block(A.DeviceID().String(), B.DeviceID().String(), false)
	B = startStoppable(t, cfgB)
	waitFor(t, "b to hold the 20 MiB value", func() bool { return holdsValue(B.Agent, sp.ID, v) })
	sa, sb := A.engine().Stats(), B.engine().Stats()
	t.Logf("prefix held across the restart: %d bytes; A sent %d bytes in all (%.2fx), resumed %d, skipped %d",
		held.HeldBytes, sa.SyncBytesOut, float64(sa.SyncBytesOut)/resumeValueSize, sa.Resume.Resumed, sa.Resume.BytesSkipped)
	if sa.SyncBytesOut > resumeValueSize*12/10 || sa.Resume.BytesSkipped < held.HeldBytes {
		t.Fatalf("a sent %d bytes (skipped %d) for a %d-byte value of which b held %d", sa.SyncBytesOut, sa.Resume.BytesSkipped, resumeValueSize, held.HeldBytes)
	}
	if sb.Resume.ResumedIn < 1 || B.PartialStatus().Held != 0 {
		t.Fatalf("b: %+v, partials %+v", sb.Resume, B.PartialStatus())
	}
}

// openHeld opens a stopped agent's store and counts its partial envelopes.
func openHeld(t *testing.T, cfg Config) api.PartialStatus {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	return a.PartialStatus()
}

// TestLargeValueResumesFromRelay: b receives the first part of the value
// from its writer, the round is cut and the writer goes away; the relay,
// which holds the same envelope, sends b only the rest.
func TestLargeValueResumesFromRelay(t *testing.T) {
	if raceOn && testing.Short() {
		// 20 MiB through the sync path takes ~14 s under the race
		// detector; TestLargeValueResumesAfterCuts keeps the same
		// transfer and resume code in CI's race pass.
		t.Skip("checked without the race detector")
	}
	omn := newTestBureau(t, "OMN")
	cfgA := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	cfgB := newTestDevice(t, omn, "Boris", crypto.RoleOfficer)
	cfgR := newTestDevice(t, omn, "relay", crypto.RoleRelay)
	ks, _ := datadir.LoadKeystore(cfgA.Layout, cfgA.Unlock)
	for _, c := range []*Config{&cfgA, &cfgB, &cfgR} {
		c.MeshKey = ks.MeshKey
	}
	g := &gate{}
	cfgA.Faults, cfgB.Faults, cfgR.Faults = g, g, g
	R := startStoppable(t, cfgR)
	cfgA.Join = []string{R.SyncAddr()}
	A := startStoppable(t, cfgA)
	sp, err := A.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	v := putLargeValue(t, A, sp.ID)
	waitFor(t, "the relay to hold every envelope of a's, the value's included", func() bool {
		da, err1 := A.Digest(api.SpaceRef{Space: sp.ID})
		dr, err2 := R.Digest(api.SpaceRef{Space: sp.ID})
		return err1 == nil && err2 == nil && da.Count > 0 && dr.Count == da.Count
	})
	// b reaches only a; the first round is cut 9 MiB in.
	g.mu.Lock()
	g.cuts = []int64{g.total.Load() + 9<<20}
	g.mu.Unlock()
	g.mu2.Lock()
	g.isolate, g.except = R.DeviceID().String(), A.DeviceID().String()
	g.mu2.Unlock()
	cfgB.Join = []string{A.SyncAddr()}
	B := startStoppable(t, cfgB)
	waitFor(t, "the cut", func() bool { return g.done.Load() == 1 })
	g.block(A.DeviceID().String(), B.DeviceID().String(), true)
	waitFor(t, "b to hold a prefix", func() bool { return B.PartialStatus().HeldBytes > 0 })
	sentToBBefore := sentTo(A.Agent, B.DeviceID().String())
	A.stop()
	prefix := B.PartialStatus().HeldBytes
	g.mu2.Lock()
	g.isolate = ""
	g.mu2.Unlock()
	if _, err := B.engine().SyncWithAddr(context.Background(), fsync.PeerID(R.DeviceID()), R.SyncAddr()); err != nil {
		t.Logf("explicit round with the relay: %v (background rounds carry on)", err)
	}
	waitFor(t, "b to hold the 20 MiB value", func() bool { return holdsValue(B.Agent, sp.ID, v) })
	fromR := sentTo(R.Agent, B.DeviceID().String())
	rs := R.engine().Stats()
	t.Logf("b held %d bytes from a (a sent it %d); the relay then sent b %d bytes, resumed %d, skipped %d",
		prefix, sentToBBefore, fromR, rs.Resume.Resumed, rs.Resume.BytesSkipped)
	if rs.Resume.Resumed < 1 || rs.Resume.BytesSkipped < prefix {
		t.Fatalf("the relay did not resume: %+v (b held %d)", rs.Resume, prefix)
	}
	if sentToBBefore+fromR > resumeValueSize*12/10 {
		if raceOn {
			// Ten times slower, the explicit round and a background round
			// of b and the relay overlap and both send the rest of the
			// value (two sessions of one pair resuming one envelope: a
			// known cost, docs/sync.md "Resumable envelopes"). The bytes
			// are asserted without the race detector.
			t.Logf("under the race detector: %d + %d bytes sent to b for a %d-byte value", sentToBBefore, fromR, resumeValueSize)
			return
		}
		t.Fatalf("%d + %d bytes sent to b for a %d-byte value", sentToBBefore, fromR, resumeValueSize)
	}
}

// sentTo is what a's engine sent to peer id on sync streams.
func sentTo(a *Agent, id string) uint64 {
	for _, p := range a.engine().Peers() {
		if p.ID.String() == id {
			return p.BytesSent
		}
	}
	return 0
}

// TestPartialStoreBoundsAndPieces: the agent's partial envelopes (key space
// U): pieces append and, resumed at an earlier offset, replace what
// followed; a different hash at the slot is another envelope; the per-space
// cap drops the oldest prefix to make room; and the bytes are sealed at
// rest like every value.
func TestPartialStoreBoundsAndPieces(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	a := openTestAgent(t, cfg)
	s := syncAdapter{a}
	sp := fsync.SpaceID{1}
	p := fsync.Partial{Space: sp, Author: fsync.PeerID{2}, Seq: 7, Total: 10, Hash: [32]byte{3}}
	if ok, err := s.BeginPartial(p); !ok || err != nil {
		t.Fatal(ok, err)
	}
	for _, step := range []struct {
		at   uint32
		data string
	}{{0, "abcd"}, {4, "efg"}, {2, "XY"}, {4, "ZZZZ"}} {
		if err := s.AppendPartial(p, step.at, []byte(step.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AppendPartial(p, 9, []byte("!")); err == nil {
		t.Fatal("a piece beyond the bytes held was accepted")
	}
	other := p
	other.Hash[0] = 9
	if err := s.AppendPartial(other, 0, []byte("x")); err == nil {
		t.Fatal("a piece of another envelope at the same slot was accepted")
	}
	if _, err := s.ReadPartial(other); err != fsync.ErrNotFound {
		t.Fatalf("another envelope's read: %v", err)
	}
	got, err := s.ReadPartial(p)
	if err != nil || string(got) != "abXYZZZZ" {
		t.Fatalf("read %q, %v; want abXYZZZZ", got, err)
	}
	if ps, _ := s.Partials(sp); len(ps) != 1 || ps[0].Have != 8 || ps[0].Hash != p.Hash {
		t.Fatalf("partials %+v", ps)
	}
	// The per-space cap (96 MiB): a fourth 30 MiB envelope drops the oldest
	// prefixes until it fits.
	big := func(seq uint64) fsync.Partial {
		return fsync.Partial{Space: sp, Author: fsync.PeerID{2}, Seq: seq, Total: 30 << 20, Hash: [32]byte{byte(seq)}}
	}
	for seq := uint64(10); seq < 14; seq++ {
		if ok, err := s.BeginPartial(big(seq)); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if err := s.AppendPartial(big(seq), 0, []byte("piece")); err != nil {
			t.Fatal(err)
		}
	}
	ps, _ := s.Partials(sp)
	var seqs []uint64
	for _, q := range ps {
		seqs = append(seqs, q.Seq)
	}
	slices.Sort(seqs)
	if !slices.Equal(seqs, []uint64{11, 12, 13}) {
		t.Fatalf("after four 30 MiB envelopes in a space: slots %v, want [11 12 13] (7 and 10 dropped for the 96 MiB cap)", seqs)
	}
	if err := s.DropPartial(sp, fsync.PeerID{2}, 11); err != nil {
		t.Fatal(err)
	}
	if st := a.PartialStatus(); st.Held != 2 || st.HeldBytes != 10 {
		t.Fatalf("status %+v", st)
	}
	// Sealed: the raw value under a piece key is not the bytes.
	raw, err := a.db.kv.Get(partialPieceKey(sp, fsync.PeerID{2}, 12, 0))
	if err != nil || bytes.Contains(raw, []byte("piece")) {
		t.Fatalf("piece at rest: %v, sealed %v", err, !bytes.Contains(raw, []byte("piece")))
	}
}
