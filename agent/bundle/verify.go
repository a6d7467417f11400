package bundle

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"time"

	"fieldsync/crdt"
	"fieldsync/crypto"
	"fieldsync/internal/parallel"
)

// verdict is what the verifying pass decided about one envelope of a bundle.
type verdict struct {
	sum    [32]byte // SHA-256 of the envelope: the storing pass must read the same bytes
	reason string   // "" accepted; else a reject reason (a constant: no memory per envelope)
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
	erasures       [][]byte             // erase markers (small, bounded by the limits), judged when stored
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
func (v *verifiedBundle) certOf(author crypto.DeviceID, c Core) *crypto.Certificate {
	if p := c.Pinned(author); p != nil {
		return p
	}
	return v.byDevice[author]
}

// logKey names one author's log in one space.
type logKey struct {
	space  crypto.SpaceID
	author crypto.DeviceID
}

// verifier is the verifying pass under way.
type verifier struct {
	c          Core
	lim        crypto.BundleLimits
	v          *verifiedBundle
	revs       map[crypto.DeviceID]*crypto.Revocation // held here and in the bundle
	batch      []pending                              // envelopes not yet judged
	batchBytes int
	lastSeq    map[logKey]uint64
	perSpace   map[crypto.SpaceID]int
}

// pending is an envelope waiting in a batch to be judged.
type pending struct {
	env    []byte
	idx    int
	reason string
	msg    string
}

// verifyBundle is the verifying pass of Import: it reads r to its end and
// stores nothing. It refuses a bundle over any of lim at the item that
// crosses it.
//
// sender is the exporter's certificate as the signature check read it (and
// judgeSender accepted): the file must still name it.
func verifyBundle(ctx context.Context, c Core, lim crypto.BundleLimits, r io.Reader, sender *crypto.Certificate, progress func(offset int64)) (*verifiedBundle, error) {
	br, err := crypto.NewBundleReader(bufio.NewReaderSize(r, 1<<20), crypto.BundleExport)
	if err != nil {
		return nil, err
	}
	br.SetLimits(lim)
	v := &verifiedBundle{header: br.Header(), sender: br.Sender(), byDevice: map[crypto.DeviceID]*crypto.Certificate{}, messages: map[int]string{}}
	if !bytes.Equal(v.sender.MarshalBinary(), sender.MarshalBinary()) {
		return nil, errors.New("the file changed while it was being read (its sender is not the one whose signature was checked): read it again")
	}
	v.certs = append(v.certs, v.sender)
	v.byDevice[v.sender.Device.ID()] = v.sender
	vf := &verifier{c: c, lim: lim, v: v, revs: c.Revocations(), lastSeq: map[logKey]uint64{}, perSpace: map[crypto.SpaceID]int{}}
	if err := vf.readItems(ctx, br, progress); err != nil {
		return nil, err
	}
	vf.flush()
	return v, nil
}

// readItems reads every item of br: objects first, then envelopes.
func (vf *verifier) readItems(ctx context.Context, br *crypto.BundleReader, progress func(offset int64)) error {
	seenEnvelope := false
	for items := 1; ; items++ {
		t, payload, err := br.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if items%256 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("import interrupted: %w", err)
			}
			progress(br.Offset())
		}
		if t != crypto.ItemEnvelope && seenEnvelope {
			return fmt.Errorf("a %s after the envelopes (certificates, revocations and evidence come first)", t)
		}
		switch t {
		case crypto.ItemCertificate:
			err = vf.certificate(payload, items)
		case crypto.ItemRevocation:
			err = vf.revocation(payload, items)
		case crypto.ItemEvidence:
			vf.v.evidence = append(vf.v.evidence, sha256.Sum256(payload))
		case crypto.ItemErasure:
			if _, perr := crypto.ParseErasure(payload); perr != nil {
				return fmt.Errorf("erase marker item %d: %v", items, perr)
			}
			vf.v.erasures = append(vf.v.erasures, bytes.Clone(payload))
		case crypto.ItemRecErasure:
			if _, perr := crypto.ParseRecordErasure(payload); perr != nil {
				return fmt.Errorf("record-erase marker item %d: %v", items, perr)
			}
			vf.v.erasures = append(vf.v.erasures, bytes.Clone(payload)) // AddErasure tells them apart
		case crypto.ItemEnvelope:
			seenEnvelope = true
			err = vf.envelope(payload)
		}
		if err != nil {
			return err
		}
	}
}

// skipObject leaves an object of the bundle out, with a note why.
func (vf *verifier) skipObject(note string) {
	vf.v.skippedObjects++
	vf.v.notes.add(note)
}

// certificate keeps a certificate of the bundle if its bureau is trusted
// here and it agrees with its device's pin. As AddCertificate: a device
// stays pinned to the bureau and keys that first certified it, and only a
// countersigned certificate pins (docs/crypto.md, "Pinning and scoped
// trust").
func (vf *verifier) certificate(payload []byte, item int) error {
	c, err := crypto.ParseCertificate(payload)
	if err != nil {
		return fmt.Errorf("certificate item %d: %v", item, err)
	}
	if !vf.c.TrustsBureau(c.Bureau.Fingerprint()) {
		vf.skipObject(fmt.Sprintf("certificate of device %s: bureau %s is not trusted", c.Device.ID(), c.Bureau.Name))
		return nil
	}
	pinned, conflict := vf.c.Pin(c)
	if conflict {
		vf.skipObject(fmt.Sprintf("certificate of device %s by bureau %s: conflicts with the one it is pinned to (bureau %s)", c.Device.ID(), c.Bureau.Name, pinned.Bureau.Name))
		return nil
	}
	if pinned == nil && !c.Countersigned() {
		vf.skipObject(fmt.Sprintf("certificate of device %s: version 1, without the device's countersignature", c.Device.ID()))
		return nil
	}
	if vf.v.byDevice[c.Device.ID()] == nil {
		vf.v.certs = append(vf.v.certs, c)
		vf.v.byDevice[c.Device.ID()] = c
	}
	return nil
}

// revocation keeps a revocation of the bundle signed by a bureau trusted to
// revoke its device (a released bureau revoking its own device).
func (vf *verifier) revocation(payload []byte, item int) error {
	r, err := crypto.ParseRevocation(payload)
	if err != nil {
		return fmt.Errorf("revocation item %d: %v", item, err)
	}
	ts := vf.c.TrustAnywhere(vf.v.certOf(r.Device, vf.c))
	if err := r.Verify(ts); err != nil {
		vf.skipObject(fmt.Sprintf("revocation of device %s: %v", r.Device, err))
		return nil
	}
	vf.v.revs = append(vf.v.revs, r)
	vf.revs[r.Device] = r
	return nil
}

// envelope checks an envelope's place (per-space and per-author limits,
// each author's run contiguous) and queues it to be judged.
func (vf *verifier) envelope(payload []byte) error {
	v, lim := vf.v, vf.lim
	v.verdicts = append(v.verdicts, verdict{sum: sha256.Sum256(payload)})
	idx := len(v.verdicts) - 1
	h, err := crypto.ParseHeader(payload)
	if err != nil {
		v.verdicts[idx].reason = ReasonMalformed
		if len(v.messages) < maxSkipMessages {
			v.messages[idx] = err.Error()
		}
		return nil
	}
	if _, ok := vf.perSpace[h.Space]; !ok && len(vf.perSpace) >= lim.Spaces {
		return crypto.LimitError(int64(lim.Spaces), "spaces")
	}
	if vf.perSpace[h.Space]++; vf.perSpace[h.Space] > lim.EnvelopesPerSpace {
		return crypto.LimitError(int64(lim.EnvelopesPerSpace), "envelopes of space "+h.Space.String())
	}
	k := logKey{h.Space, h.Author}
	last, ok := vf.lastSeq[k]
	if ok && h.Seq != last+1 {
		return fmt.Errorf("envelopes of device %s in space %s out of order (seq %d after %d)", h.Author, h.Space, h.Seq, last)
	}
	if !ok && len(vf.lastSeq) >= lim.Authors {
		return crypto.LimitError(int64(lim.Authors), "(space, author) logs")
	}
	vf.lastSeq[k] = h.Seq
	vf.batch = append(vf.batch, pending{env: payload, idx: idx})
	vf.batchBytes += len(payload)
	if vf.batchBytes >= verifyBatchBytes || len(vf.batch) >= 4096 {
		vf.flush()
	}
	return nil
}

// flush judges the envelopes of the batch, on every core.
func (vf *verifier) flush() {
	batch := vf.batch
	parallel.ForEach(len(batch), func(i int) {
		batch[i].reason, batch[i].msg = judgeEnvelope(vf.c, batch[i].env, vf.v, vf.revs)
	})
	for _, p := range batch {
		vf.v.verdicts[p.idx].reason = p.reason
		if p.reason != "" && len(vf.v.messages) < maxSkipMessages {
			vf.v.messages[p.idx] = p.msg
		}
	}
	vf.batch, vf.batchBytes = batch[:0], 0
}

// judgeEnvelope checks one envelope of a bundle as the sync path checks one
// from a peer, against the bundle's certificates and revocations as well as
// those this device holds. It returns "" or a reject reason and message.
func judgeEnvelope(c Core, env []byte, v *verifiedBundle, revs map[crypto.DeviceID]*crypto.Revocation) (string, string) {
	h, err := crypto.ParseHeader(env)
	if err != nil {
		return ReasonMalformed, err.Error()
	}
	cert := v.certOf(h.Author, c) // the pinned certificate first
	if cert == nil {
		return ReasonUnknown, fmt.Sprintf("no certificate for device %s", h.Author)
	}
	if _, _, err := crypto.Verify(env, cert.Device); err != nil {
		return ReasonSignature, err.Error()
	}
	at := time.UnixMilli(crdt.UnpackTimestamp(h.HLC).Wall)
	if at.Before(cert.NotBefore) {
		at = cert.NotBefore
	}
	if reason, err := c.CheckAuthor(h, cert, revs[h.Author], at); err != nil {
		return reason, err.Error()
	}
	return "", ""
}
