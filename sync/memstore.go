package sync

import (
	"bytes"
	"sort"
	gosync "sync"
)

// MemStore is an in-memory Store for tests and benchmarks. Verification is
// pluggable (Verify); the store itself enforces contiguous seqs per
// (space, author) ("gap") and refuses a different envelope at a held seq
// ("fork"). Safe for concurrent use.
type MemStore struct {
	// Verify checks a received envelope (signature, certificate, that
	// env's triple matches its header...). Nil accepts everything. A
	// rejection should wrap a *RejectError. Set before use.
	Verify func(from PeerID, env Envelope) error

	mu      gosync.Mutex
	logs    map[SpaceID]map[PeerID][][]byte
	peers   map[PeerID]KnownPeer
	added   map[envKey]int
	ingests uint64
}

type envKey struct {
	space  SpaceID
	author PeerID
	seq    uint64
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty store that verifies with verify (nil: accept).
func NewMemStore(verify func(from PeerID, env Envelope) error) *MemStore {
	return &MemStore{Verify: verify, logs: map[SpaceID]map[PeerID][][]byte{},
		peers: map[PeerID]KnownPeer{}, added: map[envKey]int{}}
}

// Put stores a local envelope without verification; its seq must be the
// author's next one in the space (else a "gap" or "fork" rejection).
func (m *MemStore) Put(env Envelope) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkLocked(env); err != nil {
		return err
	}
	m.appendLocked(env)
	return nil
}

// checkLocked returns errDup for a held identical envelope.
func (m *MemStore) checkLocked(env Envelope) error {
	log := m.logs[env.Space][env.Author]
	switch {
	case env.Seq == 0:
		return Reject("malformed", nil)
	case env.Seq <= uint64(len(log)):
		if bytes.Equal(log[env.Seq-1], env.Data) {
			return errDup
		}
		return Reject("fork", nil)
	case env.Seq != uint64(len(log))+1:
		return Reject("gap", nil)
	}
	return nil
}

var errDup = &RejectError{Reason: "duplicate"}

func (m *MemStore) appendLocked(env Envelope) {
	sp := m.logs[env.Space]
	if sp == nil {
		sp = map[PeerID][][]byte{}
		m.logs[env.Space] = sp
	}
	sp[env.Author] = append(sp[env.Author], bytes.Clone(env.Data))
}

// Spaces implements Store.
func (m *MemStore) Spaces() ([]SpaceID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]SpaceID, 0, len(m.logs))
	for s := range m.logs {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Compare(out[j]) < 0 })
	return out, nil
}

// Heads implements Store.
func (m *MemStore) Heads(space SpaceID) (Vector, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := Vector{}
	for a, log := range m.logs[space] {
		if len(log) > 0 {
			v[a] = uint64(len(log))
		}
	}
	return v, nil
}

// Since implements Store.
func (m *MemStore) Since(space SpaceID, have Vector, fn func(Envelope) error) error {
	m.mu.Lock()
	snap := map[PeerID][][]byte{}
	for a, log := range m.logs[space] {
		snap[a] = log[:len(log):len(log)]
	}
	m.mu.Unlock()
	authors := make([]PeerID, 0, len(snap))
	for a := range snap {
		authors = append(authors, a)
	}
	sort.Slice(authors, func(i, j int) bool { return authors[i].Compare(authors[j]) < 0 })
	for _, a := range authors {
		log := snap[a]
		for seq := have[a] + 1; seq <= uint64(len(log)); seq++ {
			if err := fn(Envelope{Space: space, Author: a, Seq: seq, Data: log[seq-1]}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Get implements Store.
func (m *MemStore) Get(space SpaceID, author PeerID, seq uint64) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	log := m.logs[space][author]
	if seq == 0 || seq > uint64(len(log)) {
		return nil, ErrNotFound
	}
	return bytes.Clone(log[seq-1]), nil
}

// Ingest implements Store.
func (m *MemStore) Ingest(from PeerID, env Envelope) (bool, error) {
	m.mu.Lock()
	m.ingests++
	err := m.checkLocked(env)
	m.mu.Unlock()
	if err == errDup {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if m.Verify != nil {
		if err := m.Verify(from, env); err != nil {
			return false, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkLocked(env); err == errDup {
		return false, nil
	} else if err != nil {
		return false, err
	}
	m.appendLocked(env)
	m.added[envKey{env.Space, env.Author, env.Seq}]++
	return true, nil
}

// LoadPeers implements Store.
func (m *MemStore) LoadPeers() ([]KnownPeer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]KnownPeer, 0, len(m.peers))
	for _, p := range m.peers {
		out = append(out, p)
	}
	return out, nil
}

// SavePeer implements Store.
func (m *MemStore) SavePeer(p KnownPeer) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.peers[p.ID] = p
	return nil
}

// Count returns how many envelopes the store holds.
func (m *MemStore) Count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, sp := range m.logs {
		for _, log := range sp {
			n += len(log)
		}
	}
	return n
}

// MaxAdded returns the most times any one envelope was added by Ingest
// (1 when nothing was applied twice; 0 when nothing was received).
func (m *MemStore) MaxAdded() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	mx := 0
	for _, n := range m.added {
		mx = max(mx, n)
	}
	return mx
}

// IngestCalls returns how many times Ingest was called.
func (m *MemStore) IngestCalls() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ingests
}

// Digest returns every space's heads, for comparing replicas.
func (m *MemStore) Digest() map[SpaceID]Vector {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[SpaceID]Vector{}
	for s, sp := range m.logs {
		v := Vector{}
		for a, log := range sp {
			if len(log) > 0 {
				v[a] = uint64(len(log))
			}
		}
		out[s] = v
	}
	return out
}

// Fingerprint hashes the whole envelope set (equal sets, equal fingerprints).
func (m *MemStore) Fingerprint() [32]byte {
	m.mu.Lock()
	var all [][]byte
	for _, sp := range m.logs {
		for _, log := range sp {
			all = append(all, log...)
		}
	}
	m.mu.Unlock()
	return meshDigest(all)
}
