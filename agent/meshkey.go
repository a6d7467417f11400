package agent

import (
	"bytes"
	"fmt"
	"net/http"
	"sync"

	"fieldsync/agent/api"
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

func init() {
	apiExtensions = append(apiExtensions, func(a *Agent, mux *http.ServeMux) {
		mux.HandleFunc("GET "+api.PathMeshKeyList, func(w http.ResponseWriter, r *http.Request) {
			a.reply(w, a.MeshKeys(), nil)
		})
		post(a, mux, api.PathMeshKeyAdd, func(req api.MeshKeyRequest) (any, error) { return a.AddMeshKey(req.Key) })
		post(a, mux, api.PathMeshKeyUse, func(req api.MeshKeyRequest) (any, error) { return a.UseMeshKey(req.Key) })
		post(a, mux, api.PathMeshKeyRemove, func(req api.MeshKeyRequest) (any, error) { return a.RemoveMeshKey(req.Key) })
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
func (a *Agent) MeshKeys() api.MeshKeyring {
	keys := a.meshKeyring()
	if e := a.engine(); e != nil {
		keys = e.MeshKeys()
	}
	out := api.MeshKeyring{Override: a.cfg.MeshKey != nil, Keys: []api.MeshKeyInfo{}}
	for i, k := range keys {
		out.Keys = append(out.Keys, api.MeshKeyInfo{Fingerprint: crypto.MeshKeyFingerprint(k), Primary: i == 0})
	}
	return out
}

// AddMeshKey makes the agent accept key (gossip and stream proofs) besides
// its others; it keeps sending under its primary.
func (a *Agent) AddMeshKey(key []byte) (api.MeshKeyring, error) {
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
func (a *Agent) UseMeshKey(key []byte) (api.MeshKeyring, error) {
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
func (a *Agent) RemoveMeshKey(key []byte) (api.MeshKeyring, error) {
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
func (a *Agent) changeMeshKeys(op string, key []byte, plan func(primary []byte, others [][]byte) ([]byte, [][]byte, error), apply func(*fsync.Engine) error) (api.MeshKeyring, error) {
	if err := validMeshKey(key); err != nil {
		return api.MeshKeyring{}, err
	}
	if a.cfg.MeshKey != nil {
		return api.MeshKeyring{}, fmt.Errorf("%w: this agent runs with --mesh-key-file, which overrides the keystore's keyring: rotate by editing that file and restarting, or restart without the flag to use the keystore's keyring", ErrConflict)
	}
	meshKeyMu.Lock()
	primary, others, err := plan(bytes.Clone(a.ks.MeshKey), cloneKeys(a.ks.MeshKeys))
	if err == nil && primary != nil {
		err = a.saveMeshKeys(primary, others)
	}
	meshKeyMu.Unlock()
	if err != nil {
		return api.MeshKeyring{}, err
	}
	if primary != nil {
		if e := a.engine(); e != nil {
			if err := apply(e); err != nil {
				return api.MeshKeyring{}, fmt.Errorf("mesh key %s: saved in the keystore but not applied (restart the agent): %w", op, err)
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
