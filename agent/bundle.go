package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
	fsync "fieldsync/sync"
)

// Sneakernet bundles (docs/design.md §6, docs/bundle.md): `bundle want` writes this
// device's version vectors, signed; `bundle export` writes what a receiver
// lacks and is entitled to (or everything) as one signed file;
// `bundle import` verifies a whole bundle before it stores any of it.
//
// The agent reads and writes the files itself (the CLI passes absolute
// paths over the owner-only socket): a bundle is streamed from the store to
// the file and from the file to the store, never held in memory whole.

// Bundle API paths.
const (
	PathBundleWant   = "/v1/bundle/want"   // POST BundleWantRequest -> BundleWantResult
	PathBundleExport = "/v1/bundle/export" // POST BundleExportRequest -> BundleExportResult (NDJSON with progress)
	PathBundleImport = "/v1/bundle/import" // POST BundleImportRequest -> BundleImportResult (NDJSON with progress)
)

// ErrRefused is a bundle or want file refused whole; nothing of it was stored.
var ErrRefused = errors.New("refused")

// maxWantFile bounds a want file (vectors only: 24 bytes per author and space).
const maxWantFile = 64 << 20

// BundleWantRequest is `bundle want --out FILE`.
type BundleWantRequest struct {
	Out string `json:"out"` // absolute path of the file to create
}

// BundleWantResult describes the want file written.
type BundleWantResult struct {
	Out    string `json:"out"`
	Device string `json:"device"`
	Spaces int    `json:"spaces"`
	Bytes  int64  `json:"bytes"`
}

// BundleExportRequest is `bundle export [--space S] [--want FILE] --out FILE`.
type BundleExportRequest struct {
	Space    string `json:"space,omitempty"` // one space (ID, prefix or name); empty: every space
	Want     string `json:"want,omitempty"`  // absolute path of the receiver's want file
	Out      string `json:"out"`             // absolute path of the bundle to create
	Progress bool   `json:"progress,omitempty"`
}

// BundleSpaceCount is how many envelopes of a space a bundle carries (or an
// import added).
type BundleSpaceCount struct {
	Space     string `json:"space"`
	Envelopes int    `json:"envelopes"`
}

// BundleExportResult describes the bundle written.
type BundleExportResult struct {
	Out          string             `json:"out"`
	Recipient    string             `json:"recipient,omitempty"` // the want file's device
	Spaces       []BundleSpaceCount `json:"spaces"`
	Envelopes    int                `json:"envelopes"`
	KeyShares    int                `json:"key_shares"` // key-share envelopes among them
	Certificates int                `json:"certificates"`
	Revocations  int                `json:"revocations"`
	Evidence     int                `json:"evidence"`
	NotEntitled  []string           `json:"not_entitled"` // spaces held but not released to the recipient's bureau
	Corrupt      int                `json:"corrupt"`      // envelopes left out: corrupt in this store
	Bytes        int64              `json:"bytes"`
}

// BundleImportRequest is `bundle import FILE`.
type BundleImportRequest struct {
	File     string `json:"file"` // absolute path
	Progress bool   `json:"progress,omitempty"`
}

// BundleSkip is a run of envelopes of one author in one space that an
// import left out, and why (a Reject reason).
type BundleSkip struct {
	Space   string `json:"space"`
	Author  string `json:"author"`
	From    uint64 `json:"from"`
	To      uint64 `json:"to"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// BundleImportResult is what an import added and what it left out.
type BundleImportResult struct {
	File            string             `json:"file"`
	Exporter        string             `json:"exporter"`
	ExporterBureau  string             `json:"exporter_bureau"`
	Created         string             `json:"created"`
	Recipient       string             `json:"recipient,omitempty"`
	Envelopes       int                `json:"envelopes"`    // in the bundle
	Added           int                `json:"added"`        // newly stored
	AlreadyHeld     int                `json:"already_held"` // held before
	Skipped         int                `json:"skipped"`      // left out (see skips)
	Spaces          []BundleSpaceCount `json:"spaces"`       // added, by space
	Certificates    int                `json:"certificates_added"`
	Revocations     int                `json:"revocations_added"`
	Evidence        int                `json:"evidence_added"`
	SkippedObjects  int                `json:"skipped_objects"` // certificates/revocations/evidence not accepted
	Skips           []BundleSkip       `json:"skips"`
	SkipsOmitted    int                `json:"skips_omitted,omitempty"` // runs of skips not listed (over 4,096)
	ObjectSkipNotes []string           `json:"object_skips,omitempty"`
}

// BundleProgress is one progress line of a long export or import.
type BundleProgress struct {
	Phase string `json:"phase"` // export | verify | store
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
	Unit  string `json:"unit"` // envelopes | bytes
}

func init() {
	apiExtensions = append(apiExtensions, func(a *Agent, mux *http.ServeMux) {
		post(a, mux, PathBundleWant, func(req BundleWantRequest) (any, error) { return a.WriteWant(req) })
		bundleRoute(a, mux, PathBundleExport, func(req BundleExportRequest) bool { return req.Progress },
			func(ctx context.Context, req BundleExportRequest, p func(BundleProgress)) (any, error) {
				return a.ExportBundle(ctx, req, p)
			})
		bundleRoute(a, mux, PathBundleImport, func(req BundleImportRequest) bool { return req.Progress },
			func(ctx context.Context, req BundleImportRequest, p func(BundleProgress)) (any, error) {
				return a.ImportBundle(ctx, req, p)
			})
	})
}

// bundleLine is one line of a streamed (progress) response.
type bundleLine = api.ProgressLine[BundleProgress]

// bundleRoute registers a long-running bundle method. Without progress it
// answers like every other method; with progress the answer is NDJSON:
// progress lines, then one line with the result or the error.
func bundleRoute[T any](a *Agent, mux *http.ServeMux, path string, wantsProgress func(T) bool, fn func(context.Context, T, func(BundleProgress)) (any, error)) {
	mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
		var req T
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, a.cfg.MaxRequestBytes))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			a.replyBundle(w, nil, fmt.Errorf("%w: malformed JSON request: %v", ErrBadRequest, err))
			return
		}
		if !wantsProgress(req) {
			v, err := fn(r.Context(), req, nil)
			a.replyBundle(w, v, err)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		enc := json.NewEncoder(w)
		flusher, _ := w.(http.Flusher)
		last := time.Time{}
		progress := func(p BundleProgress) {
			// At most ten lines a second, and the last one always.
			if now := time.Now(); now.Sub(last) >= 100*time.Millisecond || p.Done == p.Total {
				last = now
				enc.Encode(bundleLine{Progress: &p})
				if flusher != nil {
					flusher.Flush()
				}
			}
		}
		v, err := fn(r.Context(), req, progress)
		if err != nil {
			code, _ := bundleErrorCode(err)
			enc.Encode(bundleLine{Error: &api.ErrorDetail{Code: code, Message: err.Error()}})
			return
		}
		b, _ := json.Marshal(v)
		enc.Encode(bundleLine{Result: b})
	})
}

func bundleErrorCode(err error) (string, int) {
	if errors.Is(err, ErrRefused) {
		return api.CodeRefused, api.HTTPStatus(api.CodeRefused)
	}
	return errorCode(err)
}

func (a *Agent) replyBundle(w http.ResponseWriter, v any, err error) {
	if err == nil || !errors.Is(err, ErrRefused) {
		a.reply(w, v, err)
		return
	}
	code, status := bundleErrorCode(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: err.Error()}})
}

// ---- want ----

// WriteWant writes this device's want file: its version vector of every
// space it holds, signed by its device key, with its certificate.
func (a *Agent) WriteWant(req BundleWantRequest) (BundleWantResult, error) {
	want := crypto.Want{Vectors: map[crypto.SpaceID]map[crypto.DeviceID]uint64{}}
	for _, id := range a.SpaceIDs() {
		heads, err := syncAdapter{a}.Heads(fsync.SpaceID(id))
		if err != nil {
			return BundleWantResult{}, err
		}
		v := make(map[crypto.DeviceID]uint64, len(heads))
		for author, seq := range heads {
			if seq > 0 {
				v[crypto.DeviceID(author)] = seq
			}
		}
		want.Vectors[id] = v
	}
	n, err := writeFileAtomically(req.Out, func(w io.Writer) error {
		return crypto.MarshalWant(w, want, a.id, a.cert, a.cfg.now())
	})
	if err != nil {
		return BundleWantResult{}, err
	}
	return BundleWantResult{Out: req.Out, Device: a.dev.String(), Spaces: len(want.Vectors), Bytes: n}, nil
}

// writeFileAtomically creates path (which must not exist) with what write
// produces: written to a temporary file beside it, synced, then linked into
// place, so a failed export never leaves a partial file under the name.
func writeFileAtomically(path string, write func(io.Writer) error) (int64, error) {
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
	// Link refuses to replace a file that appeared meanwhile; file systems
	// without links (FAT on removable media) get a rename after a check.
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return 0, fmt.Errorf("%w: %s already exists: remove it first or choose another --out", ErrBadRequest, path)
		}
		if _, serr := os.Lstat(path); serr == nil {
			return 0, fmt.Errorf("%w: %s already exists", ErrBadRequest, path)
		}
		if err := os.Rename(tmp, path); err != nil {
			return 0, fmt.Errorf("write %s: %w", path, err)
		}
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return cw.n, nil
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
func (a *Agent) readWant(path string) (crypto.Want, *crypto.Certificate, error) {
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
	if err := a.judgeSender(sender); err != nil {
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
func (a *Agent) judgeSender(cert *crypto.Certificate) error {
	dev := cert.Device.ID()
	a.statMu.Lock()
	pinned := a.certs[dev]
	a.statMu.Unlock()
	if pinned != nil && !sameEnrollment(pinned, cert) {
		return fmt.Errorf("signed by device %s with a certificate of bureau %s that conflicts with the one it is pinned to here (bureau %s)", dev, cert.Bureau.Name, pinned.Bureau.Name)
	}
	if pinned == nil && !cert.Countersigned() {
		return fmt.Errorf("signed by device %s whose certificate lacks its own countersignature (version 1): it must start once with this version first", dev)
	}
	if err := cert.Verify(a.trustAnywhere(cert), a.cfg.now()); err != nil {
		switch {
		case errors.Is(err, crypto.ErrNotYetValid):
			a.log.Warn("a bundle sender's certificate is not yet valid by this device's clock; accepting it (is the clock behind?)", "device", dev.String())
		case errors.Is(err, crypto.ErrUntrusted):
			return fmt.Errorf("signed by device %s of bureau %s (%s), which this device does not trust (add its key with `fieldsync trust add` if you mean to): %v",
				dev, cert.Bureau.Name, cert.Bureau.Fingerprint(), err)
		default:
			return fmt.Errorf("signed by device %s whose certificate is not valid: %v", dev, err)
		}
	}
	a.statMu.Lock()
	rev := a.revs[dev]
	a.statMu.Unlock()
	if rev != nil {
		return fmt.Errorf("signed by device %s, which is revoked", dev)
	}
	return nil
}

// ---- export ----

// ExportBundle writes a bundle: the certificates, revocations and fork
// evidence this device knows, and the envelopes of the chosen spaces — all
// of them, or, given the receiver's want file, those it lacks of the spaces
// it is entitled to (after wrapping the space keys to it when it is an
// entitled officer this device had not met). progress may be nil. When ctx
// ends (the client went away) the export stops and leaves no file.
func (a *Agent) ExportBundle(ctx context.Context, req BundleExportRequest, progress func(BundleProgress)) (BundleExportResult, error) {
	res := BundleExportResult{Out: req.Out, Spaces: []BundleSpaceCount{}, NotEntitled: []string{}}
	var spaces []crypto.SpaceID
	if req.Space != "" {
		a.writeMu.Lock()
		sp, err := a.resolveSpace(req.Space)
		a.writeMu.Unlock()
		if err != nil {
			return res, err
		}
		spaces = []crypto.SpaceID{sp.id}
	} else {
		spaces = a.SpaceIDs()
	}
	var want crypto.Want
	var recipient crypto.DeviceID
	if req.Want != "" {
		w, cert, err := a.readWant(req.Want)
		if err != nil {
			return res, err
		}
		want, recipient = w, cert.Device.ID()
		res.Recipient = recipient.String()
		if recipient != a.dev {
			// Meeting the receiver: keep its certificate and wrap the space
			// keys to it if it is an entitled officer (ShareKeys decides),
			// so the bundle carries its key shares.
			if _, err := a.AddCertificate(cert.MarshalBinary()); err != nil {
				return res, fmt.Errorf("receiver's certificate: %w", err)
			}
			if _, err := a.ShareKeys(); err != nil {
				return res, fmt.Errorf("share keys with the receiver: %w", err)
			}
		}
		peer := fsync.Peer{ID: fsync.PeerID(recipient), Bureau: cert.Bureau.Fingerprint(), Role: fsync.Role(cert.Role), SignKey: cert.Device.SignKey}
		kept := spaces[:0]
		for _, id := range spaces {
			if (syncAdapter{a}).Entitled(peer, fsync.SpaceID(id)) {
				kept = append(kept, id)
			} else {
				res.NotEntitled = append(res.NotEntitled, id.String())
			}
		}
		if req.Space != "" && len(kept) == 0 {
			return res, fmt.Errorf("%w: device %s of bureau %s is not entitled to space %s (it is not released to that bureau)", ErrForbidden, recipient, cert.Bureau.Name, spaces[0])
		}
		spaces = kept
	}
	// What to send: per space, per author, the seqs above the receiver's.
	type plan struct {
		space crypto.SpaceID
		have  map[crypto.DeviceID]uint64
		heads fsync.Vector
	}
	var plans []plan
	var total int64
	for _, id := range spaces {
		heads, err := syncAdapter{a}.Heads(fsync.SpaceID(id))
		if err != nil {
			return res, err
		}
		have := want.Vectors[id]
		for author, seq := range heads {
			if h := have[crypto.DeviceID(author)]; seq > h {
				total += int64(seq - h)
			}
		}
		plans = append(plans, plan{space: id, have: have, heads: heads})
	}
	// What an importer would refuse is not written: the limits of a bundle
	// (docs/bundle.md, "Limits").
	lim := bundleLimits
	certs := a.knownCerts()
	a.statMu.Lock()
	var revs [][]byte
	for _, r := range a.revs {
		revs = append(revs, r.Marshal())
	}
	a.statMu.Unlock()
	slices.SortFunc(revs, bytes.Compare)
	evidence := a.evidenceBlobs()
	if err := checkExportLimits(lim, certs, a.dev, revs, evidence); err != nil {
		return res, err
	}
	if len(plans) > lim.Spaces {
		return res, fmt.Errorf("%w: %d spaces to export, over the limit of %d spaces an importer accepts in one bundle: export fewer with --space", errTooLarge, len(plans), lim.Spaces)
	}
	pairs := 0
	for _, p := range plans {
		var n uint64
		for author, seq := range p.heads {
			if h := p.have[crypto.DeviceID(author)]; seq > h {
				n += seq - h
				pairs++
			}
		}
		if n > uint64(lim.EnvelopesPerSpace) {
			return res, fmt.Errorf("%w: %d envelopes of space %s to export, over the limit of %d an importer accepts in one bundle: export for the receiver's want file, carry the bundle, and export again",
				errTooLarge, n, p.space, lim.EnvelopesPerSpace)
		}
	}
	if total > int64(lim.Envelopes) {
		return res, fmt.Errorf("%w: %d envelopes to export, over the limit of %d an importer accepts in one bundle: export one space at a time with --space", errTooLarge, total, lim.Envelopes)
	}
	if pairs > lim.Authors {
		return res, fmt.Errorf("%w: %d (space, author) logs to export, over the limit of %d an importer accepts in one bundle: export one space at a time with --space", errTooLarge, pairs, lim.Authors)
	}
	var done int64
	report := func() {
		if progress != nil {
			progress(BundleProgress{Phase: "export", Done: done, Total: total, Unit: "envelopes"})
		}
	}
	report()
	n, err := writeFileAtomically(req.Out, func(w io.Writer) error {
		bw, err := crypto.NewBundleWriter(w, crypto.BundleExport, a.id, a.cert, recipient, a.cfg.now())
		if err != nil {
			return err
		}
		for _, c := range certs {
			if c.Device.ID() == a.dev {
				continue // the sender item carries it
			}
			if err := bw.Add(crypto.ItemCertificate, c.MarshalBinary()); err != nil {
				return err
			}
			res.Certificates++
		}
		for _, r := range revs {
			if err := bw.Add(crypto.ItemRevocation, r); err != nil {
				return err
			}
			res.Revocations++
		}
		for _, e := range evidence {
			if err := bw.Add(crypto.ItemEvidence, e); err != nil {
				return err
			}
			res.Evidence++
		}
		for _, p := range plans {
			count := 0
			err := a.scanToSend(p.space, p.have, p.heads, func(env []byte) error {
				if h, err := crypto.ParseHeader(env); err == nil && h.Kind == crypto.KindKeyShare {
					res.KeyShares++
				}
				count++
				done++
				if done%512 == 0 {
					if err := ctx.Err(); err != nil {
						return fmt.Errorf("export interrupted: %w", err)
					}
					report()
				}
				return bw.Add(crypto.ItemEnvelope, env)
			}, func() { res.Corrupt++ })
			if err != nil {
				return err
			}
			res.Envelopes += count
			res.Spaces = append(res.Spaces, BundleSpaceCount{Space: p.space.String(), Envelopes: count})
		}
		return bw.Close()
	})
	if err != nil {
		return res, err
	}
	done = total
	report()
	res.Bytes = n
	return res, nil
}

// checkExportLimits refuses an export whose certificates, revocations or
// fork evidence are over what an importer accepts in one bundle.
func checkExportLimits(lim crypto.BundleLimits, certs []*crypto.Certificate, self crypto.DeviceID, revs, evidence [][]byte) error {
	over := func(what string, n int, bytes, maxN int, maxBytes int64) error {
		if n > maxN || int64(bytes) > maxBytes {
			return fmt.Errorf("%w: this device holds %d %s (%d bytes), over what an importer accepts in one bundle (%d, %d bytes; docs/bundle.md, \"Limits\")",
				errTooLarge, n, what, bytes, maxN, maxBytes)
		}
		return nil
	}
	nc, bc := 0, 0
	for _, c := range certs {
		if c.Device.ID() != self {
			nc++
			bc += len(c.MarshalBinary())
		}
	}
	if err := over("certificates", nc, bc, lim.Certificates, lim.CertificateBytes); err != nil {
		return err
	}
	br := 0
	for _, r := range revs {
		br += len(r)
	}
	if err := over("revocations", len(revs), br, lim.Revocations, lim.RevocationBytes); err != nil {
		return err
	}
	be := 0
	for _, e := range evidence {
		be += len(e)
	}
	return over("pieces of fork evidence", len(evidence), be, lim.Evidence, lim.EvidenceBytes)
}

// scanToSend calls fn with the envelopes of the space above have, up to
// heads, each author's in seq order. An envelope corrupt in this store ends
// that author's run (the receiver would see a gap): onCorrupt counts it.
func (a *Agent) scanToSend(space crypto.SpaceID, have map[crypto.DeviceID]uint64, heads fsync.Vector, fn func([]byte) error, onCorrupt func()) error {
	authors := make([]fsync.PeerID, 0, len(heads))
	for author, seq := range heads {
		if seq > have[crypto.DeviceID(author)] {
			authors = append(authors, author)
		}
	}
	slices.SortFunc(authors, func(x, y fsync.PeerID) int { return x.Compare(y) })
	for _, author := range authors {
		dev := crypto.DeviceID(author)
		start := envKey(space, dev, have[dev]+1)
		err := a.db.kv.scanFrom(envAuthorPrefix(space, dev), start, func(k, sealed []byte) error {
			_, _, seq, ok := parseEnvKey(k)
			if !ok || seq > heads[author] {
				return errStopScan
			}
			env, err := a.db.open(k, sealed)
			if err != nil {
				a.countCorrupt(k)
				onCorrupt()
				return errStopScan
			}
			return fn(env)
		})
		if err != nil && !errors.Is(err, errStopScan) {
			return err
		}
	}
	return nil
}

// ---- import ----

// bundleLimits are the limits an import enforces and an export respects
// (crypto.DefaultBundleLimits; tests lower them).
var bundleLimits = crypto.DefaultBundleLimits()

// Bounds on what an import reports, so that its answer stays small whatever
// the bundle holds: runs of left-out envelopes listed (the rest are counted
// in skips_omitted), notes on objects left out, and messages kept for
// rejected envelopes.
const (
	maxListedSkips     = 4096
	maxObjectNotes     = 256
	maxSkipMessages    = 4096
	skipMessageNotKept = "(the details were not kept: too many envelopes left out)"
)

// verdict is what the verifying pass decided about one envelope of a bundle.
type verdict struct {
	sum    [32]byte // SHA-256 of the envelope: the storing pass must read the same bytes
	reason string   // "" accepted; else a Reject reason (a constant: no memory per envelope)
}

// ImportBundle verifies a bundle whole and then stores what it adds.
//
// A first pass reads the file only to check the exporter's signature over
// every byte (in constant memory, parsing nothing but the header and the
// exporter's certificate) and the exporter's certificate against this
// device's trust: a bundle its sender did not sign, or from a sender this
// device does not trust, is refused before any of it is parsed or kept.
//
// The second pass reads the file again before anything is stored: the
// framing and the section limits (crypto.BundleLimits: a bundle over any is
// refused at the item that crosses it), the signature again (the file may
// have changed), and every envelope (signature, author's certificate and
// standing, per-author seq order). A damaged or tampered file, an untrusted
// exporter or a bundle over a limit is refused whole (ErrRefused) and
// nothing is stored. Envelopes from unknown, untrusted or revoked authors
// are left out and reported, with the rest of their author's run, which
// would follow a gap. What this pass keeps is bounded by the limits: the
// trusted certificates and revocations, a hash per piece of evidence and
// per envelope.
//
// The third pass reads the file again and stores: certificates and
// revocations, then each piece of fork evidence and each accepted envelope
// as it comes (envelopes as the next of their author's log through the same
// path as sync, ingestVerified), checking that each is byte for byte the
// one the second pass saw. A failure midway (disk full, the file changed
// under us) leaves whole verified envelopes, each the next of its author's
// chain: a consistent store that importing the bundle again completes. One
// transaction for a bundle of any size is not possible in Badger and would
// hold the whole bundle in memory. When ctx ends (the client went away) the
// import stops between envelopes, with the same guarantee.
func (a *Agent) ImportBundle(ctx context.Context, req BundleImportRequest, progress func(BundleProgress)) (BundleImportResult, error) {
	res := BundleImportResult{File: req.File, Spaces: []BundleSpaceCount{}, Skips: []BundleSkip{}}
	if !filepath.IsAbs(req.File) {
		return res, fmt.Errorf("%w: bundle path %q is not absolute", ErrBadRequest, req.File)
	}
	f, err := os.Open(req.File)
	if errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("%w: bundle %s: no such file", ErrNotFound, req.File)
	}
	if err != nil {
		return res, fmt.Errorf("%w: bundle %s: %v", ErrBadRequest, req.File, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return res, err
	}
	if !st.Mode().IsRegular() {
		return res, fmt.Errorf("%w: bundle %s is not a regular file (%s): copy it to a file first", ErrBadRequest, req.File, st.Mode().Type())
	}
	size := st.Size()
	report := func(phase string, done int64) {
		if progress != nil {
			progress(BundleProgress{Phase: phase, Done: done, Total: size, Unit: "bytes"})
		}
	}
	refuse := func(err error) error {
		what := ""
		switch {
		case errors.Is(err, crypto.ErrBundleLimit):
			what = " is over a limit of bundles"
		case errors.Is(err, crypto.ErrSignature) || errors.Is(err, crypto.ErrMalformed):
			what = " is damaged or was changed after it was signed"
		}
		return fmt.Errorf("%w: bundle %s%s: %v; nothing was imported", ErrRefused, req.File, what, err)
	}

	// Pass 1: the signature over the whole file, and the signer's standing.
	_, sender, err := crypto.CheckBundleSignature(bufio.NewReaderSize(f, 1<<20), size, crypto.BundleExport)
	if err != nil {
		return res, refuse(err)
	}
	if err := a.judgeSender(sender); err != nil {
		return res, refuse(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return res, err
	}

	// Pass 2: verify everything.
	v, err := a.verifyBundle(ctx, f, sender, func(off int64) { report("verify", off) })
	if err != nil {
		if ctx.Err() != nil {
			return res, fmt.Errorf("import of %s interrupted before anything was stored: %v", req.File, ctx.Err())
		}
		return res, refuse(err)
	}
	res.Exporter, res.ExporterBureau = v.sender.Device.ID().String(), v.sender.Bureau.Name
	res.Created = v.header.Created.Format(time.RFC3339)
	if !v.header.Recipient.IsZero() {
		res.Recipient = v.header.Recipient.String()
	}
	res.Envelopes = len(v.verdicts)
	report("verify", size)

	// Pass 3: store.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return res, err
	}
	notes := &noteList{}
	a.writeMu.Lock()
	gen0 := a.gen
	a.writeMu.Unlock()
	newCert := false
	for _, c := range v.certs {
		added, err := a.AddCertificate(c.MarshalBinary())
		if err != nil {
			res.SkippedObjects++
			notes.add(fmt.Sprintf("certificate of device %s: %v", c.Device.ID(), err))
			continue
		}
		if added {
			res.Certificates++
			newCert = true
		}
	}
	for _, r := range v.revs {
		added, err := a.AddRevocation(r.Marshal())
		if err != nil {
			res.SkippedObjects++
			notes.add(fmt.Sprintf("revocation of device %s: %v", r.Device, err))
			continue
		}
		if added {
			res.Revocations++
		}
	}
	res.SkippedObjects += v.skippedObjects
	for _, n := range v.notes.notes {
		notes.add(n)
	}
	notes.omitted += v.notes.omitted
	br, err := crypto.NewBundleReader(f, crypto.BundleExport)
	if err != nil {
		return res, fmt.Errorf("bundle %s changed while it was being imported (read it again): %v", req.File, err)
	}
	br.SetLimits(bundleLimits)
	changed := func() error {
		return fmt.Errorf("bundle %s changed while it was being imported; what was stored is whole and verified: import it again", req.File)
	}
	skips := newSkipList()
	added := map[crypto.SpaceID]int{}
	var orphans []crypto.Header // held until their space's routing record came
	i, ev := 0, 0
	for {
		t, payload, err := br.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return res, fmt.Errorf("bundle %s changed while it was being imported: %v; what was stored is whole and verified: import it again", req.File, err)
		}
		if t == crypto.ItemEvidence {
			// Fork evidence is not kept in memory between the passes: it is
			// read again here, and must be what the second pass hashed.
			if ev >= len(v.evidence) || sha256.Sum256(payload) != v.evidence[ev] {
				return res, changed()
			}
			ev++
			ok, err := a.ingestEvidence(payload)
			if err != nil {
				res.SkippedObjects++
				notes.add(fmt.Sprintf("fork evidence: %v", err))
			} else if ok {
				res.Evidence++
			}
			continue
		}
		if t != crypto.ItemEnvelope {
			continue
		}
		if i >= len(v.verdicts) || sha256.Sum256(payload) != v.verdicts[i].sum {
			return res, changed()
		}
		vd := v.verdicts[i]
		i++
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return res, fmt.Errorf("import interrupted after %d of %d envelopes; what was stored is whole and verified: import the bundle again", i-1, len(v.verdicts))
			}
			report("store", br.Offset())
		}
		h, perr := crypto.ParseHeader(payload)
		if vd.reason != "" || perr != nil {
			res.Skipped++
			a.countReject(vd.reason)
			if perr == nil {
				skips.add(h.Space, h.Author, h.Seq, vd.reason, v.message(i-1))
			} else {
				notes.add(fmt.Sprintf("envelope %d: %v", i, perr))
			}
			continue
		}
		if skips.isBlocked(h.Space, h.Author) {
			res.Skipped++
			a.countReject(RejectGap)
			skips.add(h.Space, h.Author, h.Seq, RejectGap, "follows an envelope that was left out")
			continue
		}
		cert := v.certOf(h.Author, a)
		ok, err := a.ingestVerified(payload, h, cert, false)
		var re *RejectError
		switch {
		case errors.Is(err, errOrphanHeld):
			// Its space's routing record comes later in the bundle (or
			// not at all): judged after the loop.
			orphans = append(orphans, h)
		case errors.As(err, &re):
			res.Skipped++
			skips.add(h.Space, h.Author, h.Seq, re.Reason, re.Err.Error())
		case err != nil:
			return res, fmt.Errorf("store envelope %d of bundle %s: %w; what was stored is whole and verified: import it again", i, req.File, err)
		case ok:
			res.Added++
			added[h.Space]++
		default:
			res.AlreadyHeld++
		}
	}
	// Everything handed to the committer is on disk (or failed) after a barrier.
	barrier := &commitReq{done: make(chan error, 1)}
	a.com.submit(barrier)
	<-barrier.done
	for _, h := range orphans {
		if _, err := a.db.get(envKey(h.Space, h.Author, h.Seq)); err == nil {
			res.Added++
			added[h.Space]++
			continue
		}
		res.Skipped++
		skips.add(h.Space, h.Author, h.Seq, RejectNoRouting, "its space's routing record is neither in the bundle nor held here")
	}
	if a.com.failedGen.Load() >= gen0 && res.Added > 0 {
		return res, errors.New("a store write failed during the import; what was stored is whole and verified: import the bundle again")
	}
	report("store", size)
	res.Skips, res.SkipsOmitted = skips.list(), skips.omitted
	res.ObjectSkipNotes = notes.list()
	for id, n := range added {
		res.Spaces = append(res.Spaces, BundleSpaceCount{Space: id.String(), Envelopes: n})
	}
	sort.Slice(res.Spaces, func(i, j int) bool { return res.Spaces[i].Space < res.Spaces[j].Space })
	if res.Added > 0 {
		a.notify()
	}
	if newCert {
		if _, err := a.ShareKeys(); err != nil {
			a.log.Warn("sharing keys with devices met in a bundle", "err", err)
		}
	}
	a.wrapIfDue() // keys that came in shares go on to entitled devices
	return res, nil
}

// noteList keeps the first maxObjectNotes notes and counts the rest.
type noteList struct {
	notes   []string
	omitted int
}

func (n *noteList) add(s string) {
	if len(n.notes) < maxObjectNotes {
		n.notes = append(n.notes, s)
		return
	}
	n.omitted++
}

func (n *noteList) list() []string {
	if n.omitted == 0 {
		return n.notes
	}
	return append(n.notes, fmt.Sprintf("… and %d more objects left out", n.omitted))
}

// verifiedBundle is what the verifying pass learnt. Its size is bounded by
// the bundle limits: no payload of the bundle is kept but certificates and
// revocations.
type verifiedBundle struct {
	header         crypto.BundleHeader
	sender         *crypto.Certificate
	certs          []*crypto.Certificate // trusted certificates in the bundle (the sender's first)
	byDevice       map[crypto.DeviceID]*crypto.Certificate
	revs           []*crypto.Revocation // trusted revocations in the bundle
	evidence       [][32]byte           // SHA-256 of each piece of fork evidence, in order
	verdicts       []verdict
	messages       map[int]string // why an envelope was left out, for the first maxSkipMessages
	skippedObjects int
	notes          noteList
}

// message is why envelope i was left out.
func (v *verifiedBundle) message(i int) string {
	if m, ok := v.messages[i]; ok {
		return m
	}
	return skipMessageNotKept
}

// certOf is the certificate an envelope of author was verified against:
// the pinned one, else the bundle's.
func (v *verifiedBundle) certOf(author crypto.DeviceID, a *Agent) *crypto.Certificate {
	a.statMu.Lock()
	c := a.certs[author]
	a.statMu.Unlock()
	if c != nil {
		return c
	}
	return v.byDevice[author]
}

// verifyBatchBytes bounds the envelopes held at once while verifying.
const verifyBatchBytes = 32 << 20

// verifyBundle is the verifying pass of ImportBundle: it reads r to its end
// and stores nothing. It refuses a bundle over any of bundleLimits at the
// item that crosses it.
//
// sender is the exporter's certificate as the signature check read it (and
// judgeSender accepted): the file must still name it.
func (a *Agent) verifyBundle(ctx context.Context, r io.Reader, sender *crypto.Certificate, progress func(offset int64)) (*verifiedBundle, error) {
	br, err := crypto.NewBundleReader(bufio.NewReaderSize(r, 1<<20), crypto.BundleExport)
	if err != nil {
		return nil, err
	}
	lim := bundleLimits
	br.SetLimits(lim)
	v := &verifiedBundle{header: br.Header(), sender: br.Sender(), byDevice: map[crypto.DeviceID]*crypto.Certificate{}, messages: map[int]string{}}
	if !bytes.Equal(v.sender.MarshalBinary(), sender.MarshalBinary()) {
		return nil, errors.New("the file changed while it was being read (its sender is not the one whose signature was checked): read it again")
	}
	v.certs = append(v.certs, v.sender)
	v.byDevice[v.sender.Device.ID()] = v.sender
	a.statMu.Lock()
	revs := make(map[crypto.DeviceID]*crypto.Revocation, len(a.revs))
	for d, r := range a.revs {
		revs[d] = r
	}
	a.statMu.Unlock()

	type pending struct {
		env    []byte
		idx    int
		reason string
		msg    string
	}
	var batch []pending
	batchBytes := 0
	flush := func() {
		forEachParallel(len(batch), func(i int) {
			batch[i].reason, batch[i].msg = a.judgeEnvelope(batch[i].env, v, revs)
		})
		for _, p := range batch {
			v.verdicts[p.idx].reason = p.reason
			if p.reason != "" && len(v.messages) < maxSkipMessages {
				v.messages[p.idx] = p.msg
			}
		}
		batch, batchBytes = batch[:0], 0
	}
	lastSeq := map[gapKey]uint64{}
	perSpace := map[crypto.SpaceID]int{}
	seenEnvelope := false
	items := 0
	for {
		t, payload, err := br.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		items++
		if items%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("import interrupted: %w", err)
			}
			progress(br.Offset())
		}
		if t != crypto.ItemEnvelope && seenEnvelope {
			return nil, fmt.Errorf("a %s after the envelopes (certificates, revocations and evidence come first)", t)
		}
		switch t {
		case crypto.ItemCertificate:
			c, err := crypto.ParseCertificate(payload)
			if err != nil {
				return nil, fmt.Errorf("certificate item %d: %v", items, err)
			}
			if _, ok := a.trust.Lookup(c.Bureau.Fingerprint()); !ok && !a.releasedAnywhere(c.Bureau.Fingerprint()) {
				v.skippedObjects++
				v.notes.add(fmt.Sprintf("certificate of device %s: bureau %s is not trusted", c.Device.ID(), c.Bureau.Name))
				continue
			}
			// As AddCertificate: a device stays pinned to the bureau and
			// keys that first certified it, and only a countersigned
			// certificate pins (docs/crypto.md, "Pinning and scoped trust").
			a.statMu.Lock()
			pinned := a.certs[c.Device.ID()]
			a.statMu.Unlock()
			if pinned != nil && !sameEnrollment(pinned, c) {
				v.skippedObjects++
				v.notes.add(fmt.Sprintf("certificate of device %s by bureau %s: conflicts with the one it is pinned to (bureau %s)", c.Device.ID(), c.Bureau.Name, pinned.Bureau.Name))
				continue
			}
			if pinned == nil && !c.Countersigned() {
				v.skippedObjects++
				v.notes.add(fmt.Sprintf("certificate of device %s: version 1, without the device's countersignature", c.Device.ID()))
				continue
			}
			if v.byDevice[c.Device.ID()] == nil {
				v.certs = append(v.certs, c)
				v.byDevice[c.Device.ID()] = c
			}
		case crypto.ItemRevocation:
			r, err := crypto.ParseRevocation(payload)
			if err != nil {
				return nil, fmt.Errorf("revocation item %d: %v", items, err)
			}
			ts := a.trust
			a.statMu.Lock()
			rc := a.certs[r.Device]
			a.statMu.Unlock()
			if rc == nil {
				rc = v.byDevice[r.Device]
			}
			if rc != nil {
				ts = a.trustAnywhere(rc) // a released bureau revoking its own device
			}
			if err := r.Verify(ts); err != nil {
				v.skippedObjects++
				v.notes.add(fmt.Sprintf("revocation of device %s: %v", r.Device, err))
				continue
			}
			v.revs = append(v.revs, r)
			revs[r.Device] = r
		case crypto.ItemEvidence:
			v.evidence = append(v.evidence, sha256.Sum256(payload))
		case crypto.ItemEnvelope:
			seenEnvelope = true
			v.verdicts = append(v.verdicts, verdict{sum: sha256.Sum256(payload)})
			idx := len(v.verdicts) - 1
			h, err := crypto.ParseHeader(payload)
			if err != nil {
				v.verdicts[idx].reason = RejectMalformed
				if len(v.messages) < maxSkipMessages {
					v.messages[idx] = err.Error()
				}
				continue
			}
			if _, ok := perSpace[h.Space]; !ok && len(perSpace) >= lim.Spaces {
				return nil, crypto.LimitError(int64(lim.Spaces), "spaces")
			}
			if perSpace[h.Space]++; perSpace[h.Space] > lim.EnvelopesPerSpace {
				return nil, crypto.LimitError(int64(lim.EnvelopesPerSpace), "envelopes of space "+h.Space.String())
			}
			k := gapKey{h.Space, h.Author}
			last, ok := lastSeq[k]
			if ok && h.Seq != last+1 {
				return nil, fmt.Errorf("envelopes of device %s in space %s out of order (seq %d after %d)", h.Author, h.Space, h.Seq, last)
			}
			if !ok && len(lastSeq) >= lim.Authors {
				return nil, crypto.LimitError(int64(lim.Authors), "(space, author) logs")
			}
			lastSeq[k] = h.Seq
			batch = append(batch, pending{env: payload, idx: idx})
			batchBytes += len(payload)
			if batchBytes >= verifyBatchBytes || len(batch) >= 4096 {
				flush()
			}
		}
	}
	flush()
	return v, nil
}

// judgeEnvelope checks one envelope of a bundle as verifyEnvelope checks one
// from a peer, against the bundle's certificates and revocations as well as
// those this device holds. It returns "" or a Reject reason and message.
func (a *Agent) judgeEnvelope(env []byte, v *verifiedBundle, revs map[crypto.DeviceID]*crypto.Revocation) (string, string) {
	h, err := crypto.ParseHeader(env)
	if err != nil {
		return RejectMalformed, err.Error()
	}
	a.statMu.Lock()
	cert := a.certs[h.Author] // the pinned certificate first
	a.statMu.Unlock()
	if cert == nil {
		cert = v.byDevice[h.Author]
	}
	if cert == nil {
		return RejectUnknown, fmt.Sprintf("no certificate for device %s", h.Author)
	}
	if _, _, err := crypto.Verify(env, cert.Device); err != nil {
		return RejectSignature, err.Error()
	}
	at := time.UnixMilli(crdt.UnpackTimestamp(h.HLC).Wall)
	if at.Before(cert.NotBefore) {
		at = cert.NotBefore
	}
	if err := crypto.CheckAuthor(h, cert, revs[h.Author], a.trustFor(h.Space, cert), at); err != nil {
		return rejectReason(err), err.Error()
	}
	return "", ""
}

// skipList groups left-out envelopes into runs per (space, author, reason).
// It lists the first maxListedSkips runs and counts the rest.
type skipList struct {
	runs        []BundleSkip
	omitted     int            // runs not listed
	last        map[gapKey]int // the author's last listed run
	lastOmitted map[gapKey]omittedRun
	blocked     map[gapKey]bool
}

type omittedRun struct {
	reason string
	to     uint64
}

func newSkipList() *skipList {
	return &skipList{last: map[gapKey]int{}, lastOmitted: map[gapKey]omittedRun{}, blocked: map[gapKey]bool{}}
}

func (s *skipList) add(space crypto.SpaceID, author crypto.DeviceID, seq uint64, reason, msg string) {
	k := gapKey{space, author}
	s.blocked[k] = true
	if i, ok := s.last[k]; ok && s.runs[i].Reason == reason && s.runs[i].To+1 == seq {
		s.runs[i].To = seq
		return
	}
	if len(s.runs) >= maxListedSkips {
		delete(s.last, k)
		if o, ok := s.lastOmitted[k]; !ok || o.reason != reason || o.to+1 != seq {
			s.omitted++
		}
		s.lastOmitted[k] = omittedRun{reason, seq}
		return
	}
	s.last[k] = len(s.runs)
	s.runs = append(s.runs, BundleSkip{Space: space.String(), Author: author.String(), From: seq, To: seq, Reason: reason, Message: msg})
}

// isBlocked reports whether an earlier envelope of the author in the space
// was left out: the later ones would follow a gap.
func (s *skipList) isBlocked(space crypto.SpaceID, author crypto.DeviceID) bool {
	return s.blocked[gapKey{space, author}]
}

func (s *skipList) list() []BundleSkip {
	if s.runs == nil {
		return []BundleSkip{}
	}
	return s.runs
}

// ---- client ----

// BundleWant is `bundle want`.
func BundleWant(ctx context.Context, c *api.Client, req BundleWantRequest) (BundleWantResult, error) {
	var r BundleWantResult
	return r, c.Call(ctx, PathBundleWant, req, &r)
}

// BundleExport is `bundle export`; onProgress, when set, receives progress lines.
func BundleExport(ctx context.Context, c *api.Client, req BundleExportRequest, onProgress func(BundleProgress)) (BundleExportResult, error) {
	var r BundleExportResult
	req.Progress = onProgress != nil
	return r, api.CallProgress(ctx, c, PathBundleExport, req, &r, onProgress)
}

// BundleImport is `bundle import`; onProgress, when set, receives progress lines.
func BundleImport(ctx context.Context, c *api.Client, req BundleImportRequest, onProgress func(BundleProgress)) (BundleImportResult, error) {
	var r BundleImportResult
	req.Progress = onProgress != nil
	return r, api.CallProgress(ctx, c, PathBundleImport, req, &r, onProgress)
}
