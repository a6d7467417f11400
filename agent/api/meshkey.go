package api

import (
	"context"
	"errors"
)

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
