package crypto

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fieldsync/crypto/internal/format"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Binary magics; the byte after each is the format version (1).
const (
	magicRequest     = "FSRQ"
	magicCertificate = "FSCT"
	magicRevocation  = "FSRV"
	objectVersion    = 1
	// certVersion2 is a countersigned certificate: "FSCT" | 2 | the version
	// 1 certificate as the bureau signed it | the device's countersignature.
	certVersion2 = 2

	// MaxObjectJSON bounds the JSON forms of requests and certificates.
	MaxObjectJSON = 16 << 10
	// MaxRevocationCutoffs bounds the per-space cut-offs of one revocation.
	MaxRevocationCutoffs = 1 << 16
)

// ctxEnrollment is the domain of a device's countersignature over the
// certificate its bureau signed for it (certificate version 2).
var ctxEnrollment = &ed25519.Options{Context: "fieldsync/enrollment/v1"}

func appendTime(b []byte, t time.Time) []byte { return format.AppendU64(b, uint64(t.Unix())) }

func readTime(r *format.Reader) time.Time { return time.Unix(int64(r.U64()), 0).UTC() }

// ---- Request ----

// Request is a device's enrollment request: its public keys and the
// commitment to its officer's name, self-signed with the device key (proof of
// possession of the signing key). A bureau turns it into a Certificate.
//
// Binary: "FSRQ" | 1 | sign key (32) | agree key (32) | name commitment (32) |
// signature (64, Ed25519ctx "fieldsync/request/v1" over the bytes before it).
type Request struct {
	Device         DevicePublic
	NameCommitment [32]byte
	sig            []byte
}

func (r *Request) signed() []byte {
	b := make([]byte, 0, 5+96+SignatureSize)
	b = append(b, magicRequest...)
	b = append(b, objectVersion)
	b = append(b, r.Device.SignKey...)
	b = append(b, r.Device.AgreeKey[:]...)
	return append(b, r.NameCommitment[:]...)
}

// NewRequest makes a signed enrollment request for id.
func NewRequest(id *Identity, nameCommitment [32]byte) *Request {
	r := &Request{Device: id.Public(), NameCommitment: nameCommitment}
	r.sig = signCtx(id.sign, r.signed(), ctxRequest)
	return r
}

// check verifies the self-signature.
func (r *Request) check() error {
	if r == nil || len(r.Device.SignKey) != ed25519.PublicKeySize {
		return invalid("request", "no device key")
	}
	if !verifyCtx(r.Device.SignKey, r.signed(), r.sig, ctxRequest) {
		return ErrSignature
	}
	return nil
}

// MarshalBinary returns the signed binary form (nil for an unsigned request).
func (r *Request) MarshalBinary() []byte {
	if r.sig == nil {
		return nil
	}
	return append(r.signed(), r.sig...)
}

type requestJSON struct {
	Format string `json:"format"`
	Device string `json:"device"`
	Binary []byte `json:"binary"`
}

// Marshal returns the req.json form: {"format", "device", "binary"}, where
// binary is the base64 of MarshalBinary (authoritative) and device the ID.
func (r *Request) Marshal() []byte {
	b, _ := json.MarshalIndent(requestJSON{"fieldsync-request-v1", r.Device.ID().String(), r.MarshalBinary()}, "", "  ")
	return append(b, '\n')
}

// ParseRequest decodes a request in either form and checks its
// self-signature.
func ParseRequest(data []byte) (*Request, error) {
	if isJSON(data) {
		var j requestJSON
		if err := decodeJSON(data, &j, "request"); err != nil {
			return nil, err
		}
		if j.Format != "fieldsync-request-v1" {
			return nil, malformed("request", ErrUnknownVersion, "format")
		}
		r, err := ParseRequest(j.Binary)
		if err != nil {
			return nil, err
		}
		if j.Device != r.Device.ID().String() {
			return nil, invalid("request", "device differs from the signed binary")
		}
		return r, nil
	}
	rd := format.NewReader(data, "request")
	rd.Magic(magicRequest, objectVersion)
	r := &Request{}
	r.Device.SignKey = bytes.Clone(rd.Bytes(ed25519.PublicKeySize))
	rd.CopyTo(r.Device.AgreeKey[:])
	rd.CopyTo(r.NameCommitment[:])
	r.sig = bytes.Clone(rd.Bytes(SignatureSize))
	if err := rd.Done(); err != nil {
		return nil, err
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	return r, nil
}

func isJSON(data []byte) bool {
	t := bytes.TrimLeft(data, " \t\r\n")
	return len(t) > 0 && t[0] == '{'
}

func decodeJSON(data []byte, v any, what string) error {
	if len(data) > MaxObjectJSON {
		return malformed(what, ErrOversize, "")
	}
	if err := json.Unmarshal(data, v); err != nil {
		return invalid(what, "json: "+err.Error())
	}
	return nil
}

// ---- Certificate ----

// Certificate is a bureau's statement that a device (its keys) belongs to it
// with a role, for a validity period, with a commitment to its officer's
// name (never the name). Times have one-second precision.
//
// Binary, version 1 (what a bureau signs): "FSCT" | 1 | role (1) | sign key
// (32) | agree key (32) | bureau key (32) | bureau name (u8 length + ASCII)
// | not before (i64 Unix seconds) | not after (i64) | name commitment (32) |
// signature (64, Ed25519ctx "fieldsync/certificate/v1" over the bytes
// before it, by the bureau key).
//
// Version 2 (countersigned): "FSCT" | 2 | the whole version 1 certificate |
// countersignature (64, Ed25519ctx "fieldsync/enrollment/v1" by the
// device's own key over that version 1 certificate). It proves that the
// device holding the certified key accepted this enrollment with this
// bureau, these keys, this role and validity: a bureau cannot certify
// another bureau's device without it.
type Certificate struct {
	Device         DevicePublic
	Bureau         BureauPublic
	Role           Role
	NotBefore      time.Time
	NotAfter       time.Time
	NameCommitment [32]byte

	sig        []byte
	signed     []byte // the bytes sig was checked against at construction
	countersig []byte // the device's countersignature (version 2); nil for version 1
}

func (c *Certificate) encode() []byte {
	b := make([]byte, 0, 6+96+1+len(c.Bureau.Name)+16+32+SignatureSize)
	b = append(b, magicCertificate...)
	b = append(b, objectVersion, byte(c.Role))
	b = append(b, c.Device.SignKey...)
	b = append(b, c.Device.AgreeKey[:]...)
	b = append(b, c.Bureau.Key...)
	b = format.AppendStr8(b, c.Bureau.Name)
	b = appendTime(b, c.NotBefore)
	b = appendTime(b, c.NotAfter)
	return append(b, c.NameCommitment[:]...)
}

// Issue signs a certificate for the device of req (whose self-signature it
// checks) with role, valid from notBefore to notAfter inclusive (truncated to
// seconds).
func (b *Bureau) Issue(req *Request, role Role, notBefore, notAfter time.Time) (*Certificate, error) {
	if err := req.check(); err != nil {
		return nil, fmt.Errorf("issue: request: %w", err)
	}
	if !role.valid() {
		return nil, fmt.Errorf("issue: unknown role %d", role)
	}
	c := &Certificate{
		Device: DevicePublic{SignKey: bytes.Clone(req.Device.SignKey), AgreeKey: req.Device.AgreeKey},
		Bureau: b.Public(), Role: role,
		NotBefore: time.Unix(notBefore.Unix(), 0).UTC(), NotAfter: time.Unix(notAfter.Unix(), 0).UTC(),
		NameCommitment: req.NameCommitment,
	}
	if !c.NotBefore.Before(c.NotAfter) {
		return nil, fmt.Errorf("issue: not before must be before not after")
	}
	c.signed = c.encode()
	c.sig = signCtx(b.priv, c.signed, ctxCertificate)
	return c, nil
}

// ID returns the certified device's ID.
func (c *Certificate) ID() DeviceID { return c.Device.ID() }

// MarshalBinary returns the compact signed form that travels in gossip (nil
// for an unsigned certificate): version 2 when countersigned, else version 1.
func (c *Certificate) MarshalBinary() []byte {
	if c.sig == nil {
		return nil
	}
	if c.countersig == nil {
		return c.BureauSigned()
	}
	v1 := c.BureauSigned()
	b := make([]byte, 0, 5+len(v1)+SignatureSize)
	b = append(b, magicCertificate...)
	b = append(b, certVersion2)
	b = append(b, v1...)
	return append(b, c.countersig...)
}

// BureauSigned returns the version 1 form, the bytes the bureau signed with
// its signature (nil for an unsigned certificate). The countersignature of
// a version 2 certificate is over exactly these bytes.
func (c *Certificate) BureauSigned() []byte {
	if c.sig == nil {
		return nil
	}
	return append(c.encode(), c.sig...)
}

// Countersigned reports whether c carries its device's countersignature
// (version 2).
func (c *Certificate) Countersigned() bool { return c != nil && c.countersig != nil }

// Version is the certificate's binary format version: 2 when countersigned,
// else 1.
func (c *Certificate) Version() int {
	if c.Countersigned() {
		return certVersion2
	}
	return objectVersion
}

// Countersign returns a version 2 copy of c, countersigned by id, the
// device it certifies (its Ed25519 and X25519 public keys must be c's).
// Only the device can make it: a bureau cannot enroll a device that did not
// accept it.
func (c *Certificate) Countersign(id *Identity) (*Certificate, error) {
	if c == nil || c.sig == nil {
		return nil, wrapf(ErrSignature, "countersign: certificate is not signed")
	}
	if id == nil {
		return nil, fmt.Errorf("countersign: no device identity")
	}
	pub := id.Public()
	if !bytes.Equal(pub.SignKey, c.Device.SignKey) || pub.AgreeKey != c.Device.AgreeKey {
		return nil, fmt.Errorf("countersign: certificate is for device %s, not %s", c.Device.ID(), pub.ID())
	}
	v1 := c.BureauSigned()
	if !verifyCtx(c.Bureau.Key, v1[:len(v1)-SignatureSize], c.sig, ctxCertificate) {
		return nil, wrapf(ErrSignature, "countersign: the bureau's signature does not match the certificate")
	}
	out := *c
	out.Device = DevicePublic{SignKey: bytes.Clone(c.Device.SignKey), AgreeKey: c.Device.AgreeKey}
	out.Bureau = BureauPublic{Name: c.Bureau.Name, Key: bytes.Clone(c.Bureau.Key)}
	out.sig = bytes.Clone(c.sig)
	out.signed = v1[:len(v1)-SignatureSize]
	out.countersig = signCtx(id.sign, v1, ctxEnrollment)
	return &out, nil
}

type certificateJSON struct {
	Format            string `json:"format"`
	Device            string `json:"device"`
	Bureau            string `json:"bureau"`
	BureauFingerprint string `json:"bureau_fingerprint"`
	Role              string `json:"role"`
	NotBefore         string `json:"not_before"`
	NotAfter          string `json:"not_after"`
	Binary            []byte `json:"binary"`
}

// Certificate JSON formats: version 1 (bureau-signed) and version 2
// (countersigned by the device); the binary is authoritative for both.
const (
	certJSONv1 = "fieldsync-certificate-v1"
	certJSONv2 = "fieldsync-certificate-v2"
)

func (c *Certificate) toJSON() certificateJSON {
	f := certJSONv1
	if c.Countersigned() {
		f = certJSONv2
	}
	return certificateJSON{
		Format: f, Device: c.Device.ID().String(),
		Bureau: c.Bureau.Name, BureauFingerprint: c.Bureau.Fingerprint(), Role: c.Role.String(),
		NotBefore: c.NotBefore.UTC().Format(time.RFC3339), NotAfter: c.NotAfter.UTC().Format(time.RFC3339),
		Binary: c.MarshalBinary(),
	}
}

// Marshal returns the cert.json form: readable fields (format, device,
// bureau, bureau_fingerprint, role, not_before, not_after) and binary, the
// base64 of MarshalBinary. The binary is authoritative; ParseCertificate
// refuses a file whose readable fields disagree with it.
func (c *Certificate) Marshal() []byte {
	b, _ := json.MarshalIndent(c.toJSON(), "", "  ")
	return append(b, '\n')
}

// ParseCertificate decodes a certificate in either form (JSON or binary),
// version 1 or 2, and checks its signature against the bureau key it embeds
// and, for version 2, the device's countersignature against the device key
// it certifies (ErrSignature). Whether that bureau is trusted is Verify's
// question; whether a version 1 certificate is enough is the caller's.
func ParseCertificate(data []byte) (*Certificate, error) {
	if isJSON(data) {
		var j certificateJSON
		if err := decodeJSON(data, &j, "certificate"); err != nil {
			return nil, err
		}
		if j.Format != certJSONv1 && j.Format != certJSONv2 {
			return nil, malformed("certificate", ErrUnknownVersion, "format")
		}
		c, err := ParseCertificate(j.Binary)
		if err != nil {
			return nil, err
		}
		cj := c.toJSON()
		if cj.Format != j.Format || cj.Device != j.Device || cj.Bureau != j.Bureau ||
			cj.BureauFingerprint != j.BureauFingerprint || cj.Role != j.Role ||
			cj.NotBefore != j.NotBefore || cj.NotAfter != j.NotAfter {
			return nil, invalid("certificate", "readable fields differ from the signed binary")
		}
		return c, nil
	}
	if len(data) > 5 && string(data[:4]) == magicCertificate && data[4] == certVersion2 {
		return parseCertificateV2(data)
	}
	r := format.NewReader(data, "certificate")
	r.Magic(magicCertificate, objectVersion)
	c := &Certificate{}
	c.Role = Role(r.U8())
	c.Device.SignKey = bytes.Clone(r.Bytes(32))
	r.CopyTo(c.Device.AgreeKey[:])
	c.Bureau.Key = bytes.Clone(r.Bytes(32))
	c.Bureau.Name = r.Str(false, 16)
	c.NotBefore = readTime(r)
	c.NotAfter = readTime(r)
	r.CopyTo(c.NameCommitment[:])
	c.sig = bytes.Clone(r.Bytes(SignatureSize))
	if err := r.Done(); err != nil {
		return nil, err
	}
	switch {
	case !c.Role.valid():
		return nil, invalid("certificate", "role")
	case !ValidBureauName(c.Bureau.Name):
		return nil, invalid("certificate", "bureau name")
	case !c.NotBefore.Before(c.NotAfter):
		return nil, invalid("certificate", "validity")
	}
	c.signed = data[:len(data)-SignatureSize]
	if !verifyCtx(c.Bureau.Key, c.signed, c.sig, ctxCertificate) {
		return nil, ErrSignature
	}
	c.signed = bytes.Clone(c.signed)
	return c, nil
}

// parseCertificateV2 decodes "FSCT" | 2 | version 1 certificate |
// countersignature and checks both signatures.
func parseCertificateV2(data []byte) (*Certificate, error) {
	if len(data) > MaxObjectJSON {
		return nil, malformed("certificate", ErrOversize, "")
	}
	if len(data) < 5+5+SignatureSize {
		return nil, truncated("certificate")
	}
	v1 := data[5 : len(data)-SignatureSize]
	if len(v1) < 5 || string(v1[:4]) != magicCertificate || v1[4] != objectVersion {
		return nil, invalid("certificate", "a version 2 certificate must hold a version 1 certificate")
	}
	c, err := ParseCertificate(v1)
	if err != nil {
		return nil, err
	}
	cs := data[len(data)-SignatureSize:]
	if !verifyCtx(c.Device.SignKey, v1, cs, ctxEnrollment) {
		return nil, wrapf(ErrSignature, "certificate: the device's countersignature does not match")
	}
	c.countersig = bytes.Clone(cs)
	return c, nil
}

// Verify checks c at time at against trust: ErrSignature if c is unsigned or
// was changed since it was signed, ErrUntrusted if its bureau key (and name)
// is not in trust, ErrNotYetValid before NotBefore, ErrExpired after
// NotAfter (both bounds inclusive).
func (c *Certificate) Verify(trust *TrustSet, at time.Time) error {
	if c == nil || c.sig == nil {
		return wrapf(ErrSignature, "certificate is not signed")
	}
	if cur := c.encode(); !bytes.Equal(cur, c.signed) {
		// Fields changed after signing (or a hand-made value): check afresh.
		if !verifyCtx(c.Bureau.Key, cur, c.sig, ctxCertificate) {
			return ErrSignature
		}
		if c.countersig != nil && !verifyCtx(c.Device.SignKey, append(cur, c.sig...), c.countersig, ctxEnrollment) {
			return ErrSignature
		}
	}
	fp := c.Bureau.Fingerprint()
	tb, ok := trust.Lookup(fp)
	if !ok || tb.Name != c.Bureau.Name || !bytes.Equal(tb.Key, c.Bureau.Key) {
		return wrapf(ErrUntrusted, "bureau %s (%s)", c.Bureau.Name, fp)
	}
	if at.Before(c.NotBefore) {
		return wrapf(ErrNotYetValid, "valid from %s", c.NotBefore.Format(time.RFC3339))
	}
	if at.After(c.NotAfter) {
		return wrapf(ErrExpired, "expired %s", c.NotAfter.Format(time.RFC3339))
	}
	return nil
}

// ---- Revocation ----

// Revocation is a bureau's signed statement that a device is revoked: its
// envelopes with seq <= Cutoff(space) stay valid, later ones are refused.
//
// Binary: "FSRV" | 1 | bureau key (32) | device (16) | issued at (i64 Unix
// seconds) | default cut-off (u64) | count (u32) | count × (space (16) |
// cut-off (u64)), spaces strictly ascending | signature (64, Ed25519ctx
// "fieldsync/revocation/v1" over the bytes before it, by the bureau key).
type Revocation struct {
	Device        DeviceID
	Bureau        string             // fingerprint of the revoking bureau (must equal the device cert's)
	IssuedAt      time.Time          // one-second precision
	Cutoffs       map[SpaceID]uint64 // changes with seq <= cutoff stay valid
	DefaultCutoff uint64             // for spaces not listed (normally 0; '*:0' = everything revoked)

	key ed25519.PublicKey // the signing bureau key
	sig []byte
}

func (r *Revocation) encode(key ed25519.PublicKey) []byte {
	b := make([]byte, 0, 5+32+16+8+8+4+24*len(r.Cutoffs)+SignatureSize)
	b = append(b, magicRevocation...)
	b = append(b, objectVersion)
	b = append(b, key...)
	b = append(b, r.Device[:]...)
	b = appendTime(b, r.IssuedAt)
	b = format.AppendU64(b, r.DefaultCutoff)
	b = format.AppendU32(b, uint32(len(r.Cutoffs)))
	for _, s := range slices.SortedFunc(maps.Keys(r.Cutoffs), func(a, b SpaceID) int { return bytes.Compare(a[:], b[:]) }) {
		b = append(b, s[:]...)
		b = format.AppendU64(b, r.Cutoffs[s])
	}
	return b
}

// Revoke signs a revocation of device by b: envelopes with seq <= the cut-off
// of their space stay valid; defaultCutoff applies to spaces not in cutoffs.
func (b *Bureau) Revoke(device DeviceID, cutoffs map[SpaceID]uint64, defaultCutoff uint64, issuedAt time.Time) (*Revocation, error) {
	if len(cutoffs) > MaxRevocationCutoffs {
		return nil, fmt.Errorf("revoke: more than %d cut-offs", MaxRevocationCutoffs)
	}
	pub := b.Public()
	r := &Revocation{
		Device: device, Bureau: pub.Fingerprint(), IssuedAt: time.Unix(issuedAt.Unix(), 0).UTC(),
		Cutoffs: maps.Clone(cutoffs), DefaultCutoff: defaultCutoff, key: pub.Key,
	}
	if r.Cutoffs == nil {
		r.Cutoffs = map[SpaceID]uint64{}
	}
	r.sig = signCtx(b.priv, r.encode(r.key), ctxRevocation)
	return r, nil
}

// Marshal returns the signed binary form (nil for an unsigned revocation).
func (r *Revocation) Marshal() []byte {
	if r.sig == nil {
		return nil
	}
	return append(r.encode(r.key), r.sig...)
}

// ParseRevocation decodes a revocation and checks its signature against the
// bureau key it embeds (ErrSignature). Whether that bureau is trusted is
// Verify's question.
func ParseRevocation(data []byte) (*Revocation, error) {
	if len(data) > 5+32+16+8+8+4+24*MaxRevocationCutoffs+SignatureSize {
		return nil, malformed("revocation", ErrOversize, "")
	}
	rd := format.NewReader(data, "revocation")
	rd.Magic(magicRevocation, objectVersion)
	r := &Revocation{}
	r.key = bytes.Clone(rd.Bytes(32))
	rd.CopyTo(r.Device[:])
	r.IssuedAt = readTime(rd)
	r.DefaultCutoff = rd.U64()
	n := rd.U32()
	if rd.Err() == nil && (n > MaxRevocationCutoffs || int(n)*24 > rd.Len()) {
		if n > MaxRevocationCutoffs {
			return nil, malformed("revocation", ErrOversize, "cut-off count")
		}
		return nil, truncated("revocation")
	}
	r.Cutoffs = make(map[SpaceID]uint64, n)
	var last []byte
	for i := uint32(0); i < n && rd.Err() == nil; i++ {
		s := rd.Bytes(16)
		c := rd.U64()
		if rd.Err() == nil && last != nil && bytes.Compare(last, s) >= 0 {
			return nil, invalid("revocation", "spaces not strictly ascending")
		}
		last = s
		r.Cutoffs[SpaceID(s)] = c
	}
	r.sig = bytes.Clone(rd.Bytes(SignatureSize))
	if err := rd.Done(); err != nil {
		return nil, err
	}
	if !verifyCtx(r.key, data[:len(data)-SignatureSize], r.sig, ctxRevocation) {
		return nil, ErrSignature
	}
	r.Bureau = BureauPublic{Key: r.key}.Fingerprint()
	return r, nil
}

// Verify checks that r is signed by the trusted bureau it names:
// ErrUntrusted if r.Bureau is not in trust, ErrSignature if the signature
// does not match r's current fields under that bureau's key.
func (r *Revocation) Verify(trust *TrustSet) error {
	if r == nil || r.sig == nil {
		return wrapf(ErrSignature, "revocation is not signed")
	}
	tb, ok := trust.Lookup(r.Bureau)
	if !ok {
		return wrapf(ErrUntrusted, "revocation by bureau %s", r.Bureau)
	}
	if !verifyCtx(tb.Key, r.encode(tb.Key), r.sig, ctxRevocation) {
		return ErrSignature
	}
	return nil
}

// Cutoff returns the highest seq of the device that stays valid in space.
// A nil revocation revokes nothing: its cut-off is the largest uint64.
func (r *Revocation) Cutoff(space SpaceID) uint64 {
	if r == nil {
		return ^uint64(0)
	}
	if c, ok := r.Cutoffs[space]; ok {
		return c
	}
	return r.DefaultCutoff
}

// ---- Judging an author ----

// CheckAuthor judges an envelope's author: cert must be the author's
// (ErrSignature otherwise), valid and trusted at `at` — the envelope's HLC
// wall time — (ErrUntrusted, ErrExpired, ErrNotYetValid), of a role that may
// write in spaces: only officers author envelopes in spaces (ErrRole); and if
// rev (which may be nil) revokes the author, h.Seq must be at or below its
// cut-off for h.Space (ErrRevoked). A revocation that is not for this device
// and bureau, or not trusted, is an error: callers must only pass revocations
// of the author's bureau.
func CheckAuthor(h Header, cert *Certificate, rev *Revocation, trust *TrustSet, at time.Time) error {
	if cert == nil {
		return wrapf(ErrUntrusted, "no certificate for author %s", h.Author)
	}
	if cert.Device.ID() != h.Author {
		return wrapf(ErrSignature, "certificate is not the author's")
	}
	if err := cert.Verify(trust, at); err != nil {
		return err
	}
	if cert.Role != RoleOfficer {
		return wrapf(ErrRole, "a %v writes nothing in spaces", cert.Role)
	}
	if rev != nil {
		if rev.Device != h.Author || rev.Bureau != cert.Bureau.Fingerprint() {
			return fmt.Errorf("check author: revocation is for another device or bureau")
		}
		if err := rev.Verify(trust); err != nil {
			return fmt.Errorf("check author: revocation: %w", err)
		}
		if c := rev.Cutoff(h.Space); h.Seq > c {
			return wrapf(ErrRevoked, "device %s revoked after seq %d in this space", h.Author, c)
		}
	}
	return nil
}

// CheckRouting checks a routing record against its envelope: it must be for
// h.Space, its author (whose certificate is cert, already judged by
// CheckAuthor) must belong to the owning bureau (ErrRole otherwise), and the
// space ID must be the one made for that owner (SpaceIDFor with the record's
// nonce; ErrMalformed otherwise — so a version 1 record, without a nonce,
// never passes).
func CheckRouting(h Header, r Routing, cert *Certificate) error {
	if r.Space != h.Space {
		return invalid("routing record", "for another space")
	}
	if cert == nil || cert.Device.ID() != h.Author {
		return wrapf(ErrSignature, "certificate is not the author's")
	}
	if cert.Bureau.Fingerprint() != r.Owner {
		return wrapf(ErrRole, "routing record signed by a device of another bureau than the owner")
	}
	if SpaceIDFor(r.Owner, r.Nonce) != h.Space {
		return invalid("routing record", "its owner is not the one the space ID was made for")
	}
	return nil
}
