package sync

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/hashicorp/memberlist"
)

// Mesh-key rotation on a running engine (docs/sync.md "Rotating the mesh
// key"). The keyring is memberlist's own: gossip is sealed under its
// primary key and opened with any key on it, and the sync streams' mesh
// proof is made with the primary and accepted under any key on it. So a
// mesh rotates without a partition in three rounds, each finished on every
// node before the next begins:
//
//  1. AddMeshKey(new) everywhere: every node accepts the new key;
//  2. UseMeshKey(new) everywhere: nodes send under it one by one, which
//     the others already accept;
//  3. RemoveMeshKey(old) everywhere: nobody sends under it any more.
//
// The engine does not persist the keyring: its owner (the agent) does.

// ErrMeshKeyPrimary refuses to remove the key the node sends under.
var ErrMeshKeyPrimary = errors.New("the primary mesh key cannot be removed (use another key first)")

// ErrMeshKeyAbsent means the key is not on the keyring.
var ErrMeshKeyAbsent = errors.New("mesh key is not on the keyring")

// MeshKeys returns a copy of the keyring, primary first.
func (e *Engine) MeshKeys() [][]byte {
	keys := e.keyring.GetKeys()
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = bytes.Clone(k)
	}
	return out
}

// AddMeshKey puts key on the keyring: it is accepted from now on (gossip and
// stream proofs) but not used to send. Adding a key already there changes
// nothing.
func (e *Engine) AddMeshKey(key []byte) error {
	if err := memberlist.ValidateKey(key); err != nil {
		return fmt.Errorf("mesh key: %v", err)
	}
	// A copy: memberlist keeps the slice, and callers zero theirs.
	return e.keyring.AddKey(bytes.Clone(key))
}

// UseMeshKey makes key (already on the keyring) the primary: gossip is sent
// under it and stream proofs are made with it. The other keys stay accepted.
func (e *Engine) UseMeshKey(key []byte) error {
	if !e.hasMeshKey(key) {
		return ErrMeshKeyAbsent
	}
	return e.keyring.UseKey(key)
}

// RemoveMeshKey takes key off the keyring: gossip and stream proofs under
// it are refused from now on. The primary cannot be removed.
//
// memberlist's RemoveKey shifts the keys after the removed one down within
// the slice it last handed out to readers. In a normal rotation the ring
// holds two keys and the removed one is last, so nothing moves. With more
// keys, a packet being opened at that instant may miss a remaining key and
// be dropped, like any lost UDP packet (a stream round fails and is
// retried).
func (e *Engine) RemoveMeshKey(key []byte) error {
	if !e.hasMeshKey(key) {
		return ErrMeshKeyAbsent
	}
	if bytes.Equal(e.keyring.GetPrimaryKey(), key) {
		return ErrMeshKeyPrimary
	}
	return e.keyring.RemoveKey(key)
}

func (e *Engine) hasMeshKey(key []byte) bool {
	for _, k := range e.keyring.GetKeys() {
		if bytes.Equal(k, key) {
			return true
		}
	}
	return false
}
