package agent

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crypto"
	"fieldsync/internal/datadir"
)

// Backups (docs/backup.md): a consistent snapshot of the running agent's
// store, taken in one read transaction (one Badger read timestamp), with
// every value opened and sealed again under a fresh data key; that key and
// the backup's ID are sealed in a header under the device's passphrase (or
// key file), with the keystore's argon2id parameters. A lost backup file
// reveals nothing without the passphrase. `fieldsync restore` turns a backup
// into a new incarnation of the device (agent/restore.go).

// backupManifest is the first frame of a backup.
type backupManifest struct {
	Format   int              `json:"format"` // backupFormat
	Storage  int              `json:"storage"`
	Device   string           `json:"device"`
	Role     string           `json:"role"`
	Officer  string           `json:"officer"`   // case data: only ever sealed
	MeshKeys [][]byte         `json:"mesh_keys"` // the keystore's keyring, primary first
	Trust    []string         `json:"trust"`     // trusted bureaus, BureauPublic.Marshal
	Cert     []byte           `json:"cert"`      // the device certificate, binary
	Created  time.Time        `json:"created"`
	Heads    []api.BackupHead `json:"heads"`
}

// backupTrailer is the last frame of a backup.
type backupTrailer struct {
	Entries int `json:"entries"`
	Frames  int `json:"frames"` // frames before this one
}

const (
	backupFormat = 1
	// backupHeaderVersion is the version byte of the sealed header payload.
	backupHeaderVersion = 1
	// backupFrameBytes is the plaintext size at which an entry frame is
	// closed (a single entry may make a frame larger).
	backupFrameBytes = 1 << 20
	// maxBackupFrame bounds one sealed frame on reading: the largest store
	// value (an envelope of a change at its limit) plus room.
	maxBackupFrame = 96 << 20
	frameFinal     = 1
	backupADLabel  = "fieldsync backup v1\x00"
)

func init() {
	apiExtensions = append(apiExtensions, func(a *Agent, mux *http.ServeMux) {
		mux.HandleFunc("POST "+api.PathBackup, a.serveBackup)
	})
}

func (a *Agent) serveBackup(w http.ResponseWriter, r *http.Request) {
	var req api.BackupRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		a.reply(w, nil, fmt.Errorf("%w: malformed JSON request: %v", ErrBadRequest, err))
		return
	}
	// Everything that can fail before the first byte fails as a JSON error.
	hdr, key, id, err := a.backupHeader()
	if err != nil {
		a.reply(w, nil, err)
		return
	}
	defer clear(key[:])
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Trailer", api.BackupTrailer+", "+api.BackupInfoTrailer)
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 256<<10)
	info, err := a.writeBackup(bw, hdr, &key, id)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		a.log.Error("backup failed", "err", err)
		w.Header().Set(api.BackupTrailer, strings.ReplaceAll(err.Error(), "\n", " "))
		return
	}
	b, _ := json.Marshal(info)
	w.Header().Set(api.BackupInfoTrailer, string(b))
	a.log.Info("backup written", "entries", info.Entries, "bytes", info.Bytes)
}

// backupHeader makes a fresh data key and backup ID and seals them under
// the device's own unlock secret.
func (a *Agent) backupHeader() (hdr []byte, key [32]byte, id [16]byte, err error) {
	if _, err = io.ReadFull(rand.Reader, key[:]); err != nil {
		return nil, key, id, err
	}
	if _, err = io.ReadFull(rand.Reader, id[:]); err != nil {
		return nil, key, id, err
	}
	// The backup is sealed under what opens the keystore on disk now: if
	// that changed since the agent started, say so rather than seal under a
	// passphrase the owner no longer uses.
	onDisk, err := datadir.LoadKeystore(a.cfg.Layout, a.cfg.Unlock)
	if err != nil {
		return nil, key, id, fmt.Errorf("the keystore no longer opens with what this agent was started with (was its passphrase changed?): restart the agent, then back up: %w", err)
	}
	onDisk.Zero()
	payload := append([]byte{backupHeaderVersion}, key[:]...)
	payload = append(payload, id[:]...)
	defer clear(payload)
	if a.cfg.Unlock.KeyFile != nil {
		fk, err := crypto.ParseKeyFile(a.cfg.Unlock.KeyFile)
		if err != nil {
			return nil, key, id, fmt.Errorf("key file: %w", err)
		}
		defer clear(fk)
		hdr, err = crypto.SealBackupHeaderWithKeyFile(payload, fk, rand.Reader)
		return hdr, key, id, err
	}
	p, err := datadir.KeystoreKDF(a.cfg.Layout)
	if err != nil {
		return nil, key, id, err
	}
	hdr, err = crypto.SealBackupHeader(payload, a.cfg.Unlock.Passphrase, p, rand.Reader)
	return hdr, key, id, err
}

// frameAD binds a frame to its backup, its place and whether it is last.
func frameAD(id [16]byte, index uint64, flags byte) []byte {
	ad := append([]byte(backupADLabel), id[:]...)
	ad = binary.BigEndian.AppendUint64(ad, index)
	return append(ad, flags)
}

// backupWriter writes sealed frames.
type backupWriter struct {
	w     io.Writer
	key   *[32]byte
	id    [16]byte
	index uint64
	n     int64
}

func (bw *backupWriter) frame(flags byte, pt []byte) error {
	sealed := crypto.SealValue(bw.key, frameAD(bw.id, bw.index, flags), pt, rand.Reader)
	var h [5]byte
	h[0] = flags
	binary.BigEndian.PutUint32(h[1:], uint32(len(sealed)))
	if _, err := bw.w.Write(h[:]); err != nil {
		return err
	}
	if _, err := bw.w.Write(sealed); err != nil {
		return err
	}
	bw.index++
	bw.n += int64(len(h) + len(sealed))
	return nil
}

// writeBackup writes the whole backup: header, manifest, the store's
// entries from one read transaction, trailer.
func (a *Agent) writeBackup(w io.Writer, hdr []byte, key *[32]byte, id [16]byte) (api.BackupInfo, error) {
	if _, err := w.Write(hdr); err != nil {
		return api.BackupInfo{}, err
	}
	bw := &backupWriter{w: w, key: key, id: id, n: int64(len(hdr))}
	m := a.backupManifest()
	mj, err := json.Marshal(m)
	if err != nil {
		return api.BackupInfo{}, err
	}
	err = bw.frame(0, mj)
	clear(mj)
	if err != nil {
		return api.BackupInfo{}, err
	}
	entries := 0
	var buf []byte
	// One scan of the whole key space is one Badger read transaction: the
	// backup is the store as of one read timestamp, whatever commits meanwhile.
	err = a.db.scan(nil, func(k, v []byte) error {
		if len(k) > 0 && k[0] == pfxPartial {
			// Prefixes of envelopes being received (partial.go): transient,
			// up to 256 MiB, and fetched again after a restore.
			clear(v)
			return nil
		}
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(k)))
		buf = append(buf, k...)
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(v)))
		buf = append(buf, v...)
		clear(v)
		entries++
		if len(buf) >= backupFrameBytes {
			err := bw.frame(0, buf)
			clear(buf)
			buf = buf[:0]
			return err
		}
		return nil
	}, nil)
	if err != nil {
		return api.BackupInfo{}, fmt.Errorf("read store: %w (a corrupt value: stop the agent and run `fieldsync repair`, then back up again)", err)
	}
	if len(buf) > 0 {
		err := bw.frame(0, buf)
		clear(buf)
		if err != nil {
			return api.BackupInfo{}, err
		}
	}
	tj, _ := json.Marshal(backupTrailer{Entries: entries, Frames: int(bw.index)})
	if err := bw.frame(frameFinal, tj); err != nil {
		return api.BackupInfo{}, err
	}
	return api.BackupInfo{Device: m.Device, Created: m.Created.Format(time.RFC3339), Entries: entries, Bytes: bw.n, Heads: m.Heads}, nil
}

// backupManifest describes the device: what restore needs besides the store.
// Its own heads are read now; the store scan that follows may include a
// few later writes, so restore takes the heads from the entries themselves.
func (a *Agent) backupManifest() backupManifest {
	m := backupManifest{
		Format: backupFormat, Storage: storageFormatWhole, Device: a.dev.String(), Role: a.cert.Role.String(),
		Officer: a.ks.Officer, Cert: a.cert.MarshalBinary(), Created: a.cfg.now().UTC().Truncate(time.Second),
		Heads: []api.BackupHead{},
	}
	m.MeshKeys = a.meshKeyring()
	for _, b := range a.trust.List() {
		m.Trust = append(m.Trust, string(b.Marshal()))
	}
	sort.Strings(m.Trust)
	a.withRead(func() error {
		for _, s := range a.sortedSpaces() {
			if h, ok := s.heads[a.dev]; ok {
				m.Heads = append(m.Heads, api.BackupHead{Space: s.id.String(), Seq: h.Seq})
			}
		}
		return nil
	})
	return m
}

// CheckBackupFraming reads a backup file's framing without its key: the
// sealed header, then frames up to the final one, at the end of the file.
// It detects truncation and trailing bytes, not tampering (restore does).
func CheckBackupFraming(r io.Reader) error {
	br := bufio.NewReader(r)
	fixed := make([]byte, crypto.SealedHeaderSize)
	if _, err := io.ReadFull(br, fixed); err != nil {
		return fmt.Errorf("backup header: %w", crypto.ErrMalformed)
	}
	n, _, err := crypto.BackupHeaderLen(fixed)
	if err != nil {
		return err
	}
	if _, err := br.Discard(n - len(fixed)); err != nil {
		return errBackupTruncated
	}
	for {
		var h [5]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return errBackupTruncated
		}
		size := binary.BigEndian.Uint32(h[1:])
		if size > maxBackupFrame || h[0]&^frameFinal != 0 {
			return fmt.Errorf("backup frame: %w", crypto.ErrMalformed)
		}
		if _, err := br.Discard(int(size)); err != nil {
			return errBackupTruncated
		}
		if h[0]&frameFinal != 0 {
			break
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return fmt.Errorf("backup: trailing bytes after the final frame: %w", crypto.ErrMalformed)
	}
	return nil
}

var errBackupTruncated = fmt.Errorf("backup is truncated (it ends before its final frame): %w", crypto.ErrMalformed)
