package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crypto"
	"fieldsync/internal/datadir"
	"fieldsync/internal/store"
	fsync "fieldsync/sync"
)

// Restoring a backup (docs/backup.md) makes a new incarnation of the device
// (docs/design.md §7): a fresh device key, enrolled again, and the old device
// revoked, so that no (author, seq) is ever signed twice. The restored store
// holds everything the backup held, the old device's envelopes included
// (valid up to its cut-off); the new device writes under its own ID from
// seq 1, and catches up from peers like any device.
//
// # The cut-off
//
// The old device may have written after the backup, and peers may hold
// those writes. A revocation at the backup's heads would refuse them on
// every replica that has not stored them yet, while the peers that have
// keep them: the mesh would never converge again on those spaces. So the
// cut-off is what the mesh holds: CatchUp runs the restored device until it
// has finished a sync round with the peers it reaches, and only then are
// the old device's heads it holds signed into the revocation. Writes the old
// device made that no peer had are lost with it either way (they were never
// acknowledged to anyone else); with the revocation they can never appear
// later. Offline (no peer reachable), the backup's heads are the only
// knowledge, and restore says what that costs.

// ErrRestoreTarget means the data directory cannot receive a restore.
var ErrRestoreTarget = errors.New("data directory cannot receive a restore")

// CheckRestoreTarget accepts a data directory that is absent or empty, and
// explains what to do with any other.
func CheckRestoreTarget(l Layout) error {
	entries, err := os.ReadDir(l.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("data directory %s: %w", l.Dir, err)
	}
	if len(entries) == 0 {
		return nil
	}
	if _, err := api.Dial(l); err == nil {
		return fmt.Errorf("%w: an agent is running on %s: stop it, then move that directory aside (keep it until the restored device has caught up) or restore into an empty --data-dir", ErrRestoreTarget, l.Dir)
	}
	if dev, err := LoadDevice(l); err == nil {
		return fmt.Errorf("%w: %s holds device %s; restore makes a new device and never overwrites one: move the directory aside (or delete it if that device is lost for good) or restore into an empty --data-dir", ErrRestoreTarget, l.Dir, dev.ID())
	}
	return fmt.Errorf("%w: %s is not empty: restore into a new or empty --data-dir", ErrRestoreTarget, l.Dir)
}

// BackupReader reads an opened backup: its manifest at once, its entries
// as Restore streams them. Each frame is authenticated as it is read.
type BackupReader struct {
	br       *bufio.Reader
	key      [32]byte
	id       [16]byte
	index    uint64
	manifest backupManifest
	old      crypto.DeviceID
	oldCert  *crypto.Certificate
}

// OpenBackup reads a backup's header with u (the passphrase, or the key
// file, that the backed-up device was unlocked with) and its manifest.
// A wrong passphrase is crypto.ErrWrongPassphrase; a damaged file
// crypto.ErrMalformed.
func OpenBackup(r io.Reader, u Unlock) (*BackupReader, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	fixed := make([]byte, crypto.SealedHeaderSize)
	if _, err := io.ReadFull(br, fixed); err != nil {
		return nil, fmt.Errorf("backup header: %w", errBackupTruncated)
	}
	n, keyFile, err := crypto.BackupHeaderLen(fixed)
	if err != nil {
		return nil, fmt.Errorf("not a fieldsync backup, or a damaged one: %w", err)
	}
	hdr := make([]byte, n)
	copy(hdr, fixed)
	if _, err := io.ReadFull(br, hdr[len(fixed):]); err != nil {
		return nil, fmt.Errorf("backup header: %w", errBackupTruncated)
	}
	var payload []byte
	switch {
	case keyFile && u.KeyFile == nil:
		return nil, fmt.Errorf("%w: the backup is sealed with a key file (give --key-file)", crypto.ErrWrongPassphrase)
	case !keyFile && u.KeyFile != nil:
		return nil, fmt.Errorf("%w: the backup is sealed with a passphrase, not a key file", crypto.ErrWrongPassphrase)
	case keyFile:
		fk, err := crypto.ParseKeyFile(u.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("key file: %w", err)
		}
		payload, err = crypto.OpenBackupHeaderWithKeyFile(hdr, fk)
		clear(fk)
		if err != nil {
			return nil, err
		}
	default:
		if payload, err = crypto.OpenBackupHeader(hdr, u.Passphrase); err != nil {
			return nil, err
		}
	}
	defer clear(payload)
	if len(payload) != 1+32+16 || payload[0] != backupHeaderVersion {
		return nil, fmt.Errorf("backup header: %w", crypto.ErrUnknownVersion)
	}
	b := &BackupReader{br: br}
	copy(b.key[:], payload[1:33])
	copy(b.id[:], payload[33:])
	flags, mj, err := b.frame()
	if err != nil {
		return nil, err
	}
	defer clear(mj)
	if flags != 0 {
		return nil, fmt.Errorf("backup: no manifest: %w", crypto.ErrMalformed)
	}
	if err := json.Unmarshal(mj, &b.manifest); err != nil {
		return nil, fmt.Errorf("backup manifest: %v: %w", err, crypto.ErrMalformed)
	}
	m := &b.manifest
	if m.Format != backupFormat {
		return nil, fmt.Errorf("backup format %d (this fieldsync reads %d): upgrade fieldsync: %w", m.Format, backupFormat, crypto.ErrUnknownVersion)
	}
	if m.Storage != storageFormatWhole {
		return nil, fmt.Errorf("backup of storage format %d (this fieldsync restores %d): upgrade fieldsync: %w", m.Storage, storageFormatWhole, crypto.ErrUnknownVersion)
	}
	if b.oldCert, err = crypto.ParseCertificate(m.Cert); err != nil {
		return nil, fmt.Errorf("backup manifest: certificate: %w", err)
	}
	b.old = b.oldCert.ID()
	if b.old.String() != m.Device {
		return nil, fmt.Errorf("backup manifest: certificate of %s for device %s: %w", b.old, m.Device, crypto.ErrMalformed)
	}
	if len(m.MeshKeys) == 0 || len(m.MeshKeys) > crypto.MaxMeshKeys {
		return nil, fmt.Errorf("backup manifest: %d mesh keys: %w", len(m.MeshKeys), crypto.ErrMalformed)
	}
	for _, k := range m.MeshKeys {
		if validMeshKey(k) != nil {
			return nil, fmt.Errorf("backup manifest: a mesh key of %d bytes: %w", len(k), crypto.ErrMalformed)
		}
	}
	return b, nil
}

// OldDevice is the device that was backed up.
func (b *BackupReader) OldDevice() crypto.DeviceID { return b.old }

// OldCertificate is the backed-up device's certificate.
func (b *BackupReader) OldCertificate() *crypto.Certificate { return b.oldCert }

// Created is when the backup was taken (by the backed-up device's clock).
func (b *BackupReader) Created() time.Time { return b.manifest.Created }

// frame reads and opens the next frame.
func (b *BackupReader) frame() (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(b.br, h[:]); err != nil {
		return 0, nil, errBackupTruncated
	}
	flags, size := h[0], binary.BigEndian.Uint32(h[1:])
	if size > maxBackupFrame || flags&^frameFinal != 0 {
		return 0, nil, fmt.Errorf("backup frame %d: bad header: %w", b.index, crypto.ErrMalformed)
	}
	sealed := make([]byte, size)
	if _, err := io.ReadFull(b.br, sealed); err != nil {
		return 0, nil, errBackupTruncated
	}
	pt, err := crypto.OpenValue(&b.key, frameAD(b.id, b.index, flags), sealed)
	if err != nil {
		return 0, nil, fmt.Errorf("backup frame %d does not authenticate (damaged or altered): %w", b.index, crypto.ErrMalformed)
	}
	b.index++
	return flags, pt, nil
}

// entries calls fn with every store entry of the backup, then checks the
// trailer and that nothing follows it.
func (b *BackupReader) entries(fn func(k, v []byte) error) (int, error) {
	n := 0
	for {
		flags, pt, err := b.frame()
		if err != nil {
			return n, err
		}
		if flags&frameFinal != 0 {
			var t backupTrailer
			if err := json.Unmarshal(pt, &t); err != nil {
				return n, fmt.Errorf("backup trailer: %v: %w", err, crypto.ErrMalformed)
			}
			if t.Entries != n || uint64(t.Frames) != b.index-1 {
				return n, fmt.Errorf("backup trailer counts %d entries in %d frames, read %d in %d: %w", t.Entries, t.Frames, n, b.index-1, crypto.ErrMalformed)
			}
			if _, err := b.br.ReadByte(); err != io.EOF {
				return n, fmt.Errorf("backup: trailing bytes after the final frame: %w", crypto.ErrMalformed)
			}
			return n, nil
		}
		for p := pt; len(p) > 0; {
			if len(p) < 4 {
				return n, fmt.Errorf("backup frame %d: truncated entry: %w", b.index-1, crypto.ErrMalformed)
			}
			kl := binary.BigEndian.Uint32(p)
			if uint64(len(p)) < 8+uint64(kl) {
				return n, fmt.Errorf("backup frame %d: truncated entry: %w", b.index-1, crypto.ErrMalformed)
			}
			k := p[4 : 4+kl]
			vl := binary.BigEndian.Uint32(p[4+kl:])
			if uint64(len(p)) < 8+uint64(kl)+uint64(vl) || kl == 0 {
				return n, fmt.Errorf("backup frame %d: truncated entry: %w", b.index-1, crypto.ErrMalformed)
			}
			v := p[8+kl : 8+kl+vl]
			if err := fn(k, v); err != nil {
				return n, err
			}
			n++
			p = p[8+kl+vl:]
		}
		clear(pt)
	}
}

// RestoreConfig says where and how to restore.
type RestoreConfig struct {
	// Layout is the new data directory: absent or empty (CheckRestoreTarget).
	Layout Layout
	// Unlock seals the new keystore: a passphrase or a key file's contents
	// (normally what opened the backup).
	Unlock Unlock
	// KDF are the argon2id parameters of a passphrase keystore.
	KDF crypto.KDFParams
	// Enroll signs the new device's request with the old device's role;
	// nil enrolls nothing (Result.Request goes to a bureau elsewhere).
	Enroll func(req *crypto.Request, role crypto.Role) (*crypto.Certificate, error)
	// Trust adds bureau keys to the restored trust list (the enrolling bureau).
	Trust []crypto.BureauPublic
}

// RestoreResult describes a restored device.
type RestoreResult struct {
	Device    crypto.DeviceID
	OldDevice crypto.DeviceID
	Request   *crypto.Request
	Cert      *crypto.Certificate // nil when not enrolled yet
	Entries   int
	// OldHeads are the old device's own log heads in the backup, by space:
	// the cut-offs of an offline revocation.
	OldHeads map[crypto.SpaceID]uint64
}

// Restore writes the backup into a new data directory as a new device: a
// fresh identity and storage key, the officer name and mesh keyring of the
// backup, every store entry of the backup sealed again under the new key,
// and the trust list; enrolled at once if cfg.Enroll is set. The keystore
// is written last. On failure, what it wrote is removed.
func Restore(cfg RestoreConfig, b *BackupReader) (res *RestoreResult, err error) {
	l := cfg.Layout
	if err := CheckRestoreTarget(l); err != nil {
		return nil, err
	}
	if cfg.Unlock.Passphrase == nil && cfg.Unlock.KeyFile == nil {
		return nil, errors.New("restore: neither a passphrase nor a key file to seal the new keystore")
	}
	m := &b.manifest
	id, err := crypto.NewIdentity(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new device identity: %v", err)
	}
	ks := &crypto.Keystore{Identity: id, Officer: m.Officer, MeshKey: bytes.Clone(m.MeshKeys[0]), MeshKeys: cloneKeys(m.MeshKeys[1:])}
	defer ks.Zero()
	if _, err := io.ReadFull(rand.Reader, ks.StorageKey[:]); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(rand.Reader, ks.NameSalt[:]); err != nil {
		return nil, err
	}
	res = &RestoreResult{Device: id.ID(), OldDevice: b.old, OldHeads: map[crypto.SpaceID]uint64{}}
	res.Request = crypto.NewRequest(id, crypto.NameCommitment(m.Officer, ks.NameSalt))
	if cfg.Enroll != nil {
		if res.Cert, err = cfg.Enroll(res.Request, b.oldCert.Role); err != nil {
			return nil, fmt.Errorf("enroll the new device: %w", err)
		}
		if res.Cert.ID() != res.Device {
			return nil, errors.New("enroll the new device: the certificate is for another device")
		}
	}
	sealed, err := datadir.SealKeystore(ks, cfg.Unlock, cfg.KDF)
	if err != nil {
		return nil, err
	}

	if err := os.MkdirAll(l.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	defer func() {
		if err != nil { // leave the directory empty, as it was
			for _, p := range []string{l.Store(), l.Device(), l.Cert(), l.Trust(), l.Keystore(), l.Lock()} {
				os.RemoveAll(p)
			}
		}
	}()
	if res.Entries, err = restoreStore(l, ks, b, res); err != nil {
		return nil, err
	}
	if err = SaveDevice(l, id.Public()); err != nil {
		return nil, fmt.Errorf("write device file: %w", err)
	}
	if res.Cert != nil {
		if err = datadir.WriteFile(l.Cert(), res.Cert.Marshal(), 0o644); err != nil {
			return nil, fmt.Errorf("write certificate: %w", err)
		}
	}
	ts := crypto.NewTrustSet(cfg.Trust...)
	for _, t := range m.Trust {
		bp, perr := crypto.ParseBureauPublic([]byte(t))
		if perr != nil {
			err = fmt.Errorf("backup manifest: trusted bureau: %w", perr)
			return nil, err
		}
		ts.Add(bp)
	}
	if err = datadir.SaveTrust(l, ts); err != nil {
		return nil, fmt.Errorf("write trust list: %w", err)
	}
	if err = datadir.WriteKeystore(l, sealed); err != nil {
		return nil, err
	}
	return res, nil
}

// restoreStore creates the new device's store and copies the backup's
// entries into it, sealed under the new storage key; the format record
// names the new device. It records the old device's heads in res.
func restoreStore(l Layout, ks *crypto.Keystore, b *BackupReader, res *RestoreResult) (int, error) {
	if err := os.MkdirAll(l.Store(), 0o700); err != nil {
		return 0, fmt.Errorf("create store directory: %w", err)
	}
	badgerKey := crypto.DeriveKey(&ks.StorageKey, "fieldsync badger encryption v1")
	k, err := store.Open(store.Options{Dir: l.Store(), EncryptionKey: badgerKey[:]})
	clear(badgerKey[:])
	if err != nil {
		return 0, &StoreError{Dir: l.Store(), Err: err}
	}
	defer k.Close()
	db := &sealedKV{kv: k, key: crypto.DeriveKey(&ks.StorageKey, "fieldsync value seal v1")}
	defer clear(db.key[:])
	// The backup holds envelopes thawed: the restored store is of format 1.
	f, _ := jsonMarshal(formatRecord{Format: storageFormatWhole, Device: ks.Identity.ID().String()})
	group := []kvEntry{db.entry(metaKey("format"), f), db.entry(certKey(b.old), b.oldCert.MarshalBinary())}
	size := 0
	flush := func() error {
		if len(group) == 0 {
			return nil
		}
		errs := k.CommitGroups([][]kvEntry{group})
		group, size = nil, 0
		return errs[0]
	}
	formatKey := metaKey("format")
	n, err := b.entries(func(key, val []byte) error {
		if bytes.Equal(key, formatKey) {
			return nil
		}
		if len(key) == 33 && key[0] == pfxHead {
			var sp crypto.SpaceID
			var author crypto.DeviceID
			copy(sp[:], key[1:17])
			copy(author[:], key[17:33])
			if author == b.old {
				h, err := unmarshalHead(val)
				if err != nil {
					return fmt.Errorf("backup: head of space %s: %w", sp, err)
				}
				res.OldHeads[sp] = h.Seq
			}
		}
		e := db.entry(bytes.Clone(key), val)
		group = append(group, e)
		size += len(e.Key) + len(e.Val)
		if size >= maxGroupBytes {
			return flush()
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	if err := flush(); err != nil {
		return n, &StoreError{Dir: l.Store(), Err: err}
	}
	return n, nil
}

// CatchUpResult reports a restored device's first contact with the mesh.
type CatchUpResult struct {
	Peers   []string                  // peers a sync round completed with
	Cutoffs map[crypto.SpaceID]uint64 // the old device's heads held after catching up
	Revoked bool                      // the revocation is stored (and offered to Peers)
}

// CatchUp runs the agent of a restored data directory (cfg) until it has
// completed a sync round with every mesh member it learns of (at least
// one), or ctx ends; then it reads the old device's heads it holds — the
// cut-offs of the revocation (see "The cut-off" above). If revoke is not
// nil it signs the revocation with them; CatchUp stores it and offers it to
// the peers at once (it spreads as a mesh object from there).
func CatchUp(ctx context.Context, cfg Config, old crypto.DeviceID, revoke func(cutoffs map[crypto.SpaceID]uint64) ([]byte, error)) (*CatchUpResult, error) {
	a, err := New(cfg)
	if err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	defer func() {
		stop()
		<-done
	}()
	var e *fsync.Engine
	for e == nil {
		select {
		case err := <-done:
			done <- err
			return nil, fmt.Errorf("restored agent: %w", err)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		e = a.engine()
	}
	synced := map[fsync.PeerID]bool{}
	for ctx.Err() == nil {
		members := e.Members()
		all := len(members) > 0
		for _, m := range members {
			if synced[m] {
				continue
			}
			if _, err := e.SyncWith(ctx, m); err == nil {
				synced[m] = true
			} else {
				all = false
				a.log.Info("catch-up round failed; retrying", "peer", m.String(), "err", err)
			}
		}
		if all && len(synced) > 0 {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	out := &CatchUpResult{Cutoffs: a.authorHeads(old)}
	for p := range synced {
		out.Peers = append(out.Peers, p.String())
	}
	sort.Strings(out.Peers)
	if len(synced) == 0 {
		return out, errors.New("no peer answered: nothing is known of what the mesh holds")
	}
	if revoke == nil {
		return out, nil
	}
	blob, err := revoke(out.Cutoffs)
	if err != nil {
		return out, fmt.Errorf("sign revocation: %w", err)
	}
	if _, err := a.AddRevocation(blob); err != nil {
		return out, fmt.Errorf("store revocation: %w", err)
	}
	out.Revoked = true
	pushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for p := range synced {
		if _, err := e.SyncWith(pushCtx, p); err != nil {
			a.log.Info("offering the revocation failed; it spreads at the next round", "peer", p.String(), "err", err)
		}
	}
	return out, nil
}

// authorHeads returns the contiguous heads of dev's logs held, by space.
func (a *Agent) authorHeads(dev crypto.DeviceID) map[crypto.SpaceID]uint64 {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	out := map[crypto.SpaceID]uint64{}
	for id, s := range a.spaces {
		if h, ok := s.heads[dev]; ok && h.Seq > 0 {
			out[id] = h.Seq
		}
	}
	return out
}

// StoreRevocation opens the (stopped) agent of cfg, stores a revocation
// and closes it: the offline end of a restore. It spreads as a mesh object
// once the agent runs.
func StoreRevocation(cfg Config, blob []byte) error {
	a, err := New(cfg)
	if err != nil {
		return err
	}
	defer a.Close()
	_, err = a.AddRevocation(blob)
	return err
}
