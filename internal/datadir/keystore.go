package datadir

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"

	"fieldsync/crypto"
)

// ErrNotInitialized means the data directory holds no keystore.
var ErrNotInitialized = errors.New("no device in this data directory")

// ErrNotEnrolled means the device has no certificate yet.
var ErrNotEnrolled = errors.New("device is not enrolled")

// Unlock is what opens the keystore: a passphrase or a key file's contents.
type Unlock struct {
	Passphrase []byte
	KeyFile    []byte // contents of the key file (init --key-file)
}

// LoadKeystore opens the data directory's keystore.
func LoadKeystore(l Layout, u Unlock) (*crypto.Keystore, error) {
	data, err := os.ReadFile(l.Keystore())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s (create one with `fieldsync init`)", ErrNotInitialized, l.Dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read keystore: %w", err)
	}
	if u.KeyFile != nil {
		key, err := crypto.ParseKeyFile(u.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("key file: %w", err)
		}
		defer clear(key)
		ks, err := crypto.OpenKeystoreWithKeyFile(data, key)
		if err != nil {
			return nil, fmt.Errorf("open keystore %s: %w", l.Keystore(), err)
		}
		return ks, nil
	}
	ks, err := crypto.OpenKeystore(data, u.Passphrase)
	if err != nil {
		return nil, fmt.Errorf("open keystore %s: %w", l.Keystore(), err)
	}
	return ks, nil
}

// SealKeystore seals ks under u: its key file if it has one, else its
// passphrase with the argon2id parameters p (ignored for a key file). It is
// the one place a keystore is sealed; WriteKeystore puts the result in place.
func SealKeystore(ks *crypto.Keystore, u Unlock, p crypto.KDFParams) ([]byte, error) {
	if u.KeyFile != nil {
		key, err := crypto.ParseKeyFile(u.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("key file: %w", err)
		}
		defer clear(key)
		sealed, err := crypto.SealKeystoreWithKeyFile(ks, key, rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("seal keystore: %w", err)
		}
		return sealed, nil
	}
	if u.Passphrase == nil {
		return nil, errors.New("seal keystore: neither a passphrase nor a key file")
	}
	sealed, err := crypto.SealKeystore(ks, u.Passphrase, p, rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("seal keystore: %w", err)
	}
	return sealed, nil
}

// WriteKeystore replaces the data directory's keystore with sealed (from
// SealKeystore), readable by its owner only.
func WriteKeystore(l Layout, sealed []byte) error {
	if err := WriteFile(l.Keystore(), sealed, 0o600); err != nil {
		return fmt.Errorf("write keystore: %w", err)
	}
	return nil
}

// KeystoreKDF reads the argon2id parameters the keystore on disk is sealed
// with, so that what is sealed again under its passphrase costs the same.
func KeystoreKDF(l Layout) (crypto.KDFParams, error) {
	data, err := os.ReadFile(l.Keystore())
	if err != nil {
		return crypto.KDFParams{}, fmt.Errorf("read keystore: %w", err)
	}
	p, err := crypto.KeystoreKDFParams(data)
	if err != nil {
		return crypto.KDFParams{}, fmt.Errorf("keystore: %w", err)
	}
	return p, nil
}

// ResealKeystore replaces the keystore on disk with ks, sealed under the
// same passphrase (and argon2id parameters) or key file as the file is now.
// The file must still open with u and still hold ks's device: sealing under
// a passphrase changed meanwhile would undo the change.
func ResealKeystore(l Layout, ks *crypto.Keystore, u Unlock) error {
	onDisk, err := LoadKeystore(l, u)
	if err != nil {
		return fmt.Errorf("the keystore no longer opens with what this agent was started with (was its passphrase changed?): restart the agent: %w", err)
	}
	same := onDisk.Identity.ID() == ks.Identity.ID()
	onDisk.Zero()
	if !same {
		return fmt.Errorf("the keystore %s now holds another device: restart the agent", l.Keystore())
	}
	var p crypto.KDFParams
	if u.KeyFile == nil {
		if p, err = KeystoreKDF(l); err != nil {
			return err
		}
	}
	sealed, err := SealKeystore(ks, u, p)
	if err != nil {
		return err
	}
	return WriteKeystore(l, sealed)
}

// LoadCert reads the device certificate; ErrNotEnrolled if there is none.
func LoadCert(l Layout) (*crypto.Certificate, error) {
	data, err := os.ReadFile(l.Cert())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotEnrolled
	}
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	c, err := crypto.ParseCertificate(data)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", l.Cert(), err)
	}
	return c, nil
}

// trustFile is trust.json: the bureau public keys this device trusts.
type trustFile struct {
	Version int      `json:"version"`
	Bureaus []string `json:"bureaus"` // each a BureauPublic.Marshal() text
}

// LoadTrust reads the trusted bureau keys (an empty set if none).
func LoadTrust(l Layout) (*crypto.TrustSet, error) {
	data, err := os.ReadFile(l.Trust())
	if errors.Is(err, fs.ErrNotExist) {
		return crypto.NewTrustSet(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read trust list: %w", err)
	}
	var tf trustFile
	if err := json.Unmarshal(data, &tf); err != nil {
		return nil, fmt.Errorf("trust list %s is corrupt: %v", l.Trust(), err)
	}
	if tf.Version != 1 {
		return nil, fmt.Errorf("trust list %s has unknown version %d", l.Trust(), tf.Version)
	}
	ts := crypto.NewTrustSet()
	for _, b := range tf.Bureaus {
		bp, err := crypto.ParseBureauPublic([]byte(b))
		if err != nil {
			return nil, fmt.Errorf("trust list %s: %w", l.Trust(), err)
		}
		ts.Add(bp)
	}
	return ts, nil
}

// SaveTrust writes the trusted bureau keys atomically.
func SaveTrust(l Layout, ts *crypto.TrustSet) error {
	tf := trustFile{Version: 1}
	for _, b := range ts.List() {
		tf.Bureaus = append(tf.Bureaus, string(b.Marshal()))
	}
	sort.Strings(tf.Bureaus)
	data, err := json.MarshalIndent(tf, "", "  ")
	if err != nil {
		return err
	}
	return WriteFile(l.Trust(), append(data, '\n'), 0o600)
}
