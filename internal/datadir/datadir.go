// Package datadir handles a device's data directory (docs/storage.md): the
// names of its files, the one atomic file writer every replaced file goes
// through, the one path that seals the keystore, the device certificate and
// trust list, and where the agent's socket lives and who may use it. It
// knows nothing of the agent; what differs between systems comes from
// internal/platform.
package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// Layout names the files of a data directory. Every file that holds secrets
// is sealed; the rest (device.json, cert.json, trust.json) hold public keys
// only. See docs/storage.md.
type Layout struct{ Dir string }

func (l Layout) Keystore() string   { return filepath.Join(l.Dir, "keystore") }    // sealed device keys
func (l Layout) Device() string     { return filepath.Join(l.Dir, "device.json") } // public: device ID and keys
func (l Layout) Cert() string       { return filepath.Join(l.Dir, "cert.json") }   // the device certificate
func (l Layout) Trust() string      { return filepath.Join(l.Dir, "trust.json") }  // trusted bureau keys
func (l Layout) Store() string      { return filepath.Join(l.Dir, "store") }       // the Badger directory
func (l Layout) Lock() string       { return filepath.Join(l.Dir, "agent.lock") }  // held by the running agent
func (l Layout) Quarantine() string { return filepath.Join(l.Dir, "quarantine") }  // stores set aside after a crash loop

// QuarantineMarker is the file whose presence stops the agent from starting
// on a store that crash-looped.
func (l Layout) QuarantineMarker() string { return filepath.Join(l.Dir, "QUARANTINED") }

// DefaultDir is where a data directory goes when none is named: on Linux
// and other Unix systems $XDG_DATA_HOME/fieldsync, or
// ~/.local/share/fieldsync; on macOS ~/Library/Application Support/fieldsync;
// on Windows %LocalAppData%\fieldsync.
func DefaultDir() (string, error) {
	return defaultDir(runtime.GOOS, os.Getenv, os.UserHomeDir)
}

func defaultDir(goos string, getenv func(string) string, home func() (string, error)) (string, error) {
	noDir := func(err error) (string, error) {
		return "", fmt.Errorf("no data directory: set --data-dir or FIELDSYNC_DATA_DIR (%v)", err)
	}
	switch goos {
	case "windows":
		if d := getenv("LocalAppData"); d != "" {
			return filepath.Join(d, "fieldsync"), nil
		}
		return noDir(errors.New("%LocalAppData% is not set"))
	case "darwin", "ios":
		h, err := home()
		if err != nil {
			return noDir(err)
		}
		return filepath.Join(h, "Library", "Application Support", "fieldsync"), nil
	}
	if x := getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "fieldsync"), nil
	}
	h, err := home()
	if err != nil {
		return noDir(err)
	}
	return filepath.Join(h, ".local", "share", "fieldsync"), nil
}
