package sync_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"slices"
	gosync "sync"
	"testing"
	"time"

	fsync "fieldsync/sync"
	"fieldsync/sync/synctest"
)

// chunkMem adds attachment chunks to a MemStore (the agent keeps them in
// Badger; agent/attach.go).
type chunkMem struct {
	*fsync.MemStore
	mu     gosync.Mutex
	chunks map[fsync.SpaceID]map[fsync.ChunkRef][]byte
}

func withChunks(cfg *fsync.Config) {
	cfg.Store = &chunkMem{MemStore: cfg.Store.(*fsync.MemStore), chunks: map[fsync.SpaceID]map[fsync.ChunkRef][]byte{}}
}

func (m *chunkMem) ChunkRefs(sp fsync.SpaceID) ([]fsync.ChunkRef, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []fsync.ChunkRef
	for r := range m.chunks[sp] {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b fsync.ChunkRef) int { return bytes.Compare(a[:], b[:]) })
	return out, nil
}

func (m *chunkMem) WantsAllChunks() bool                      { return true }
func (m *chunkMem) ChunkWants(fsync.SpaceID) []fsync.ChunkRef { return nil }

func (m *chunkMem) GetChunk(sp fsync.SpaceID, r fsync.ChunkRef) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b, ok := m.chunks[sp][r]; ok {
		return slices.Clone(b), nil
	}
	return nil, fsync.ErrNotFound
}

func (m *chunkMem) PutChunk(_ fsync.PeerID, sp fsync.SpaceID, r fsync.ChunkRef, b []byte) (bool, error) {
	if sha256.Sum256(b) != r {
		return false, fsync.Reject("chunk", nil)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.chunks[sp] == nil {
		m.chunks[sp] = map[fsync.ChunkRef][]byte{}
	}
	if _, ok := m.chunks[sp][r]; ok {
		return false, nil
	}
	m.chunks[sp][r] = slices.Clone(b)
	return true, nil
}

func (m *chunkMem) count(sp fsync.SpaceID) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.chunks[sp])
}

// TestChunksWithinSessionBudget: chunks go after the envelopes, within the
// sender's session budget; what a round holds back the next one sends, and
// nothing is sent twice. Each pull is exactly one round.
func TestChunksWithinSessionBudget(t *testing.T) {
	c := synctest.NewCluster(t)
	var ca, cb *chunkMem
	a := c.Add(synctest.Options{SyncInterval: -1, DisableHints: true, Tweak: func(cfg *fsync.Config) {
		cfg.Budget = fsync.Budget{SessionBytes: 250 << 10}
		withChunks(cfg)
		ca = cfg.Store.(*chunkMem)
	}})
	x := synctest.NewDevice(c.Bureau, fsync.RoleOfficer)
	a.Auth.Know(x.Cert)
	sp := synctest.NewSpace()
	if err := a.Store.Put(synctest.Seal(x, sp, 1, []byte("the manifest's change"))); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		data := make([]byte, 100<<10)
		rand.Read(data)
		if _, err := ca.PutChunk(fsync.PeerID{}, sp, sha256.Sum256(data), data); err != nil {
			t.Fatal(err)
		}
	}
	// The client's first round brings the envelope (it holds the space from
	// then on); chunks move only in spaces both hold, so from round 2.
	opts := clientOpts(a.Engine.LocalAddr())
	client := opts.Tweak
	opts.Tweak = func(cfg *fsync.Config) { client(cfg); withChunks(cfg); cb = cfg.Store.(*chunkMem) }
	b := c.Add(opts)
	b.Auth.Know(x.Cert)
	if !synctest.WaitFor(10*time.Second, func() bool { return watching(b) && a.Engine.Stats().Rounds > 0 }) {
		t.Fatal("client not watching")
	}
	var held []int
	for range 4 {
		pull(t, b, a)
		held = append(held, cb.count(sp))
	}
	st := a.Engine.Stats().Chunks
	t.Logf("chunks held by b after each round: %v; a sent %d chunks (%d bytes)", held, st.Sent, st.BytesSent)
	if !slices.Equal(held, []int{2, 4, 6, 6}) {
		t.Fatalf("held after each round %v: want two more per round (250 KiB budget, 100 KiB chunks)", held)
	}
	if st.Sent != 6 || st.HeldBack != 0 {
		t.Fatalf("a sent %d chunks, holds back %d: want 6 and 0", st.Sent, st.HeldBack)
	}
}

// TestChunksIdleRoundCost: between nodes in step, the chunk phase costs the
// sums and one more round trip, the same whatever the number of chunks held
// (a test that fails if a round in step lists refs or moves chunks).
func TestChunksIdleRoundCost(t *testing.T) {
	measure := func(chunks bool, n int) fsync.Round {
		c := synctest.NewCluster(t)
		o := synctest.Options{SyncInterval: -1, DisableHints: true}
		var stores []*chunkMem
		if chunks {
			o.Tweak = func(cfg *fsync.Config) { withChunks(cfg); stores = append(stores, cfg.Store.(*chunkMem)) }
		}
		a, b := c.Add(o), c.Add(o)
		sp := synctest.NewSpace()
		for i := range 3 {
			env := synctest.Seal(a.Dev, sp, uint64(i+1), []byte("change"))
			for _, n := range []*synctest.Node{a, b} {
				if err := n.Store.Put(env); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, s := range stores {
			for i := range n {
				data := []byte{byte(i), byte(i >> 8)}
				if _, err := s.PutChunk(fsync.PeerID{}, sp, sha256.Sum256(data), data); err != nil {
					t.Fatal(err)
				}
			}
		}
		if !synctest.WaitMembers(10*time.Second, a, b) {
			t.Fatal("no membership")
		}
		ctx := context.Background()
		if _, err := a.Engine.SyncWith(ctx, b.Dev.ID); err != nil { // warm: mesh objects
			t.Fatal(err)
		}
		r, err := a.Engine.SyncWith(ctx, b.Dev.ID)
		if err != nil {
			t.Fatal(err)
		}
		if st := a.Engine.Stats().Chunks; st.Sent+st.Added != 0 {
			t.Fatalf("nodes in step moved chunks: %+v", st)
		}
		return r
	}
	without, with10, with1000 := measure(false, 0), measure(true, 10), measure(true, 1000)
	t.Logf("idle round, one space: without chunk stores sent %d received %d; with 10 chunks %d/%d; with 1,000 chunks %d/%d",
		without.BytesSent, without.BytesReceived, with10.BytesSent, with10.BytesReceived, with1000.BytesSent, with1000.BytesReceived)
	if with10.BytesSent != with1000.BytesSent || with10.BytesReceived != with1000.BytesReceived {
		t.Fatalf("idle round cost grew with chunks held: %+v vs %+v", with10, with1000)
	}
}
