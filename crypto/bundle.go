package crypto

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"time"

	"fieldsync/crypto/internal/format"
)

// Bundle files carry signed objects between devices that never share a
// network (docs/design.md §6, sneakernet). Two kinds share one framing:
//
//   - a want file ("FSWN"): the receiver's version vector per space, so the
//     exporter sends only what is missing;
//   - a bundle ("FSBN"): certificates, revocations, fork evidence and
//     envelopes.
//
// Layout (all integers big-endian; docs/bundle.md has the full table):
//
//	magic (4) | version (1) = 1 | created (u64, Unix milliseconds) |
//	recipient device ID (16, zero: any device) |
//	items... | end item
//	item     = type (1) | length (u32) | payload (length bytes)
//	end item = 0xFF | length (u32) = 72 | item count (u64) | signature (64)
//
// The first item is the sender's certificate (ItemSender). The signature is
// Ed25519ctx "fieldsync/bundle/v1" by the sender's device key over
// SHA-256 of every byte of the file before the signature (magic, header,
// items, and the end item's type, length and count), so a file of any size
// is checked in one streaming pass with constant memory, and no byte can
// change, move or go without the signature failing. Nothing may follow the
// end item.
type BundleKind uint8

// Bundle file kinds.
const (
	BundleWant   BundleKind = 1 // a want file (version vectors)
	BundleExport BundleKind = 2 // a bundle of objects and envelopes
)

// BundleVersion is the bundle and want file format version.
const BundleVersion = 1

const (
	magicBundle = "FSBN"
	magicWant   = "FSWN"
	// bundleHeaderSize is magic, version, created and recipient.
	bundleHeaderSize = 4 + 1 + 8 + 16
	itemHeaderSize   = 1 + 4
)

func (k BundleKind) magic() string {
	if k == BundleWant {
		return magicWant
	}
	return magicBundle
}

func (k BundleKind) String() string {
	switch k {
	case BundleWant:
		return "want file"
	case BundleExport:
		return "bundle"
	}
	return fmt.Sprintf("bundle kind %d", k)
}

// ItemType is the type of one item of a bundle or want file.
type ItemType uint8

// Item types. Codes are append-only.
const (
	ItemSender      ItemType = 1    // the signing device's certificate (binary); first item, exactly once
	ItemCertificate ItemType = 2    // a device certificate (binary)
	ItemRevocation  ItemType = 3    // a bureau-signed revocation (binary)
	ItemEvidence    ItemType = 4    // fork evidence (two envelopes of one author; format of the agent)
	ItemEnvelope    ItemType = 5    // a signed envelope
	ItemVector      ItemType = 6    // want files: space (16) | count (u32) | count × (author (16) | seq (u64))
	ItemErasure     ItemType = 7    // an erase marker (Erasure), a space's tombstone
	ItemRecErasure  ItemType = 8    // a record-erase marker (RecordErasure)
	itemEnd         ItemType = 0xFF // the end item and signature

	numItemTypes = int(ItemRecErasure) + 1 // sizes per-type counters: maxItem allows no type at or above it
)

func (t ItemType) String() string {
	switch t {
	case ItemSender:
		return "sender certificate"
	case ItemCertificate:
		return "certificate"
	case ItemRevocation:
		return "revocation"
	case ItemEvidence:
		return "fork evidence"
	case ItemEnvelope:
		return "envelope"
	case ItemVector:
		return "version vector"
	case ItemErasure:
		return "erase marker"
	case ItemRecErasure:
		return "record-erase marker"
	case itemEnd:
		return "end"
	}
	return fmt.Sprintf("item type %d", t)
}

// Bundle limits.
const (
	// MaxWantAuthors bounds the authors of one space in a want file.
	MaxWantAuthors = 1 << 20
	// maxCertItem bounds certificate and revocation items.
	maxCertItem = 5 + 32 + 16 + 8 + 8 + 4 + 24*MaxRevocationCutoffs + SignatureSize
	// maxEvidenceItem bounds fork evidence: two envelopes and a small header.
	maxEvidenceItem = 2*MaxEnvelopeSize + 1024
)

// BundleLimits bounds each section of a bundle, so that no bundle — signed
// by a member device, or carried by anyone — can make an importer hold or
// work through more than these (docs/bundle.md, "Limits"). A BundleReader
// checks the item counts and bytes as it reads each item header, before it
// reads the payload; the importer checks the per-space counts, which need
// the envelopes' headers. An exporter refuses to write a bundle over them.
type BundleLimits struct {
	Certificates      int   // certificate items (the sender's not counted)
	CertificateBytes  int64 // their payload bytes
	Revocations       int   // revocation items
	RevocationBytes   int64
	Evidence          int // fork evidence items
	EvidenceBytes     int64
	Erasures          int   // erase marker items (each erasureSize bytes), and record-erase marker items
	RecErasureBytes   int64 // record-erase markers' payload bytes
	Envelopes         int   // envelope items in the whole bundle
	EnvelopesPerSpace int   // envelopes of one space (checked by the importer)
	Spaces            int   // distinct spaces with envelopes (checked by the importer)
	Authors           int   // distinct (space, author) pairs (checked by the importer)
}

// Default bundle limits (docs/bundle.md). They are far above what a device
// holds (W1-L's largest bundle has 200,001 envelopes in one space) and keep
// an importer's memory for a bundle's bookkeeping under about 200 MiB.
const (
	MaxBundleCertificates      = 1 << 16
	MaxBundleCertificateBytes  = 64 << 20
	MaxBundleRevocations       = 1 << 16
	MaxBundleRevocationBytes   = 64 << 20
	MaxBundleEvidence          = 1 << 10
	MaxBundleEvidenceBytes     = 256 << 20
	MaxBundleErasures          = 1 << 16
	MaxBundleRecErasureBytes   = 64 << 20
	MaxBundleEnvelopes         = 1 << 22
	MaxBundleEnvelopesPerSpace = 1 << 21
	MaxBundleSpaces            = 1 << 16
	MaxBundleAuthors           = 1 << 20
)

// DefaultBundleLimits are the limits every reader starts with.
func DefaultBundleLimits() BundleLimits {
	return BundleLimits{
		Certificates: MaxBundleCertificates, CertificateBytes: MaxBundleCertificateBytes,
		Revocations: MaxBundleRevocations, RevocationBytes: MaxBundleRevocationBytes,
		Evidence: MaxBundleEvidence, EvidenceBytes: MaxBundleEvidenceBytes,
		Erasures: MaxBundleErasures, RecErasureBytes: MaxBundleRecErasureBytes,
		Envelopes: MaxBundleEnvelopes, EnvelopesPerSpace: MaxBundleEnvelopesPerSpace,
		Spaces: MaxBundleSpaces, Authors: MaxBundleAuthors,
	}
}

// ErrBundleLimit is a bundle over one of its limits (BundleLimits); the
// error also matches ErrOversize. The bundle is refused whole.
var ErrBundleLimit = errors.New("over a bundle limit")

// LimitError is ErrBundleLimit naming the limit: "more than <limit> <what>
// in one bundle", what a noun phrase ("certificates", "bytes of fork
// evidence", "envelopes of space S").
func LimitError(limit int64, what string) error {
	return fmt.Errorf("%w (%w): more than %d %s in one bundle, the limit an importer accepts (docs/bundle.md, \"Limits\"); "+
		"it stops reading there and stores nothing. The exporter must carry less in one bundle: export for the receiver's want file, or one space at a time with --space",
		ErrBundleLimit, ErrOversize, limit, what)
}

// limit is the count and byte limit of items of type t, and their name.
func (l *BundleLimits) limit(t ItemType) (count int, bytes int64, what string) {
	switch t {
	case ItemCertificate:
		return l.Certificates, l.CertificateBytes, "certificates"
	case ItemRevocation:
		return l.Revocations, l.RevocationBytes, "revocations"
	case ItemEvidence:
		return l.Evidence, l.EvidenceBytes, "pieces of fork evidence"
	case ItemEnvelope:
		return l.Envelopes, 0, "envelopes"
	case ItemErasure:
		return l.Erasures, 0, "erase markers"
	case ItemRecErasure:
		return l.Erasures, l.RecErasureBytes, "record-erase markers"
	}
	return 0, 0, ""
}

// maxItem is the largest payload an item of type t may have in a file of
// kind k; 0 means the type is not allowed there.
func maxItem(k BundleKind, t ItemType) int {
	switch t {
	case ItemSender:
		return maxCertItem
	case ItemVector:
		if k == BundleWant {
			return 16 + 4 + 24*MaxWantAuthors
		}
	case ItemCertificate, ItemRevocation:
		if k == BundleExport {
			return maxCertItem
		}
	case ItemEvidence:
		if k == BundleExport {
			return maxEvidenceItem
		}
	case ItemEnvelope:
		if k == BundleExport {
			return MaxEnvelopeSize
		}
	case ItemErasure:
		if k == BundleExport {
			return erasureSize
		}
	case ItemRecErasure:
		if k == BundleExport {
			return maxRecordErasure
		}
	}
	return 0
}

var ctxBundle = &ed25519.Options{Context: "fieldsync/bundle/v1"}

// BundleWriter writes a bundle or want file as a stream: the caller adds
// items one by one and Close signs the whole. Nothing is held in memory
// beyond one buffered item.
type BundleWriter struct {
	w     *bufio.Writer
	h     hash.Hash
	id    *Identity
	kind  BundleKind
	count uint64
	err   error
}

// NewBundleWriter starts a file of the given kind on w, signed by id whose
// certificate is cert (written as the first item). recipient names the
// device the file is for (zero: any device); created is its time.
func NewBundleWriter(w io.Writer, kind BundleKind, id *Identity, cert *Certificate, recipient DeviceID, created time.Time) (*BundleWriter, error) {
	if kind != BundleWant && kind != BundleExport {
		return nil, fmt.Errorf("bundle: unknown kind %d", kind)
	}
	if cert == nil || !cert.Device.Equal(id.Public()) {
		return nil, errors.New("bundle: the certificate is not the signing device's")
	}
	bw := &BundleWriter{w: bufio.NewWriterSize(w, 256<<10), h: sha256.New(), id: id, kind: kind}
	hdr := make([]byte, 0, bundleHeaderSize)
	hdr = append(hdr, kind.magic()...)
	hdr = append(hdr, BundleVersion)
	hdr = format.AppendU64(hdr, uint64(created.UnixMilli()))
	hdr = append(hdr, recipient[:]...)
	bw.write(hdr)
	if err := bw.Add(ItemSender, cert.MarshalBinary()); err != nil {
		return nil, err
	}
	return bw, nil
}

func (bw *BundleWriter) write(b []byte) {
	if bw.err != nil {
		return
	}
	bw.h.Write(b)
	_, bw.err = bw.w.Write(b)
}

// Add writes one item. The sender item is written by NewBundleWriter.
func (bw *BundleWriter) Add(t ItemType, payload []byte) error {
	if bw.err != nil {
		return bw.err
	}
	if t == ItemSender && bw.count > 0 {
		return errors.New("bundle: only one sender certificate")
	}
	if max := maxItem(bw.kind, t); max == 0 || len(payload) > max {
		return fmt.Errorf("bundle: a %s of %d bytes does not belong in a %s", t, len(payload), bw.kind)
	}
	var hdr [itemHeaderSize]byte
	hdr[0] = byte(t)
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	bw.write(hdr[:])
	bw.write(payload)
	bw.count++
	return bw.err
}

// Close writes the end item with the signature and flushes. It does not
// close the underlying writer.
func (bw *BundleWriter) Close() error {
	if bw.err != nil {
		return bw.err
	}
	end := make([]byte, 0, itemHeaderSize+8)
	end = append(end, byte(itemEnd))
	end = format.AppendU32(end, 8+SignatureSize)
	end = format.AppendU64(end, bw.count)
	bw.write(end)
	digest := bw.h.Sum(nil)
	sig := signCtx(bw.id.sign, digest, ctxBundle)
	if bw.err == nil {
		_, bw.err = bw.w.Write(sig)
	}
	if bw.err == nil {
		bw.err = bw.w.Flush()
	}
	if bw.err == nil {
		bw.err = errors.New("bundle: writer closed")
		return nil
	}
	return bw.err
}

// BundleHeader is the fixed header of a bundle or want file.
type BundleHeader struct {
	Kind      BundleKind
	Created   time.Time
	Recipient DeviceID // zero: any device
}

// BundleReader reads a bundle or want file as a stream, checking its
// framing and limits as it goes and the sender's signature over all of it at
// the end. Items it returns before Next reports io.EOF are NOT yet
// authenticated: a caller must not act on any of them (store, apply) until
// Next has returned io.EOF, which means the whole file verified against the
// sender certificate's device key. Whether the sender's bureau is trusted is
// the caller's question (Certificate.Verify).
type BundleReader struct {
	r      *bufio.Reader
	h      hash.Hash
	kind   BundleKind
	header BundleHeader
	sender *Certificate
	count  uint64
	read   int64
	done   bool
	err    error
	limits BundleLimits
	// per item type: items and payload bytes read so far
	nItems [numItemTypes]int
	nBytes [numItemTypes]int64
}

// SetLimits replaces the reader's limits (DefaultBundleLimits at first).
func (br *BundleReader) SetLimits(l BundleLimits) { br.limits = l }

// NewBundleReader reads the header of a file of the given kind and its first
// item, the sender's certificate (checked against its bureau's signature,
// not against any trust set).
func NewBundleReader(r io.Reader, kind BundleKind) (*BundleReader, error) {
	br := &BundleReader{r: bufio.NewReaderSize(r, 256<<10), h: sha256.New(), kind: kind, limits: DefaultBundleLimits()}
	hdr, err := br.readN(bundleHeaderSize)
	if err != nil {
		return nil, err
	}
	if string(hdr[:4]) != kind.magic() {
		other := BundleWant
		if kind == BundleWant {
			other = BundleExport
		}
		if string(hdr[:4]) == other.magic() {
			return nil, malformed(kind.String(), ErrInvalid, "this is a "+other.String()+", not a "+kind.String())
		}
		return nil, malformed(kind.String(), ErrUnknownVersion, "not a fieldsync "+kind.String()+" (bad magic)")
	}
	if hdr[4] != BundleVersion {
		return nil, malformed(kind.String(), ErrUnknownVersion, fmt.Sprintf("version %d (this fieldsync reads %d): upgrade fieldsync", hdr[4], BundleVersion))
	}
	br.header = BundleHeader{Kind: kind, Created: time.UnixMilli(int64(binary.BigEndian.Uint64(hdr[5:13]))).UTC()}
	copy(br.header.Recipient[:], hdr[13:29])
	t, payload, err := br.next()
	if err != nil {
		return nil, err
	}
	if t != ItemSender {
		return nil, malformed(kind.String(), ErrInvalid, "the first item is not the sender's certificate")
	}
	if br.sender, err = ParseCertificate(payload); err != nil {
		return nil, fmt.Errorf("%s: sender certificate: %w", kind, err)
	}
	return br, nil
}

// Header is the file's fixed header (not authenticated until Next returns io.EOF).
func (br *BundleReader) Header() BundleHeader { return br.header }

// Sender is the certificate of the device that signed the file.
func (br *BundleReader) Sender() *Certificate { return br.sender }

// Offset is how many bytes have been read so far.
func (br *BundleReader) Offset() int64 { return br.read }

func (br *BundleReader) readN(n int) ([]byte, error) {
	var b []byte
	if n <= 1<<20 {
		b = make([]byte, n)
		if _, err := io.ReadFull(br.r, b); err != nil {
			return nil, br.readErr(err)
		}
	} else {
		// A large item grows with the bytes actually there, so a short
		// file claiming a huge item costs no more memory than it holds.
		var buf bytes.Buffer
		if _, err := io.CopyN(&buf, br.r, int64(n)); err != nil {
			return nil, br.readErr(err)
		}
		b = buf.Bytes()
	}
	br.h.Write(b)
	br.read += int64(n)
	return b, nil
}

func (br *BundleReader) readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return truncated(br.kind.String())
	}
	return fmt.Errorf("read %s: %w", br.kind, err)
}

// next reads one item's type and payload.
func (br *BundleReader) next() (ItemType, []byte, error) {
	hdr, err := br.readN(itemHeaderSize)
	if err != nil {
		return 0, nil, err
	}
	t, n := ItemType(hdr[0]), binary.BigEndian.Uint32(hdr[1:])
	if t == itemEnd {
		if n != 8+SignatureSize {
			return 0, nil, malformed(br.kind.String(), ErrInvalid, "end item length")
		}
		return t, nil, nil
	}
	max := maxItem(br.kind, t)
	if max == 0 {
		return 0, nil, malformed(br.kind.String(), ErrInvalid, fmt.Sprintf("a %s at byte %d does not belong in a %s", t, br.read-itemHeaderSize, br.kind))
	}
	if t == ItemSender && br.count > 0 {
		return 0, nil, malformed(br.kind.String(), ErrInvalid, "a second sender certificate")
	}
	if int64(n) > int64(max) {
		return 0, nil, malformed(br.kind.String(), ErrOversize, fmt.Sprintf("a %s of %d bytes", t, n))
	}
	if br.kind == BundleExport {
		// Counted before the payload is read: a bundle over a limit costs
		// the importer no more than the limit.
		if maxN, maxB, what := br.limits.limit(t); what != "" {
			if br.nItems[t]+1 > maxN {
				return 0, nil, LimitError(int64(maxN), what)
			}
			if maxB > 0 && br.nBytes[t]+int64(n) > maxB {
				return 0, nil, LimitError(maxB, "bytes of "+what)
			}
			br.nItems[t]++
			br.nBytes[t] += int64(n)
		}
	}
	payload, err := br.readN(int(n))
	if err != nil {
		return 0, nil, err
	}
	br.count++
	return t, payload, nil
}

// Next returns the next item. After the last item it checks the end item and
// the signature over the whole file, and returns io.EOF only if both hold
// and nothing follows; ErrSignature if the file was changed anywhere after
// it was signed (or signed by another key); ErrMalformed for broken framing.
// The payload is the caller's to keep.
func (br *BundleReader) Next() (ItemType, []byte, error) {
	if br.err != nil {
		return 0, nil, br.err
	}
	if br.done {
		return 0, nil, io.EOF
	}
	t, payload, err := br.next()
	if err != nil {
		br.err = err
		return 0, nil, err
	}
	if t != itemEnd {
		return t, payload, nil
	}
	br.err = br.finish()
	if br.err != nil {
		return 0, nil, br.err
	}
	br.done = true
	return 0, nil, io.EOF
}

func (br *BundleReader) finish() error {
	cnt, err := br.readN(8)
	if err != nil {
		return err
	}
	if binary.BigEndian.Uint64(cnt) != br.count { // the sender item counts too
		return malformed(br.kind.String(), ErrInvalid, "item count does not match")
	}
	digest := br.h.Sum(nil)
	sig := make([]byte, SignatureSize)
	if _, err := io.ReadFull(br.r, sig); err != nil {
		return truncated(br.kind.String())
	}
	br.read += SignatureSize
	if !verifyCtx(br.sender.Device.SignKey, digest, sig, ctxBundle) {
		return wrapf(ErrSignature, "the %s was changed after it was signed, or not signed by its sender", br.kind)
	}
	if _, err := br.r.ReadByte(); err != io.EOF {
		return malformed(br.kind.String(), ErrInvalid, "data after the signature")
	}
	return nil
}

// CheckBundleSignature reads a whole file of the given kind, size bytes
// long, and checks only the sender's signature over it, in constant memory:
// it parses the header and the sender's certificate and only hashes every
// other byte. An importer calls it before it parses anything else, so that
// nothing of a file its sender did not sign is parsed, kept or verified (a
// stranger can attach any member's public certificate as the sender). The
// parsing pass (BundleReader) checks the signature again, in case the file
// changed in between. It returns the header and the sender's certificate
// (checked against its bureau's signature, not against any trust set).
func CheckBundleSignature(r io.Reader, size int64, kind BundleKind) (BundleHeader, *Certificate, error) {
	br, err := NewBundleReader(r, kind)
	if err != nil {
		return BundleHeader{}, nil, err
	}
	const endItem = itemHeaderSize + 8
	rest := size - SignatureSize - endItem - br.read
	if rest < 0 {
		return BundleHeader{}, nil, truncated(kind.String())
	}
	if _, err := io.CopyN(br.h, br.r, rest); err != nil {
		return BundleHeader{}, nil, br.readErr(err)
	}
	end, err := br.readN(endItem)
	if err != nil {
		return BundleHeader{}, nil, err
	}
	if ItemType(end[0]) != itemEnd || binary.BigEndian.Uint32(end[1:5]) != 8+SignatureSize {
		return BundleHeader{}, nil, malformed(kind.String(), ErrInvalid, "no end item before the last 64 bytes: the file is truncated, or has data after its signature")
	}
	digest := br.h.Sum(nil)
	sig := make([]byte, SignatureSize)
	if _, err := io.ReadFull(br.r, sig); err != nil {
		return BundleHeader{}, nil, truncated(kind.String())
	}
	if !verifyCtx(br.sender.Device.SignKey, digest, sig, ctxBundle) {
		return BundleHeader{}, nil, wrapf(ErrSignature, "the %s was changed after it was signed, or not signed by its sender", kind)
	}
	if _, err := br.r.ReadByte(); err != io.EOF {
		return BundleHeader{}, nil, malformed(kind.String(), ErrInvalid, "data after the signature")
	}
	return br.header, br.sender, nil
}

// Want is the content of a want file: per space, the highest contiguous
// seq the receiver holds of each author.
type Want struct {
	Vectors map[SpaceID]map[DeviceID]uint64
}

// EncodeVector is an ItemVector payload.
func EncodeVector(space SpaceID, v map[DeviceID]uint64) []byte {
	b := make([]byte, 0, 20+24*len(v))
	b = append(b, space[:]...)
	b = format.AppendU32(b, uint32(len(v)))
	keys := make([]DeviceID, 0, len(v))
	for d := range v {
		keys = append(keys, d)
	}
	sortDevices(keys)
	for _, d := range keys {
		b = append(b, d[:]...)
		b = format.AppendU64(b, v[d])
	}
	return b
}

func sortDevices(d []DeviceID) {
	slices.SortFunc(d, func(a, b DeviceID) int { return bytes.Compare(a[:], b[:]) })
}

// ParseVector decodes an ItemVector payload. Authors must be strictly
// ascending.
func ParseVector(b []byte) (SpaceID, map[DeviceID]uint64, error) {
	r := format.NewReader(b, "version vector")
	var space SpaceID
	r.CopyTo(space[:])
	n := r.U32()
	if r.Err() == nil && (n > MaxWantAuthors || int(n)*24 != r.Len()) {
		if n > MaxWantAuthors {
			return space, nil, malformed("version vector", ErrOversize, "author count")
		}
		return space, nil, truncated("version vector")
	}
	v := make(map[DeviceID]uint64, n)
	var last []byte
	for i := uint32(0); i < n && r.Err() == nil; i++ {
		d := r.Bytes(16)
		seq := r.U64()
		if r.Err() == nil && last != nil && bytes.Compare(last, d) >= 0 {
			return space, nil, invalid("version vector", "authors not strictly ascending")
		}
		last = d
		v[DeviceID(d)] = seq
	}
	if err := r.Done(); err != nil {
		return space, nil, err
	}
	return space, v, nil
}

// MarshalWant writes a signed want file of w to out.
func MarshalWant(out io.Writer, w Want, id *Identity, cert *Certificate, created time.Time) error {
	bw, err := NewBundleWriter(out, BundleWant, id, cert, DeviceID{}, created)
	if err != nil {
		return err
	}
	spaces := make([]SpaceID, 0, len(w.Vectors))
	for s := range w.Vectors {
		spaces = append(spaces, s)
	}
	slices.SortFunc(spaces, func(a, b SpaceID) int { return bytes.Compare(a[:], b[:]) })
	for _, s := range spaces {
		if err := bw.Add(ItemVector, EncodeVector(s, w.Vectors[s])); err != nil {
			return err
		}
	}
	return bw.Close()
}

// ParseWant reads a whole want file and checks its signature; it returns the
// vectors, the header and the sender's certificate (whose trust the caller
// judges). A space may appear once.
func ParseWant(r io.Reader) (Want, BundleHeader, *Certificate, error) {
	br, err := NewBundleReader(r, BundleWant)
	if err != nil {
		return Want{}, BundleHeader{}, nil, err
	}
	w := Want{Vectors: map[SpaceID]map[DeviceID]uint64{}}
	for {
		t, payload, err := br.Next()
		if err == io.EOF {
			return w, br.Header(), br.Sender(), nil
		}
		if err != nil {
			return Want{}, BundleHeader{}, nil, err
		}
		if t != ItemVector {
			continue // cannot happen: maxItem allows only vectors
		}
		space, v, err := ParseVector(payload)
		if err != nil {
			return Want{}, BundleHeader{}, nil, err
		}
		if _, dup := w.Vectors[space]; dup {
			return Want{}, BundleHeader{}, nil, invalid("want file", "a space listed twice")
		}
		w.Vectors[space] = v
	}
}
