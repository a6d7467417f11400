package sync_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"slices"
	"strings"
	gosync "sync"
	"testing"
	"time"

	fsync "fieldsync/sync"
	"fieldsync/sync/synctest"
)

// resumeMem adds partial envelopes (and, through chunkMem, chunks: /3 is
// /2 plus resumption) to a MemStore. The agent keeps them sealed in Badger
// (agent/partial.go).
type resumeMem struct {
	*chunkMem
	pmu   gosync.Mutex
	parts map[slot]*fsync.Partial
	data  map[slot][]byte
}

type slot struct {
	sp  fsync.SpaceID
	a   fsync.PeerID
	seq uint64
}

func withResume(cfg *fsync.Config) {
	withChunks(cfg)
	cfg.Store = &resumeMem{chunkMem: cfg.Store.(*chunkMem), parts: map[slot]*fsync.Partial{}, data: map[slot][]byte{}}
}

func (m *resumeMem) Partials(sp fsync.SpaceID) ([]fsync.Partial, error) {
	m.pmu.Lock()
	defer m.pmu.Unlock()
	var out []fsync.Partial
	for k, p := range m.parts {
		if k.sp == sp {
			out = append(out, *p)
		}
	}
	return out, nil
}

func (m *resumeMem) BeginPartial(p fsync.Partial) (bool, error) {
	m.pmu.Lock()
	defer m.pmu.Unlock()
	k := slot{p.Space, p.Author, p.Seq}
	p.Have = 0
	m.parts[k], m.data[k] = &p, nil
	return true, nil
}

func (m *resumeMem) AppendPartial(p fsync.Partial, at uint32, d []byte) error {
	m.pmu.Lock()
	defer m.pmu.Unlock()
	k := slot{p.Space, p.Author, p.Seq}
	q := m.parts[k]
	if q == nil || q.Total != p.Total || q.Hash != p.Hash || at > q.Have {
		return fsync.ErrNotFound
	}
	m.data[k] = append(m.data[k][:at:at], d...)
	q.Have = uint32(len(m.data[k]))
	return nil
}

func (m *resumeMem) ReadPartial(p fsync.Partial) ([]byte, error) {
	m.pmu.Lock()
	defer m.pmu.Unlock()
	k := slot{p.Space, p.Author, p.Seq}
	if q := m.parts[k]; q == nil || q.Total != p.Total || q.Hash != p.Hash {
		return nil, fsync.ErrNotFound
	}
	return slices.Clone(m.data[k]), nil
}

func (m *resumeMem) DropPartial(sp fsync.SpaceID, a fsync.PeerID, seq uint64) error {
	m.pmu.Lock()
	defer m.pmu.Unlock()
	delete(m.parts, slot{sp, a, seq})
	delete(m.data, slot{sp, a, seq})
	return nil
}

func (m *resumeMem) held() uint32 {
	m.pmu.Lock()
	defer m.pmu.Unlock()
	var n uint32
	for _, p := range m.parts {
		n += p.Have
	}
	return n
}

// resumeTrio: a (honest), m (to be hostile) and b (the receiver), all
// holding the author x's certificate; a and m hold one 4 MiB envelope of x.
func resumeTrio(t *testing.T) (c *synctest.Cluster, a, m, b *synctest.Node, stores map[*synctest.Node]*resumeMem, env fsync.Envelope) {
	c, a, m, b, stores, env, _ = resumeTrioFork(t, false)
	return
}

// resumeTrioFork is resumeTrio; with fork, a holds another envelope of the
// same length at the same slot (x signed two), returned as other.
func resumeTrioFork(t *testing.T, fork bool) (c *synctest.Cluster, a, m, b *synctest.Node, stores map[*synctest.Node]*resumeMem, env, other fsync.Envelope) {
	c = synctest.NewCluster(t)
	stores = map[*synctest.Node]*resumeMem{}
	add := func() *synctest.Node {
		var st *resumeMem
		n := c.Add(synctest.Options{SyncInterval: -1, DisableHints: true, Tweak: func(cfg *fsync.Config) {
			withResume(cfg)
			st = cfg.Store.(*resumeMem)
		}})
		stores[n] = st
		return n
	}
	a, m, b = add(), add(), add()
	x := synctest.NewDevice(c.Bureau, fsync.RoleOfficer)
	for _, n := range []*synctest.Node{a, m, b} {
		n.Auth.Know(x.Cert)
	}
	if !synctest.WaitMembers(10*time.Second, a, m, b) {
		t.Fatal("no membership")
	}
	// The join rounds are over before anything is held: every round from
	// here on is one the test starts.
	for _, n := range []*synctest.Node{a, m} {
		if _, err := b.Engine.SyncWith(context.Background(), n.Dev.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := n.Engine.SyncWith(context.Background(), b.Dev.ID); err != nil {
			t.Fatal(err)
		}
	}
	body := make([]byte, 4<<20)
	_, _ = rand.Read(body)
	sp := synctest.NewSpace()
	// The space's first envelope is small (as the agent's routing record
	// is): b holds the space, and lists it, before the large one.
	first := synctest.Seal(x, sp, 1, []byte("routing"))
	env = synctest.Seal(x, sp, 2, body)
	other = env
	if fork {
		body2 := slices.Clone(body)
		body2[len(body2)-1] ^= 1
		other = synctest.Seal(x, sp, 2, body2)
	}
	for n, e := range map[*synctest.Node]fsync.Envelope{a: other, m: env} {
		for _, e := range []fsync.Envelope{first, e} {
			if err := n.Store.Put(e); err != nil {
				t.Fatal(err)
			}
		}
	}
	return c, a, m, b, stores, env, other
}

// TestResumeForkNeverMixes: b holds a prefix of x's envelope 2 (from m);
// a holds another envelope x signed for the same seq, of the same length
// (a fork). Its hash differs, so a sends it from zero and b never splices
// m's prefix onto a's rest.
func TestResumeForkNeverMixes(t *testing.T) {
	c, a, m, b, stores, _, other := resumeTrioFork(t, true)
	ctx := context.Background()
	c.Faults.CutStreamAfter(b, m, 2<<20)
	if _, err := b.Engine.SyncWith(ctx, m.Dev.ID); err == nil {
		t.Fatal("the cut round succeeded")
	}
	if stores[b].held() == 0 {
		t.Fatal("b kept nothing of the cut envelope")
	}
	if _, err := b.Engine.SyncWith(ctx, a.Dev.ID); err != nil {
		t.Fatal(err)
	}
	sa, sb := a.Engine.Stats(), b.Engine.Stats()
	if sa.Resume.Resumed != 0 || sb.Resume.Bad != 0 || !holds(b, other) || stores[b].held() != 0 {
		t.Fatalf("fork: a resumed %d, b bad %d, b holds a's envelope %v, prefix %d", sa.Resume.Resumed, sb.Resume.Bad, holds(b, other), stores[b].held())
	}
}

func holds(n *synctest.Node, env fsync.Envelope) bool {
	got, err := n.Store.Get(env.Space, env.Author, env.Seq)
	return err == nil && bytes.Equal(got, env.Data)
}

// TestResumeBadPrefixIsDroppedAndFetchedAgain: a hostile member announces
// the envelope's true length and hash but sends other bytes, and the round
// is cut. The next round (with an honest peer) resumes from that prefix;
// the whole fails the hash check, is dropped (not ingested, counted), and
// the round after fetches it from zero: a bad prefix cannot make the
// envelope unfetchable.
func TestResumeBadPrefixIsDroppedAndFetchedAgain(t *testing.T) {
	c, a, m, b, stores, env := resumeTrio(t)
	fsync.SetSendTamper(m.Engine, func(_ fsync.Envelope, off uint32, d []byte) (uint32, []byte) {
		bad := slices.Clone(d)
		for i := range bad {
			bad[i] ^= 0x5a
		}
		return off, bad
	})
	ctx := context.Background()
	c.Faults.CutStreamAfter(b, m, 2<<20)
	if _, err := b.Engine.SyncWith(ctx, m.Dev.ID); err == nil {
		t.Fatal("the cut round succeeded")
	}
	prefix := stores[b].held()
	if prefix == 0 {
		t.Fatal("b kept nothing of the cut envelope")
	}
	if _, err := b.Engine.SyncWith(ctx, a.Dev.ID); err != nil {
		t.Fatal(err)
	}
	sa, sb := a.Engine.Stats(), b.Engine.Stats()
	t.Logf("bad prefix of %d bytes; a resumed %d (skipped %d); b: %+v, rejected %v", prefix, sa.Resume.Resumed, sa.Resume.BytesSkipped, sb.Resume, sb.Rejected)
	if sa.Resume.Resumed != 1 || sb.Resume.Bad != 1 || sb.Rejected["resume"] != 1 {
		t.Fatalf("the forged prefix was not resumed and caught: a %+v, b %+v %v", sa.Resume, sb.Resume, sb.Rejected)
	}
	if holds(b, env) || stores[b].held() != 0 {
		t.Fatal("b ingested a forged envelope, or kept its prefix")
	}
	if _, err := b.Engine.SyncWith(ctx, a.Dev.ID); err != nil {
		t.Fatal(err)
	}
	if !holds(b, env) {
		t.Fatal("the envelope was not fetched again from zero")
	}
}

// TestResumeOffsetBeyondPrefixRefused: a peer that resumes beyond what the
// receiver announced (bytes it never sent) ends the round with a clear
// error; the prefix stays, and an honest peer completes it.
func TestResumeOffsetBeyondPrefixRefused(t *testing.T) {
	c, a, m, b, stores, env := resumeTrio(t)
	fsync.SetSendTamper(m.Engine, func(_ fsync.Envelope, off uint32, d []byte) (uint32, []byte) {
		if off == 0 {
			return 0, d
		}
		return off + 4096, d[4096:]
	})
	ctx := context.Background()
	c.Faults.CutStreamAfter(b, m, 2<<20)
	if _, err := b.Engine.SyncWith(ctx, m.Dev.ID); err == nil {
		t.Fatal("the cut round succeeded")
	}
	prefix := stores[b].held()
	if prefix == 0 {
		t.Fatal("b kept nothing of the cut envelope")
	}
	_, err := b.Engine.SyncWith(ctx, m.Dev.ID)
	if err == nil || !strings.Contains(err.Error(), "beyond") {
		t.Fatalf("a resume beyond the held prefix: %v", err)
	}
	if got := stores[b].held(); got != prefix {
		t.Fatalf("prefix %d bytes after the refused round, was %d", got, prefix)
	}
	if _, err := b.Engine.SyncWith(ctx, a.Dev.ID); err != nil {
		t.Fatal(err)
	}
	if !holds(b, env) || b.Engine.Stats().Resume.ResumedIn != 1 {
		t.Fatalf("b did not complete the envelope from its prefix: %+v", b.Engine.Stats().Resume)
	}
}

// TestResumeOlderPeer: a node without a PartialStore (an older build's
// protocol, /2) still exchanges large envelopes whole with one that has.
func TestResumeOlderPeer(t *testing.T) {
	c := synctest.NewCluster(t)
	a := c.Add(synctest.Options{SyncInterval: -1, DisableHints: true, Tweak: withResume})
	b := c.Add(synctest.Options{SyncInterval: -1, DisableHints: true, Tweak: withChunks})
	body := make([]byte, 3<<20)
	_, _ = rand.Read(body)
	env := synctest.Seal(a.Dev, synctest.NewSpace(), 1, body)
	if err := a.Store.Put(env); err != nil {
		t.Fatal(err)
	}
	if !synctest.WaitMembers(10*time.Second, a, b) {
		t.Fatal("no membership")
	}
	if _, err := b.Engine.SyncWith(context.Background(), a.Dev.ID); err != nil {
		t.Fatal(err)
	}
	if !holds(b, env) {
		t.Fatal("the older peer did not get the envelope")
	}
}

// TestResumeWithinSessionBudget: on a resumable stream the session budget
// bounds a large envelope too: each round sends a part of it within the
// budget and the receiver keeps it, so a 4 MiB envelope under a 1.5 MiB
// budget takes three rounds of at most 1.5 MiB each, and about 4 MiB in
// all (before, the first round sent it whole, whatever the budget).
func TestResumeWithinSessionBudget(t *testing.T) {
	const budget = 1536 << 10
	c := synctest.NewCluster(t)
	var sb *resumeMem
	a := c.Add(synctest.Options{SyncInterval: -1, DisableHints: true, Tweak: func(cfg *fsync.Config) {
		withResume(cfg)
		cfg.Budget = fsync.Budget{SessionBytes: budget}
	}})
	b := c.Add(synctest.Options{SyncInterval: -1, DisableHints: true, Tweak: func(cfg *fsync.Config) {
		withResume(cfg)
		sb = cfg.Store.(*resumeMem)
	}})
	if !synctest.WaitMembers(10*time.Second, a, b) {
		t.Fatal("no membership")
	}
	ctx := context.Background()
	if _, err := b.Engine.SyncWith(ctx, a.Dev.ID); err != nil {
		t.Fatal(err)
	}
	sp := synctest.NewSpace()
	body := make([]byte, 4<<20)
	_, _ = rand.Read(body)
	env := synctest.Seal(a.Dev, sp, 2, body)
	for _, e := range []fsync.Envelope{synctest.Seal(a.Dev, sp, 1, []byte("routing")), env} {
		if err := a.Store.Put(e); err != nil {
			t.Fatal(err)
		}
	}
	before := a.Engine.Stats().SyncBytesOut
	var perRound []uint64
	var held []uint32
	for range 6 {
		r, err := b.Engine.SyncWith(ctx, a.Dev.ID)
		if err != nil {
			t.Fatal(err)
		}
		perRound = append(perRound, r.BytesReceived)
		held = append(held, sb.held())
		if holds(b, env) {
			break
		}
	}
	st := a.Engine.Stats()
	total := st.SyncBytesOut - before
	t.Logf("4 MiB envelope, 1.5 MiB session budget: received per round %v, prefix held after each %v; a sent %d bytes in all, %d parts", perRound, held, total, st.Resume.PartsSent)
	if !holds(b, env) || len(perRound) != 3 {
		t.Fatalf("b holds it: %v, after %d rounds; want 3 rounds", holds(b, env), len(perRound))
	}
	for i, n := range perRound {
		if n > budget+64<<10 {
			t.Fatalf("round %d carried %d bytes, over the %d-byte session budget", i+1, n, budget)
		}
	}
	if st.Resume.PartsSent != 2 || total > uint64(len(env.Data))*11/10 {
		t.Fatalf("%d parts, %d bytes sent for a %d-byte envelope", st.Resume.PartsSent, total, len(env.Data))
	}
}

// TestResumeOnWatchStream: a client (watch stream, fieldsync-watch/3) that
// holds a prefix of a large envelope from an earlier cut round announces it
// on its first round, and its upstream sends only the rest.
func TestResumeOnWatchStream(t *testing.T) {
	c := synctest.NewCluster(t)
	a := c.Add(synctest.Options{SyncInterval: -1, Tweak: withResume})
	sp := synctest.NewSpace()
	body := make([]byte, 3<<20)
	_, _ = rand.Read(body)
	first, env := synctest.Seal(a.Dev, sp, 1, []byte("routing")), synctest.Seal(a.Dev, sp, 2, body)
	for _, e := range []fsync.Envelope{first, env} {
		if err := a.Store.Put(e); err != nil {
			t.Fatal(err)
		}
	}
	opts := clientOpts(a.Engine.LocalAddr())
	client := opts.Tweak
	var sb *resumeMem
	opts.Tweak = func(cfg *fsync.Config) {
		client(cfg)
		withResume(cfg)
		sb = cfg.Store.(*resumeMem)
		// What an earlier, cut round left: the space's first envelope and
		// 1 MiB of the large one.
		if err := sb.Put(first); err != nil {
			t.Fatal(err)
		}
		p := fsync.Partial{Space: env.Space, Author: env.Author, Seq: env.Seq, Total: uint32(len(env.Data)), Hash: sha256.Sum256(env.Data)}
		if _, err := sb.BeginPartial(p); err != nil {
			t.Fatal(err)
		}
		if err := sb.AppendPartial(p, 0, env.Data[:1<<20]); err != nil {
			t.Fatal(err)
		}
	}
	b := c.Add(opts)
	if !synctest.WaitFor(20*time.Second, func() bool { return holds(b, env) }) {
		t.Fatal("the client did not get the envelope")
	}
	if r := a.Engine.Stats().Resume; r.Resumed != 1 || r.BytesSkipped != 1<<20 {
		t.Fatalf("the upstream did not resume from the client's prefix: %+v", r)
	}
	if sb.held() != 0 {
		t.Fatal("the client kept the prefix of a completed envelope")
	}
}
