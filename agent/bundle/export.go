package bundle

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"

	"fieldsync/crypto"
)

// Export writes a bundle: the certificates, revocations and fork evidence
// this device knows, and the envelopes of the chosen spaces — all of them,
// or, given the receiver's want file, those it lacks of the spaces it is
// entitled to (after wrapping the space keys to it when it is an entitled
// officer this device had not met). Nothing over lim (what an importer
// accepts) is written. progress may be nil. When ctx ends (the client went
// away) the export stops and leaves no file.
func Export(ctx context.Context, c Core, lim crypto.BundleLimits, req ExportRequest, progress func(Progress)) (ExportResult, error) {
	x := &export{c: c, lim: lim, progress: progress,
		res: ExportResult{Out: req.Out, Spaces: []SpaceCount{}, NotEntitled: []string{}}}
	spaces, err := chooseSpaces(c, req.Space)
	if err != nil {
		return x.res, err
	}
	var want crypto.Want
	if req.Want != "" {
		var cert *crypto.Certificate
		if want, cert, err = readWant(c, req.Want); err != nil {
			return x.res, err
		}
		if spaces, err = x.meetReceiver(cert, spaces, req.Space != ""); err != nil {
			return x.res, err
		}
	}
	if err := x.plan(spaces, want); err != nil {
		return x.res, err
	}
	if err := x.gatherObjects(); err != nil {
		return x.res, err
	}
	if err := x.checkPlanLimits(); err != nil {
		return x.res, err
	}
	x.report()
	n, err := CreateFile(req.Out, func(w io.Writer) error { return x.write(ctx, w) })
	if err != nil {
		return x.res, err
	}
	x.done = x.total
	x.report()
	x.res.Bytes = n
	return x.res, nil
}

// export is one Export under way.
type export struct {
	c         Core
	lim       crypto.BundleLimits
	progress  func(Progress)
	res       ExportResult
	recipient crypto.DeviceID // zero without a want file
	plans     []plan
	total     int64 // envelopes to write
	done      int64 // envelopes written
	certs     []*crypto.Certificate
	revs      [][]byte // sorted
	evidence  [][]byte
	erasures  [][]byte // erase markers, sorted
}

// plan is what to send of one space: per author, the seqs above the
// receiver's.
type plan struct {
	space crypto.SpaceID
	have  map[crypto.DeviceID]uint64
	heads map[crypto.DeviceID]uint64
}

// chooseSpaces is the space ref names, or every space held when ref is empty.
func chooseSpaces(c Core, ref string) ([]crypto.SpaceID, error) {
	if ref == "" {
		return c.SpaceIDs(), nil
	}
	id, err := c.ResolveSpace(ref)
	if err != nil {
		return nil, err
	}
	return []crypto.SpaceID{id}, nil
}

// meetReceiver is meeting the want file's device: keep its certificate and
// wrap the space keys to it if it is an entitled officer (ShareKeys
// decides), so the bundle carries its key shares. It returns the spaces it
// is entitled to; one space asked for by name (oneSpace) and not entitled
// is an error.
func (x *export) meetReceiver(cert *crypto.Certificate, spaces []crypto.SpaceID, oneSpace bool) ([]crypto.SpaceID, error) {
	x.recipient = cert.Device.ID()
	x.res.Recipient = x.recipient.String()
	if _, self := x.c.Self(); x.recipient != self.Device.ID() {
		if _, err := x.c.AddCertificate(cert.MarshalBinary()); err != nil {
			return nil, fmt.Errorf("receiver's certificate: %w", err)
		}
		if _, err := x.c.ShareKeys(); err != nil {
			return nil, fmt.Errorf("share keys with the receiver: %w", err)
		}
	}
	kept := spaces[:0]
	for _, id := range spaces {
		if x.c.Entitled(cert, id) {
			kept = append(kept, id)
		} else {
			x.res.NotEntitled = append(x.res.NotEntitled, id.String())
		}
	}
	if oneSpace && len(kept) == 0 {
		return nil, fmt.Errorf("%w: device %s of bureau %s is not entitled to space %s (it is not released to that bureau)", ErrForbidden, x.recipient, cert.Bureau.Name, spaces[0])
	}
	return kept, nil
}

// plan decides what to send of each space: per author, the seqs above the
// receiver's (all of them without a want file).
func (x *export) plan(spaces []crypto.SpaceID, want crypto.Want) error {
	for _, id := range spaces {
		heads, err := x.c.Heads(id)
		if err != nil {
			return err
		}
		have := want.Vectors[id]
		for author, seq := range heads {
			if h := have[author]; seq > h {
				x.total += int64(seq - h)
			}
		}
		x.plans = append(x.plans, plan{space: id, have: have, heads: heads})
	}
	return nil
}

// gatherObjects reads the certificates, revocations and fork evidence to
// send, and refuses an export whose objects are over lim.
func (x *export) gatherObjects() error {
	x.certs = x.c.Certificates()
	for _, r := range x.c.Revocations() {
		x.revs = append(x.revs, r.Marshal())
	}
	slices.SortFunc(x.revs, bytes.Compare)
	x.evidence = x.c.Evidence()
	x.erasures = x.c.Erasures()
	if len(x.erasures) > x.lim.Erasures {
		return fmt.Errorf("%w: this device holds %d erase markers, over the %d an importer accepts in one bundle", ErrTooLarge, len(x.erasures), x.lim.Erasures)
	}
	_, self := x.c.Self()
	return checkExportLimits(x.lim, x.certs, self.Device.ID(), x.revs, x.evidence)
}

// checkExportLimits refuses an export whose certificates, revocations or
// fork evidence are over what an importer accepts in one bundle.
func checkExportLimits(lim crypto.BundleLimits, certs []*crypto.Certificate, self crypto.DeviceID, revs, evidence [][]byte) error {
	over := func(what string, n int, bytes, maxN int, maxBytes int64) error {
		if n > maxN || int64(bytes) > maxBytes {
			return fmt.Errorf("%w: this device holds %d %s (%d bytes), over what an importer accepts in one bundle (%d, %d bytes; docs/bundle.md, \"Limits\")",
				ErrTooLarge, n, what, bytes, maxN, maxBytes)
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

// checkPlanLimits refuses an export whose envelopes are over what an
// importer accepts in one bundle (docs/bundle.md, "Limits").
func (x *export) checkPlanLimits() error {
	lim := x.lim
	if len(x.plans) > lim.Spaces {
		return fmt.Errorf("%w: %d spaces to export, over the limit of %d spaces an importer accepts in one bundle: export fewer with --space", ErrTooLarge, len(x.plans), lim.Spaces)
	}
	pairs := 0
	for _, p := range x.plans {
		var n uint64
		for author, seq := range p.heads {
			if h := p.have[author]; seq > h {
				n += seq - h
				pairs++
			}
		}
		if n > uint64(lim.EnvelopesPerSpace) {
			return fmt.Errorf("%w: %d envelopes of space %s to export, over the limit of %d an importer accepts in one bundle: export for the receiver's want file, carry the bundle, and export again",
				ErrTooLarge, n, p.space, lim.EnvelopesPerSpace)
		}
	}
	if x.total > int64(lim.Envelopes) {
		return fmt.Errorf("%w: %d envelopes to export, over the limit of %d an importer accepts in one bundle: export one space at a time with --space", ErrTooLarge, x.total, lim.Envelopes)
	}
	if pairs > lim.Authors {
		return fmt.Errorf("%w: %d (space, author) logs to export, over the limit of %d an importer accepts in one bundle: export one space at a time with --space", ErrTooLarge, pairs, lim.Authors)
	}
	return nil
}

func (x *export) report() {
	if x.progress != nil {
		x.progress(Progress{Phase: "export", Done: x.done, Total: x.total, Unit: "envelopes"})
	}
}

// write writes the bundle to w: the objects first, then the envelopes.
func (x *export) write(ctx context.Context, w io.Writer) error {
	self, cert := x.c.Self()
	bw, err := crypto.NewBundleWriter(w, crypto.BundleExport, self, cert, x.recipient, x.c.Now())
	if err != nil {
		return err
	}
	if err := x.writeObjects(bw, cert.Device.ID()); err != nil {
		return err
	}
	for _, p := range x.plans {
		if err := x.writeSpace(ctx, bw, p); err != nil {
			return err
		}
	}
	return bw.Close()
}

// writeObjects writes the certificates (but self's, which the sender item
// carries), revocations and fork evidence.
func (x *export) writeObjects(bw *crypto.BundleWriter, self crypto.DeviceID) error {
	for _, c := range x.certs {
		if c.Device.ID() == self {
			continue
		}
		if err := bw.Add(crypto.ItemCertificate, c.MarshalBinary()); err != nil {
			return err
		}
		x.res.Certificates++
	}
	for _, r := range x.revs {
		if err := bw.Add(crypto.ItemRevocation, r); err != nil {
			return err
		}
		x.res.Revocations++
	}
	for _, e := range x.evidence {
		if err := bw.Add(crypto.ItemEvidence, e); err != nil {
			return err
		}
		x.res.Evidence++
	}
	for _, e := range x.erasures {
		t := crypto.ItemErasure
		if crypto.IsRecordErasure(e) {
			t = crypto.ItemRecErasure
		}
		if err := bw.Add(t, e); err != nil {
			return err
		}
		x.res.Erasures++
	}
	return nil
}

// writeSpace writes the envelopes p plans, counting them and key shares.
func (x *export) writeSpace(ctx context.Context, bw *crypto.BundleWriter, p plan) error {
	count := 0
	err := x.scanToSend(p, func(env []byte) error {
		if h, err := crypto.ParseHeader(env); err == nil && h.Kind == crypto.KindKeyShare {
			x.res.KeyShares++
		}
		count++
		x.done++
		if x.done%512 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("export interrupted: %w", err)
			}
			x.report()
		}
		return bw.Add(crypto.ItemEnvelope, env)
	})
	if err != nil {
		return err
	}
	x.res.Envelopes += count
	x.res.Spaces = append(x.res.Spaces, SpaceCount{Space: p.space.String(), Envelopes: count})
	return nil
}

// scanToSend calls fn with the envelopes of p's space above have, up to
// heads, each author's in seq order (authors by ID). An envelope corrupt in
// this store ends that author's run (the receiver would see a gap) and is
// counted in the result.
func (x *export) scanToSend(p plan, fn func([]byte) error) error {
	authors := make([]crypto.DeviceID, 0, len(p.heads))
	for author, seq := range p.heads {
		if seq > p.have[author] {
			authors = append(authors, author)
		}
	}
	slices.SortFunc(authors, func(a, b crypto.DeviceID) int { return bytes.Compare(a[:], b[:]) })
	for _, author := range authors {
		corrupt, err := x.c.ReadLog(p.space, author, p.have[author]+1, p.heads[author], fn)
		if corrupt {
			x.res.Corrupt++
		}
		if err != nil {
			return err
		}
	}
	return nil
}
