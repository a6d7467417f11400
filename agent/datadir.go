package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"fieldsync/crypto"
)

// maxSocketPath is the longest Unix socket path the kernel accepts
// (sizeof(sun_path) - 1 for the terminating NUL).
const maxSocketPath = 107

// Layout names the files of a data directory. Every file that holds secrets
// is sealed; the rest (device.json, cert.json, trust.json) hold public keys
// only. See docs/storage.md.
type Layout struct{ Dir string }

// DefaultDataDir is $XDG_DATA_HOME/fieldsync, or ~/.local/share/fieldsync.
func DefaultDataDir() (string, error) {
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "fieldsync"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no data directory: set --data-dir or FIELDSYNC_DATA_DIR (%v)", err)
	}
	return filepath.Join(home, ".local", "share", "fieldsync"), nil
}

func (l Layout) Keystore() string   { return filepath.Join(l.Dir, "keystore") }    // sealed device keys
func (l Layout) Device() string     { return filepath.Join(l.Dir, "device.json") } // public: device ID and keys
func (l Layout) Cert() string       { return filepath.Join(l.Dir, "cert.json") }   // the device certificate
func (l Layout) Trust() string      { return filepath.Join(l.Dir, "trust.json") }  // trusted bureau keys
func (l Layout) Store() string      { return filepath.Join(l.Dir, "store") }       // the Badger directory
func (l Layout) Lock() string       { return filepath.Join(l.Dir, "agent.lock") }  // held by the running agent
func (l Layout) Quarantine() string { return filepath.Join(l.Dir, "quarantine") }  // stores set aside after a crash loop

// Socket is the agent's API socket: agent.sock in the data directory, or, when
// that path would exceed the kernel's limit, HASH.sock (HASH derived from the
// data directory, so the CLI finds it too) in a directory fieldsync-UID of
// the user's runtime directory, $XDG_RUNTIME_DIR, or of os.TempDir() when
// that is unset. The agent creates that directory 0700 and, like the CLI,
// refuses it unless the user owns it and no one else may enter it
// (PrepareSocketDir, CheckSocket): another local user who made it first
// cannot put an impostor agent where the CLI looks.
func (l Layout) Socket() string {
	p := filepath.Join(l.Dir, "agent.sock")
	if len(p) <= maxSocketPath {
		return p
	}
	abs, err := filepath.Abs(l.Dir)
	if err != nil {
		abs = l.Dir
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(runtimeDir(), fmt.Sprintf("fieldsync-%d", os.Getuid()), hex.EncodeToString(sum[:8])+".sock")
}

// runtimeDir is $XDG_RUNTIME_DIR when set to an absolute path, else the
// system's temporary directory.
func runtimeDir() string {
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" && filepath.IsAbs(x) {
		return x
	}
	return os.TempDir()
}

// SocketIsShort reports whether Socket() had to move out of the data directory.
func (l Layout) SocketIsShort() bool {
	return len(filepath.Join(l.Dir, "agent.sock")) > maxSocketPath
}

// ErrUnsafeSocket means the socket, or the directory it lives in, is not the
// user's alone: another local user could have put an impostor agent there.
var ErrUnsafeSocket = errors.New("unsafe agent socket")

// socketDir is the directory the socket lives in: the short directory, or
// the data directory with any symlink in its path resolved (a data
// directory may be a link the user made; the short directory may not).
func (l Layout) socketDir() (dir string, short bool) {
	if l.SocketIsShort() {
		return filepath.Dir(l.Socket()), true
	}
	dir = l.Dir
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		dir = r
	}
	return dir, false
}

// PrepareSocketDir makes sure the directory the agent's socket goes in
// exists and is the user's: the short fieldsync-UID directory (created 0700
// here when missing), which must be the user's and grant group and others
// no access at all; or the data directory, which must be the user's and not
// writable by group or others (read access there lets no one replace or
// reach the socket, which is 0600, and data directories made by hand are
// often 0755). A symlink for the short directory is refused. The error
// names the directory and what to do.
func (l Layout) PrepareSocketDir() error {
	dir, short := l.socketDir()
	if short {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("socket directory %s: %w (the data directory's path is too long for a socket; set XDG_RUNTIME_DIR to a private directory, or use a shorter --data-dir)", dir, err)
		}
	}
	return checkPrivateDir(dir, short)
}

// CheckSocket is what a client checks before it connects to the agent's
// socket: the socket is not a symlink, is a socket, and the user owns it;
// its directory is the user's and no one else may write to it. A failure
// wraps ErrUnsafeSocket; no socket at all is fs.ErrNotExist.
func (l Layout) CheckSocket() error {
	dir, _ := l.socketDir()
	if err := checkPrivateDir(dir, false); err != nil {
		return err
	}
	return checkSocketFile(l.Socket(), false)
}

// checkOwnSocket is the agent's check of the socket it has just created:
// its own, and no access for group or others.
func checkOwnSocket(path string) error {
	return checkSocketFile(path, true)
}

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
	return WriteFileAtomic(l.Trust(), append(data, '\n'), 0o600)
}

// WriteFileAtomic writes data to a temporary file in the same directory,
// fsyncs it, and renames it over path, so a crash leaves the old or the new
// file, never a torn one.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
