package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"fieldsync/crypto"
	"fieldsync/internal/datadir"
	fsync "fieldsync/sync"
)

// Mesh-key rotation through the running agent (docs/sync.md "Rotating the
// mesh key", docs/api.md "Mesh keys"). Each change is sealed into the
// keystore first (so it survives a restart or a worker crash) and then
// applied to the running engine's keyring.
//
// --mesh-key-file (Config.MeshKey) overrides the keystore's keyring: the
// agent then sends and accepts that one key only, and refuses rotation
// requests, since they could not outlive the override (the next start would
// use the file again). Rotate such a node by editing its file and
// restarting it, or drop the flag: the keystore's keyring is used then.

// Local API paths of the mesh keyring.
const (
	PathMeshKeyList   = "/v1/mesh-key/list"   // GET  -> MeshKeyring
	PathMeshKeyAdd    = "/v1/mesh-key/add"    // POST MeshKeyRequest -> MeshKeyring
	PathMeshKeyUse    = "/v1/mesh-key/use"    // POST MeshKeyRequest -> MeshKeyring
	PathMeshKeyRemove = "/v1/mesh-key/remove" // POST MeshKeyRequest -> MeshKeyring
)

// MeshKeyRequest names one mesh key: its raw bytes (16, 24 or 32; base64 in
// JSON). It travels only over the agent's own socket (mode 0600).
type MeshKeyRequest struct {
	Key []byte `json:"key"`
}

// MeshKeyInfo is one key of the keyring, named by its fingerprint
// (crypto.MeshKeyFingerprint), never shown.
type MeshKeyInfo struct {
	Fingerprint string `json:"fingerprint"`
	Primary     bool   `json:"primary"` // the key gossip is sent under
}

// MeshKeyring is the agent's mesh keyring, primary first.
type MeshKeyring struct {
	Keys []MeshKeyInfo `json:"keys"`
	// Override is true when the agent runs with --mesh-key-file: Keys is
	// that file's key, and rotation requests are refused.
	Override bool `json:"override"`
	// Changed reports whether the request changed the keyring (adding a key
	// already there, or using the primary, changes nothing).
	Changed bool `json:"changed"`
}

func init() {
	apiExtensions = append(apiExtensions, func(a *Agent, mux *http.ServeMux) {
		mux.HandleFunc("GET "+PathMeshKeyList, func(w http.ResponseWriter, r *http.Request) {
			a.reply(w, a.MeshKeys(), nil)
		})
		post(a, mux, PathMeshKeyAdd, func(req MeshKeyRequest) (any, error) { return a.AddMeshKey(req.Key) })
		post(a, mux, PathMeshKeyUse, func(req MeshKeyRequest) (any, error) { return a.UseMeshKey(req.Key) })
		post(a, mux, PathMeshKeyRemove, func(req MeshKeyRequest) (any, error) { return a.RemoveMeshKey(req.Key) })
	})
}

// meshKeyMu serialises keyring changes (and the keystore rewrites they
// make) with each other and with startSync's read of the keyring.
var meshKeyMu sync.Mutex

// meshKeyring is the keyring the sync engine starts with, primary first,
// as copies (the keystore's are zeroed on Close): the --mesh-key-file
// override alone, or the keystore's primary and other keys.
func (a *Agent) meshKeyring() [][]byte {
	meshKeyMu.Lock()
	defer meshKeyMu.Unlock()
	if a.cfg.MeshKey != nil {
		return [][]byte{bytes.Clone(a.cfg.MeshKey)}
	}
	if len(a.ks.MeshKey) == 0 {
		return nil
	}
	out := [][]byte{bytes.Clone(a.ks.MeshKey)}
	for _, k := range a.ks.MeshKeys {
		out = append(out, bytes.Clone(k))
	}
	return out
}

// MeshKeys describes the keyring: the running engine's, or the one it
// will start with.
func (a *Agent) MeshKeys() MeshKeyring {
	keys := a.meshKeyring()
	if e := a.engine(); e != nil {
		keys = e.MeshKeys()
	}
	out := MeshKeyring{Override: a.cfg.MeshKey != nil, Keys: []MeshKeyInfo{}}
	for i, k := range keys {
		out.Keys = append(out.Keys, MeshKeyInfo{Fingerprint: crypto.MeshKeyFingerprint(k), Primary: i == 0})
	}
	return out
}

// AddMeshKey makes the agent accept key (gossip and stream proofs) besides
// its others; it keeps sending under its primary.
func (a *Agent) AddMeshKey(key []byte) (MeshKeyring, error) {
	return a.changeMeshKeys("add", key, func(primary []byte, others [][]byte) ([]byte, [][]byte, error) {
		if bytes.Equal(key, primary) || containsKey(others, key) {
			return nil, nil, nil
		}
		if len(others)+1 >= crypto.MaxMeshKeys {
			return nil, nil, fmt.Errorf("%w: the keyring holds %d keys already (remove one first)", ErrBadRequest, crypto.MaxMeshKeys)
		}
		return primary, append(others, bytes.Clone(key)), nil
	}, func(e *fsync.Engine) error { return e.AddMeshKey(key) })
}

// UseMeshKey makes key, already on the keyring, the primary: gossip is sent
// under it from now on. The previous primary stays accepted.
func (a *Agent) UseMeshKey(key []byte) (MeshKeyring, error) {
	return a.changeMeshKeys("use", key, func(primary []byte, others [][]byte) ([]byte, [][]byte, error) {
		if bytes.Equal(key, primary) {
			return nil, nil, nil
		}
		if !containsKey(others, key) {
			return nil, nil, fmt.Errorf("%w: mesh key %s is not on the keyring: add it first (on every device) with `fieldsync mesh-key add`", ErrNotFound, crypto.MeshKeyFingerprint(key))
		}
		return bytes.Clone(key), append(withoutKey(others, key), primary), nil
	}, func(e *fsync.Engine) error { return e.UseMeshKey(key) })
}

// RemoveMeshKey stops accepting key. The primary cannot be removed.
func (a *Agent) RemoveMeshKey(key []byte) (MeshKeyring, error) {
	return a.changeMeshKeys("remove", key, func(primary []byte, others [][]byte) ([]byte, [][]byte, error) {
		if bytes.Equal(key, primary) {
			return nil, nil, fmt.Errorf("%w: mesh key %s is the primary: use another key first (`fieldsync mesh-key use`)", ErrConflict, crypto.MeshKeyFingerprint(key))
		}
		if !containsKey(others, key) {
			return nil, nil, fmt.Errorf("%w: mesh key %s is not on the keyring", ErrNotFound, crypto.MeshKeyFingerprint(key))
		}
		return primary, withoutKey(others, key), nil
	}, func(e *fsync.Engine) error { return e.RemoveMeshKey(key) })
}

// changeMeshKeys computes the new keyring with plan (a nil primary means
// nothing changes), seals it into the keystore, then applies it to the
// running engine with apply.
func (a *Agent) changeMeshKeys(op string, key []byte, plan func(primary []byte, others [][]byte) ([]byte, [][]byte, error), apply func(*fsync.Engine) error) (MeshKeyring, error) {
	if err := validMeshKey(key); err != nil {
		return MeshKeyring{}, err
	}
	if a.cfg.MeshKey != nil {
		return MeshKeyring{}, fmt.Errorf("%w: this agent runs with --mesh-key-file, which overrides the keystore's keyring: rotate by editing that file and restarting, or restart without the flag to use the keystore's keyring", ErrConflict)
	}
	meshKeyMu.Lock()
	primary, others, err := plan(bytes.Clone(a.ks.MeshKey), cloneKeys(a.ks.MeshKeys))
	if err == nil && primary != nil {
		err = a.saveMeshKeys(primary, others)
	}
	meshKeyMu.Unlock()
	if err != nil {
		return MeshKeyring{}, err
	}
	if primary != nil {
		if e := a.engine(); e != nil {
			if err := apply(e); err != nil {
				return MeshKeyring{}, fmt.Errorf("mesh key %s: saved in the keystore but not applied (restart the agent): %w", op, err)
			}
		}
		a.log.Info("mesh keyring changed", "op", op, "fingerprint", crypto.MeshKeyFingerprint(key))
	}
	out := a.MeshKeys()
	out.Changed = primary != nil
	return out, nil
}

// saveMeshKeys seals the keystore again with the new keyring, under the
// same passphrase (and argon2id parameters) or key file it was opened
// with, and replaces the file atomically. The caller holds meshKeyMu.
func (a *Agent) saveMeshKeys(primary []byte, others [][]byte) error {
	next := *a.ks
	next.MeshKey, next.MeshKeys = primary, others
	if err := datadir.ResealKeystore(a.cfg.Layout, &next, a.cfg.Unlock); err != nil {
		return err
	}
	a.ks.MeshKey, a.ks.MeshKeys = primary, others
	return nil
}

func validMeshKey(k []byte) error {
	switch len(k) {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("%w: a mesh key is 16, 24 or 32 bytes, not %d", ErrBadRequest, len(k))
}

func containsKey(keys [][]byte, k []byte) bool {
	for _, x := range keys {
		if bytes.Equal(x, k) {
			return true
		}
	}
	return false
}

func withoutKey(keys [][]byte, k []byte) [][]byte {
	var out [][]byte
	for _, x := range keys {
		if !bytes.Equal(x, k) {
			out = append(out, x)
		}
	}
	return out
}

func cloneKeys(keys [][]byte) [][]byte {
	out := make([][]byte, 0, len(keys))
	for _, k := range keys {
		out = append(out, bytes.Clone(k))
	}
	return out
}

// MeshKeys returns the agent's mesh keyring.
func (c *Client) MeshKeys(ctx context.Context) (MeshKeyring, error) {
	var out MeshKeyring
	err := c.Call(ctx, PathMeshKeyList, nil, &out)
	return out, err
}

// MeshKeyChange sends one keyring change: path is PathMeshKeyAdd,
// PathMeshKeyUse or PathMeshKeyRemove.
func (c *Client) MeshKeyChange(ctx context.Context, path string, key []byte) (MeshKeyring, error) {
	switch path {
	case PathMeshKeyAdd, PathMeshKeyUse, PathMeshKeyRemove:
	default:
		return MeshKeyring{}, errors.New("mesh key change: unknown path " + path)
	}
	var out MeshKeyring
	err := c.Call(ctx, path, MeshKeyRequest{Key: key}, &out)
	return out, err
}
