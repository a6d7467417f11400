package bundle

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"fieldsync/crypto"
)

// Import verifies a bundle whole and then stores what it adds.
//
// A first pass reads the file only to check the exporter's signature over
// every byte (in constant memory, parsing nothing but the header and the
// exporter's certificate) and the exporter's certificate against this
// device's trust: a bundle its sender did not sign, or from a sender this
// device does not trust, is refused before any of it is parsed or kept.
//
// The second pass reads the file again before anything is stored: the
// framing and the section limits (lim: a bundle over any is refused at the
// item that crosses it), the signature again (the file may have changed),
// and every envelope (signature, author's certificate and standing,
// per-author seq order). A damaged or tampered file, an untrusted exporter
// or a bundle over a limit is refused whole (ErrRefused) and nothing is
// stored. Envelopes from unknown, untrusted or revoked authors are left out
// and reported, with the rest of their author's run, which would follow a
// gap. What this pass keeps is bounded by the limits: the trusted
// certificates and revocations, a hash per piece of evidence and per
// envelope.
//
// The third pass reads the file again and stores: certificates and
// revocations, then each piece of fork evidence and each accepted envelope
// as it comes (envelopes as the next of their author's log through the same
// path as sync, Core.Ingest), checking that each is byte for byte the one
// the second pass saw. A failure midway (disk full, the file changed under
// us) leaves whole verified envelopes, each the next of its author's chain:
// a consistent store that importing the bundle again completes. One
// transaction for a bundle of any size is not possible in the store and
// would hold the whole bundle in memory. When ctx ends (the client went
// away) the import stops between envelopes, with the same guarantee.
func Import(ctx context.Context, c Core, lim crypto.BundleLimits, req ImportRequest, progress func(Progress)) (ImportResult, error) {
	im := &importer{c: c, lim: lim, file: req.File, progress: progress,
		res: ImportResult{File: req.File, Spaces: []SpaceCount{}, Skips: []Skip{}}}
	f, err := im.open()
	if err != nil {
		return im.res, err
	}
	defer f.Close()
	sender, err := im.checkSignature(f)
	if err != nil {
		return im.res, err
	}
	v, err := im.verify(ctx, f, sender)
	if err != nil {
		return im.res, err
	}
	if err := im.store(ctx, f, v); err != nil {
		return im.res, err
	}
	return im.res, nil
}

// importer is one Import under way.
type importer struct {
	c        Core
	lim      crypto.BundleLimits
	file     string
	size     int64
	progress func(Progress)
	res      ImportResult
	// Of the storing pass:
	notes   *noteList
	skips   *skipList
	added   map[crypto.SpaceID]int
	orphans []crypto.Header // held until their space's routing record came
}

func (im *importer) report(phase string, done int64) {
	if im.progress != nil {
		im.progress(Progress{Phase: phase, Done: done, Total: im.size, Unit: "bytes"})
	}
}

// refuse is err as the refusal of the whole bundle.
func (im *importer) refuse(err error) error {
	what := ""
	switch {
	case errors.Is(err, crypto.ErrBundleLimit):
		what = " is over a limit of bundles"
	case errors.Is(err, crypto.ErrSignature) || errors.Is(err, crypto.ErrMalformed):
		what = " is damaged or was changed after it was signed"
	}
	return fmt.Errorf("%w: bundle %s%s: %v; nothing was imported", ErrRefused, im.file, what, err)
}

// open opens the bundle: a regular file, named by an absolute path.
func (im *importer) open() (*os.File, error) {
	if !filepath.IsAbs(im.file) {
		return nil, fmt.Errorf("%w: bundle path %q is not absolute", ErrBadRequest, im.file)
	}
	f, err := os.Open(im.file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: bundle %s: no such file", ErrNotFound, im.file)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: bundle %s: %v", ErrBadRequest, im.file, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: bundle %s is not a regular file (%s): copy it to a file first", ErrBadRequest, im.file, st.Mode().Type())
	}
	im.size = st.Size()
	return f, nil
}

// checkSignature is pass 1: the signature over the whole file, and the
// signer's standing. It returns the signer's certificate.
func (im *importer) checkSignature(f *os.File) (*crypto.Certificate, error) {
	_, sender, err := crypto.CheckBundleSignature(bufio.NewReaderSize(f, 1<<20), im.size, crypto.BundleExport)
	if err != nil {
		return nil, im.refuse(err)
	}
	if err := judgeSender(im.c, sender); err != nil {
		return nil, im.refuse(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return sender, nil
}

// verify is pass 2: everything is verified, nothing stored.
func (im *importer) verify(ctx context.Context, f *os.File, sender *crypto.Certificate) (*verifiedBundle, error) {
	v, err := verifyBundle(ctx, im.c, im.lim, f, sender, func(off int64) { im.report("verify", off) })
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("import of %s interrupted before anything was stored: %v", im.file, ctx.Err())
		}
		return nil, im.refuse(err)
	}
	im.res.Exporter, im.res.ExporterBureau = v.sender.Device.ID().String(), v.sender.Bureau.Name
	im.res.Created = v.header.Created.Format(time.RFC3339)
	if !v.header.Recipient.IsZero() {
		im.res.Recipient = v.header.Recipient.String()
	}
	im.res.Envelopes = len(v.verdicts)
	im.report("verify", im.size)
	return v, nil
}

// store is pass 3: the objects, then the file read again, storing each
// piece of evidence and each accepted envelope as it comes.
func (im *importer) store(ctx context.Context, f *os.File, v *verifiedBundle) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	im.notes, im.skips, im.added = &noteList{}, newSkipList(), map[crypto.SpaceID]int{}
	mark := im.c.WriteMark()
	newCert := im.storeObjects(v)
	br, err := crypto.NewBundleReader(f, crypto.BundleExport)
	if err != nil {
		return fmt.Errorf("bundle %s changed while it was being imported (read it again): %v", im.file, err)
	}
	br.SetLimits(im.lim)
	if err := im.storeItems(ctx, br, v); err != nil {
		return err
	}
	// Everything handed to the store is on disk (or failed) after a flush.
	im.c.Flush()
	im.judgeOrphans()
	if im.c.FailedSince(mark) && im.res.Added > 0 {
		return errors.New("a store write failed during the import; what was stored is whole and verified: import the bundle again")
	}
	im.report("store", im.size)
	im.summarise()
	im.c.Imported(im.res.Added > 0, newCert)
	return nil
}

// storeObjects stores the trusted certificates and revocations of the
// bundle and gathers the notes on objects left out. It reports whether a
// certificate was new.
func (im *importer) storeObjects(v *verifiedBundle) (newCert bool) {
	for _, c := range v.certs {
		added, err := im.c.AddCertificate(c.MarshalBinary())
		if err != nil {
			im.res.SkippedObjects++
			im.notes.add(fmt.Sprintf("certificate of device %s: %v", c.Device.ID(), err))
			continue
		}
		if added {
			im.res.Certificates++
			newCert = true
		}
	}
	for _, r := range v.revs {
		added, err := im.c.AddRevocation(r.Marshal())
		if err != nil {
			im.res.SkippedObjects++
			im.notes.add(fmt.Sprintf("revocation of device %s: %v", r.Device, err))
			continue
		}
		if added {
			im.res.Revocations++
		}
	}
	// Erase markers before any envelope: an envelope of a space erased
	// is then refused, whatever the bundle's age (agent/erase.go).
	for _, e := range v.erasures {
		added, err := im.c.AddErasure(e)
		if err != nil {
			im.res.SkippedObjects++
			im.notes.add(fmt.Sprintf("erase marker: %v", err))
			continue
		}
		if added {
			im.res.Erasures++
		}
	}
	im.res.SkippedObjects += v.skippedObjects
	for _, n := range v.notes.notes {
		im.notes.add(n)
	}
	im.notes.omitted += v.notes.omitted
	return newCert
}

// changed is the error of a file that is not what the verifying pass read.
func (im *importer) changed() error {
	return fmt.Errorf("bundle %s changed while it was being imported; what was stored is whole and verified: import it again", im.file)
}

// storeItems reads the items again and stores the evidence and envelopes,
// each checked against what the verifying pass hashed.
func (im *importer) storeItems(ctx context.Context, br *crypto.BundleReader, v *verifiedBundle) error {
	i, ev := 0, 0
	for {
		t, payload, err := br.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("bundle %s changed while it was being imported: %v; what was stored is whole and verified: import it again", im.file, err)
		}
		switch t {
		case crypto.ItemEvidence:
			// Fork evidence is not kept in memory between the passes: it
			// is read again here, and must be what the second pass hashed.
			if ev >= len(v.evidence) || sha256.Sum256(payload) != v.evidence[ev] {
				return im.changed()
			}
			ev++
			im.storeEvidence(payload)
		case crypto.ItemEnvelope:
			if i >= len(v.verdicts) || sha256.Sum256(payload) != v.verdicts[i].sum {
				return im.changed()
			}
			vd := v.verdicts[i]
			i++
			if i%256 == 0 {
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("import interrupted after %d of %d envelopes; what was stored is whole and verified: import the bundle again", i-1, len(v.verdicts))
				}
				im.report("store", br.Offset())
			}
			if err := im.storeEnvelope(payload, i, vd, v); err != nil {
				return err
			}
		}
	}
}

func (im *importer) storeEvidence(payload []byte) {
	ok, err := im.c.AddEvidence(payload)
	if err != nil {
		im.res.SkippedObjects++
		im.notes.add(fmt.Sprintf("fork evidence: %v", err))
	} else if ok {
		im.res.Evidence++
	}
}

// storeEnvelope stores envelope number n (from 1) of the bundle, which the
// verifying pass judged vd, or leaves it out: rejected there, following one
// left out, or refused by the core.
func (im *importer) storeEnvelope(payload []byte, n int, vd verdict, v *verifiedBundle) error {
	h, perr := crypto.ParseHeader(payload)
	if vd.reason != "" || perr != nil {
		im.res.Skipped++
		im.c.CountReject(vd.reason)
		if perr == nil {
			im.skips.add(h.Space, h.Author, h.Seq, vd.reason, v.message(n-1))
		} else {
			im.notes.add(fmt.Sprintf("envelope %d: %v", n, perr))
		}
		return nil
	}
	if im.skips.isBlocked(h.Space, h.Author) {
		im.res.Skipped++
		im.c.CountReject(ReasonGap)
		im.skips.add(h.Space, h.Author, h.Seq, ReasonGap, "follows an envelope that was left out")
		return nil
	}
	o, err := im.c.Ingest(payload, h, v.certOf(h.Author, im.c))
	var re *Reject
	switch {
	case errors.As(err, &re):
		im.res.Skipped++
		im.skips.add(h.Space, h.Author, h.Seq, re.Reason, re.Message)
	case err != nil:
		return fmt.Errorf("store envelope %d of bundle %s: %w; what was stored is whole and verified: import it again", n, im.file, err)
	case o == Orphan:
		// Its space's routing record comes later in the bundle (or not at
		// all): judged after the loop.
		im.orphans = append(im.orphans, h)
	case o == Added:
		im.res.Added++
		im.added[h.Space]++
	default:
		im.res.AlreadyHeld++
	}
	return nil
}

// judgeOrphans counts the envelopes held for their space's routing record:
// stored once it came later in the bundle, else left out.
func (im *importer) judgeOrphans() {
	for _, h := range im.orphans {
		if im.c.Held(h.Space, h.Author, h.Seq) {
			im.res.Added++
			im.added[h.Space]++
			continue
		}
		im.res.Skipped++
		im.skips.add(h.Space, h.Author, h.Seq, ReasonNoRouting, "its space's routing record is neither in the bundle nor held here")
	}
}

// summarise fills in the lists of the result.
func (im *importer) summarise() {
	im.res.Skips, im.res.SkipsOmitted = im.skips.list(), im.skips.omitted
	im.res.ObjectSkipNotes = im.notes.list()
	for id, n := range im.added {
		im.res.Spaces = append(im.res.Spaces, SpaceCount{Space: id.String(), Envelopes: n})
	}
	sort.Slice(im.res.Spaces, func(i, j int) bool { return im.res.Spaces[i].Space < im.res.Spaces[j].Space })
}
