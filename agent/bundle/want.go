package bundle

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"fieldsync/crypto"
)

// WriteWant writes this device's want file: its version vector of every
// space it holds, signed by its device key, with its certificate.
func WriteWant(c Core, req WantRequest) (WantResult, error) {
	want := crypto.Want{Vectors: map[crypto.SpaceID]map[crypto.DeviceID]uint64{}}
	for _, id := range c.SpaceIDs() {
		heads, err := c.Heads(id)
		if err != nil {
			return WantResult{}, err
		}
		v := make(map[crypto.DeviceID]uint64, len(heads))
		for author, seq := range heads {
			if seq > 0 {
				v[author] = seq
			}
		}
		want.Vectors[id] = v
	}
	self, cert := c.Self()
	n, err := CreateFile(req.Out, func(w io.Writer) error {
		return crypto.MarshalWant(w, want, self, cert, c.Now())
	})
	if err != nil {
		return WantResult{}, err
	}
	return WantResult{Out: req.Out, Device: self.ID().String(), Spaces: len(want.Vectors), Bytes: n}, nil
}

// CreateFile creates path (which must not exist) with what write produces:
// written to a temporary file beside it, synced, then linked into place, so
// a failed export never leaves a partial file under the name. It returns
// the bytes written.
func CreateFile(path string, write func(io.Writer) error) (int64, error) {
	if !filepath.IsAbs(path) {
		return 0, fmt.Errorf("%w: output path %q is not absolute", ErrBadRequest, path)
	}
	if _, err := os.Lstat(path); err == nil {
		return 0, fmt.Errorf("%w: %s already exists: remove it first or choose another --out", ErrBadRequest, path)
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".partial-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fmt.Errorf("%w: create %s: %v", ErrBadRequest, path, err)
	}
	defer os.Remove(tmp)
	cw := &countingWriter{w: f}
	if err := write(cw); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	if err := linkNew(tmp, path); err != nil {
		return 0, err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return cw.n, nil
}

// linkNew puts tmp in place as path. Link refuses to replace a file that
// appeared meanwhile; file systems without links (FAT on removable media)
// get a rename after a check.
func linkNew(tmp, path string) error {
	err := os.Link(tmp, path)
	if err == nil {
		return nil
	}
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: %s already exists: remove it first or choose another --out", ErrBadRequest, path)
	}
	if _, serr := os.Lstat(path); serr == nil {
		return fmt.Errorf("%w: %s already exists", ErrBadRequest, path)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// readWant reads and checks a receiver's want file: signed by the device its
// certificate names, from a bureau this device trusts, not revoked.
func readWant(c Core, path string) (crypto.Want, *crypto.Certificate, error) {
	if !filepath.IsAbs(path) {
		return crypto.Want{}, nil, fmt.Errorf("%w: want file path %q is not absolute", ErrBadRequest, path)
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return crypto.Want{}, nil, fmt.Errorf("%w: want file %s: no such file", ErrNotFound, path)
	}
	if err != nil {
		return crypto.Want{}, nil, fmt.Errorf("%w: want file %s: %v", ErrBadRequest, path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return crypto.Want{}, nil, fmt.Errorf("%w: want file %s: %v", ErrBadRequest, path, err)
	}
	if !st.Mode().IsRegular() {
		return crypto.Want{}, nil, fmt.Errorf("%w: want file %s is not a regular file", ErrBadRequest, path)
	}
	if st.Size() > maxWantFile {
		return crypto.Want{}, nil, fmt.Errorf("%w: want file %s: %d bytes, over the limit of %d", ErrRefused, path, st.Size(), maxWantFile)
	}
	// The signature and the signer first, in constant memory: nothing of a
	// file its sender did not sign, or from a sender this device does not
	// trust, is parsed into memory.
	_, sender, err := crypto.CheckBundleSignature(bufio.NewReader(f), st.Size(), crypto.BundleWant)
	if err != nil {
		return crypto.Want{}, nil, fmt.Errorf("%w: want file %s: %v", ErrRefused, path, err)
	}
	if err := judgeSender(c, sender); err != nil {
		return crypto.Want{}, nil, fmt.Errorf("%w: want file %s: %v", ErrRefused, path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return crypto.Want{}, nil, err
	}
	w, _, cert, err := crypto.ParseWant(io.LimitReader(f, maxWantFile))
	if err != nil {
		return crypto.Want{}, nil, fmt.Errorf("%w: want file %s: %v", ErrRefused, path, err)
	}
	if !bytes.Equal(cert.MarshalBinary(), sender.MarshalBinary()) {
		return crypto.Want{}, nil, fmt.Errorf("%w: want file %s changed while it was being read: read it again", ErrRefused, path)
	}
	return w, cert, nil
}

// judgeSender decides whether a file signed by the device of cert may be
// believed: its bureau trusted, its certificate not expired, the device not
// revoked. A certificate not yet valid by our clock is accepted (our clock
// is more likely behind, as at the sync stream).
func judgeSender(c Core, cert *crypto.Certificate) error {
	dev := cert.Device.ID()
	pinned, conflict := c.Pin(cert)
	if conflict {
		return fmt.Errorf("signed by device %s with a certificate of bureau %s that conflicts with the one it is pinned to here (bureau %s)", dev, cert.Bureau.Name, pinned.Bureau.Name)
	}
	if pinned == nil && !cert.Countersigned() {
		return fmt.Errorf("signed by device %s whose certificate lacks its own countersignature (version 1): it must start once with this version first", dev)
	}
	if err := cert.Verify(c.TrustAnywhere(cert), c.Now()); err != nil {
		switch {
		case errors.Is(err, crypto.ErrNotYetValid):
			c.Log().Warn("a bundle sender's certificate is not yet valid by this device's clock; accepting it (is the clock behind?)", "device", dev.String())
		case errors.Is(err, crypto.ErrUntrusted):
			return fmt.Errorf("signed by device %s of bureau %s (%s), which this device does not trust (add its key with `fieldsync trust add` if you mean to): %v",
				dev, cert.Bureau.Name, cert.Bureau.Fingerprint(), err)
		default:
			return fmt.Errorf("signed by device %s whose certificate is not valid: %v", dev, err)
		}
	}
	if c.Revocations()[dev] != nil {
		return fmt.Errorf("signed by device %s, which is revoked", dev)
	}
	return nil
}
