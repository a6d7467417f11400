package agent

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"fieldsync/crypto"
	"fieldsync/internal/datadir"
)

// DeviceFile is device.json: the device's public identity, readable without
// the passphrase (so `cert install` can check that a certificate is for this
// device, and scripts can print the device ID). It holds no secret and no
// case data.
type DeviceFile struct {
	Version  int    `json:"version"`   // 1
	ID       string `json:"id"`        // device ID (base32, 26 chars); must match SignKey
	SignKey  string `json:"sign_key"`  // Ed25519 public key, standard base64
	AgreeKey string `json:"agree_key"` // X25519 public key, standard base64
}

// maxDeviceFile bounds what LoadDevice reads.
const maxDeviceFile = 64 << 10

// SaveDevice writes device.json atomically.
func SaveDevice(l Layout, p crypto.DevicePublic) error {
	if len(p.SignKey) != ed25519.PublicKeySize {
		return fmt.Errorf("device public key has %d bytes, want %d", len(p.SignKey), ed25519.PublicKeySize)
	}
	df := DeviceFile{
		Version:  1,
		ID:       p.ID().String(),
		SignKey:  base64.StdEncoding.EncodeToString(p.SignKey),
		AgreeKey: base64.StdEncoding.EncodeToString(p.AgreeKey[:]),
	}
	data, err := json.MarshalIndent(df, "", "  ")
	if err != nil {
		return err
	}
	return datadir.WriteFile(l.Device(), append(data, '\n'), 0o644)
}

// LoadDevice reads device.json; the error wraps ErrNotInitialized if there is
// none. It checks that the ID matches the signing key.
func LoadDevice(l Layout) (crypto.DevicePublic, error) {
	var p crypto.DevicePublic
	f, err := os.Open(l.Device())
	if errors.Is(err, fs.ErrNotExist) {
		return p, fmt.Errorf("%w: %s (create one with `fieldsync init`)", ErrNotInitialized, l.Dir)
	}
	if err != nil {
		return p, fmt.Errorf("read device file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxDeviceFile+1))
	if err != nil {
		return p, fmt.Errorf("read device file: %w", err)
	}
	if len(data) > maxDeviceFile {
		return p, fmt.Errorf("device file %s is over %d bytes", l.Device(), maxDeviceFile)
	}
	var df DeviceFile
	if err := json.Unmarshal(data, &df); err != nil {
		return p, fmt.Errorf("device file %s is corrupt: %v", l.Device(), err)
	}
	if df.Version != 1 {
		return p, fmt.Errorf("device file %s has unknown version %d", l.Device(), df.Version)
	}
	sk, err := base64.StdEncoding.DecodeString(df.SignKey)
	if err != nil || len(sk) != ed25519.PublicKeySize {
		return p, fmt.Errorf("device file %s: bad sign_key", l.Device())
	}
	ak, err := base64.StdEncoding.DecodeString(df.AgreeKey)
	if err != nil || len(ak) != 32 {
		return p, fmt.Errorf("device file %s: bad agree_key", l.Device())
	}
	p.SignKey = ed25519.PublicKey(sk)
	copy(p.AgreeKey[:], ak)
	if got := p.ID().String(); got != df.ID {
		return crypto.DevicePublic{}, fmt.Errorf("device file %s: id %s does not match its key (%s)", l.Device(), df.ID, got)
	}
	return p, nil
}
