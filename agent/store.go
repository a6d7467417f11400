package agent

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"fieldsync/crypto"
	"fieldsync/internal/store"
)

// errCorrupt means a stored value failed authentication: the disk returned
// something other than what was written. It is never returned as data.
var errCorrupt = errors.New("stored value is corrupt")

// sealedKV is the kv with every value sealed under the local value key, the
// Badger key being the additional data (docs/design.md §7: Badger's own encryption
// does not authenticate, and it can return a corrupted value as empty data).
type sealedKV struct {
	kv  *store.DB
	key [32]byte
	// cold finds epoch keys to thaw cold envelopes (cold.go).
	cold coldKeyring
}

func (s *sealedKV) seal(key, plaintext []byte) []byte {
	return crypto.SealValue(&s.key, key, plaintext, rand.Reader)
}

// open opens a stored value; an envelope stored in cold form (cold.go) is
// thawed to its exact bytes, so no reader ever sees the cold form.
func (s *sealedKV) open(key, sealed []byte) ([]byte, error) {
	pt, err := s.openRaw(key, sealed)
	if err == nil && len(key) > 0 && key[0] == pfxEnvelope && crypto.IsCold(pt) {
		return s.thaw(key, pt)
	}
	return pt, err
}

// openRaw opens a stored value as stored (a cold envelope stays cold).
func (s *sealedKV) openRaw(key, sealed []byte) ([]byte, error) {
	pt, err := crypto.OpenValue(&s.key, key, sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: key %x", errCorrupt, key)
	}
	return pt, nil
}

// get returns the opened value at key: errKVNotFound, errCorrupt, or an I/O error.
func (s *sealedKV) get(key []byte) ([]byte, error) {
	v, err := s.kv.Get(key)
	if err != nil {
		return nil, err
	}
	return s.open(key, v)
}

// entry builds a sealed kvEntry.
func (s *sealedKV) entry(key, plaintext []byte) kvEntry {
	return kvEntry{Key: key, Val: s.seal(key, plaintext)}
}

// scan calls fn with every opened value under prefix. A value that fails
// authentication is passed to onCorrupt (if set) and skipped.
func (s *sealedKV) scan(prefix []byte, fn func(key, val []byte) error, onCorrupt func(key []byte)) error {
	return s.kv.Scan(prefix, func(k, v []byte) error {
		pt, err := s.open(k, v)
		if err != nil {
			if onCorrupt != nil {
				onCorrupt(k)
				return nil
			}
			return err
		}
		return fn(k, pt)
	})
}

// head is the contiguous prefix of one author's log held in one space: every
// seq from 1 to Seq is stored, and Hash is crypto.Hash of envelope Seq.
type head struct {
	Seq  uint64
	Hash [32]byte
}

func (h head) marshal() []byte {
	b := binary.BigEndian.AppendUint64(nil, h.Seq)
	return append(b, h.Hash[:]...)
}

func unmarshalHead(b []byte) (head, error) {
	if len(b) != 40 {
		return head{}, fmt.Errorf("%w: head of %d bytes", errCorrupt, len(b))
	}
	var h head
	h.Seq = binary.BigEndian.Uint64(b)
	copy(h.Hash[:], b[8:])
	return h, nil
}

// spaceMeta is what the agent knows of a space besides its records.
type spaceMeta struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	Owner     string   `json:"owner"`      // owning bureau name
	OwnerFP   string   `json:"owner_fp"`   // owning bureau fingerprint
	Release   []string `json:"release"`    // released bureau names
	ReleaseFP []string `json:"release_fp"` // released bureau fingerprints (sorted)
	Epoch     string   `json:"epoch"`      // current epoch key ID (hex); "" if none held
	// Routings are the space's routing records: the release list is
	// computed from them (routing.go, docs/crdt.md "Release lists").
	Routings []routingEntry `json:"routings,omitempty"`
	// Nonce binds the space ID to its owner (crypto.SpaceIDFor); every
	// routing record carries it.
	Nonce [16]byte `json:"nonce"`
	// EpochStarts dated each epoch by its earliest key share (packed HLC)
	// before epochs were ordered causally: read from older stores, no
	// longer used (dropped when the epochs are next rebuilt).
	EpochStarts map[string]uint64 `json:"epoch_starts,omitempty"`
	// Epochs is what the log says of each epoch, by key ID: the epochs it
	// replaces, per bureau of the shares' authors (routing.go, "Epoch
	// keys"; docs/crdt.md "Epochs").
	Epochs map[string]*epochInfo `json:"epochs,omitempty"`
	// Receipts is the space's receipt policy, from its newest policy
	// envelope (receipts.go); nil: off.
	Receipts *receiptPolicy `json:"receipts,omitempty"`
	// Retention is the space's retention policy, from its newest
	// retention envelope (retention.go); nil: none.
	Retention *retentionPolicy `json:"retention,omitempty"`
}

func (m *spaceMeta) marshal() []byte {
	b, _ := json.Marshal(m)
	return b
}

// formatRecord is the meta value that names the storage format.
type formatRecord struct {
	Format int    `json:"format"`
	Device string `json:"device"`
}
