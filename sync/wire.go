package sync

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
)

// ProtocolVersion is the sync stream protocol version (HELLO, node meta).
const ProtocolVersion = 1

// alpn is the TLS application protocol of sync streams.
const alpn = "fieldsync-sync/1"

// alpnWatch is the TLS application protocol of a client's watch stream
// (docs/sync.md "Client mode"): the same round, then the stream stays open
// for more rounds (frameRound) and for the responder's nudges. A client
// offers it before alpn; a responder that does not know it picks alpn and
// the client polls instead.
const alpnWatch = "fieldsync-watch/1"

// alpnChunks and alpnWatchChunks are alpn and alpnWatch with the chunk
// phase after the envelopes (docs/sync.md "Attachment chunks"). A node whose
// Store is a ChunkStore offers them first; a peer that does not know them
// picks the older ones and the round runs without chunks.
const (
	alpnChunks      = "fieldsync-sync/2"
	alpnWatchChunks = "fieldsync-watch/2"
)

// alpnResume and alpnWatchResume are alpnChunks and alpnWatchChunks with
// resumable large envelopes (PARTIAL after the summary, ENVAT; docs/sync.md
// "Resumable envelopes"). A node whose Store is a ChunkStore and a
// PartialStore offers them first.
const (
	alpnResume      = "fieldsync-sync/3"
	alpnWatchResume = "fieldsync-watch/3"
)

// Frame types on a sync stream. Append only.
const (
	frameHello      byte = 1
	frameAuth       byte = 2
	frameMeshDigest byte = 3
	frameMeshObj    byte = 4
	frameMeshEnd    byte = 5
	frameSummary    byte = 6
	frameSummaryEnd byte = 7
	frameEnv        byte = 8
	frameEnvCont    byte = 9
	frameDone       byte = 10
	frameError      byte = 11
	// Watch streams only (alpnWatch; docs/sync.md "Client mode").
	frameRoundEnd  byte = 12 // both: this round's envelopes are all ingested
	frameWatch     byte = 13 // client, after the first round: u16 keepalive seconds
	frameNudge     byte = 14 // responder: I hold something new; start a round
	frameKeepalive byte = 15 // client: still here; responder: answer
	frameRound     byte = 16 // client: start a round now
	frameRoundOK   byte = 17 // responder: the round starts (after this frame)
	// Attachment chunks (alpnChunks, alpnWatchChunks; chunks.go).
	frameChunkSum     byte = 18 // k × (16 space · 32 digest · u32 count)
	frameChunkSumEnd  byte = 19 // u8 flags (1: wants every chunk; 2: wants some now)
	frameChunkHave    byte = 20 // 16 space · k × 32 ref
	frameChunkHaveEnd byte = 21 // empty
	frameChunkWant    byte = 22 // 16 space · k × 32 ref
	frameChunkWantEnd byte = 23 // empty
	frameChunk        byte = 24 // 16 space · 32 ref · sealed chunk
	frameChunkEnd     byte = 25 // empty
	// Resumable envelopes (alpnResume, alpnWatchResume; resume.go).
	framePartial  byte = 26 // summary phase: k × (16 space · 16 author · u64 seq · u32 total · 32 hash · u32 have)
	frameEnvAt    byte = 27 // 16 space · 16 author · u64 seq · u32 total · 32 hash · u32 offset · first bytes
	frameEnvPause byte = 28 // empty: the current ENVAT envelope stops here this round (session budget)
)

// Gossip message types (memberlist user messages). Append only.
const gossipHint byte = 1

// ErrMalformed is returned for a sync frame or gossip message that does not
// decode; the stream ends (gossip is dropped and counted).
var ErrMalformed = errors.New("sync: malformed message")

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

// frameWriter writes frames: type u8, length u32 big-endian, payload.
type frameWriter struct {
	w   *bufio.Writer
	hdr [5]byte
}

func newFrameWriter(w io.Writer) *frameWriter {
	return &frameWriter{w: bufio.NewWriterSize(w, 64<<10)}
}

func (fw *frameWriter) write(typ byte, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n > MaxFrame {
		return fmt.Errorf("frame of %d bytes exceeds %d", n, MaxFrame)
	}
	fw.hdr[0] = typ
	binary.BigEndian.PutUint32(fw.hdr[1:], uint32(n))
	if _, err := fw.w.Write(fw.hdr[:]); err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := fw.w.Write(p); err != nil {
			return err
		}
	}
	return nil
}

func (fw *frameWriter) flush() error { return fw.w.Flush() }

// frameReader reads frames, refusing any longer than MaxFrame.
type frameReader struct {
	r   *bufio.Reader
	buf []byte
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next frame; payload is valid until the next call.
func (fr *frameReader) next() (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(fr.r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxFrame {
		return 0, nil, malformed("frame of %d bytes exceeds %d", n, MaxFrame)
	}
	if cap(fr.buf) < int(n) {
		fr.buf = make([]byte, n)
	}
	p := fr.buf[:n]
	if _, err := io.ReadFull(fr.r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return hdr[0], p, nil
}

// dec is a strict bounded decoder over one payload.
type dec struct {
	b   []byte
	err error
}

func (d *dec) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = malformed("truncated")
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *dec) u8() byte {
	p := d.take(1)
	if p == nil {
		return 0
	}
	return p[0]
}

func (d *dec) u16() uint16 {
	p := d.take(2)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint16(p)
}

func (d *dec) u32() uint32 {
	p := d.take(4)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint32(p)
}

func (d *dec) u64() uint64 {
	p := d.take(8)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint64(p)
}

func (d *dec) id16() (out [16]byte) {
	copy(out[:], d.take(16))
	return out
}

func (d *dec) id32() (out [32]byte) {
	copy(out[:], d.take(32))
	return out
}

// end fails unless the payload was consumed exactly.
func (d *dec) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = malformed("%d trailing bytes", len(d.b))
	}
	return d.err
}

// --- HELLO: version u8, sender id 16, expected peer id 16 (zero if unknown),
// nonce 32, u8 n, n bytes of the sender's advertised memberlist address
// ("ip:port", ≤ maxHelloAddr; may be empty)

const maxHelloAddr = 64

type hello struct {
	Version byte
	ID      PeerID
	Expect  PeerID
	Nonce   [32]byte
	Addr    string
}

func (h hello) encode() []byte {
	addr := h.Addr
	if len(addr) > maxHelloAddr {
		addr = ""
	}
	b := make([]byte, 0, 66+len(addr))
	b = append(b, h.Version)
	b = append(b, h.ID[:]...)
	b = append(b, h.Expect[:]...)
	b = append(b, h.Nonce[:]...)
	b = append(b, byte(len(addr)))
	return append(b, addr...)
}

func decodeHello(p []byte) (hello, error) {
	d := dec{b: p}
	var h hello
	h.Version = d.u8()
	h.ID = d.id16()
	h.Expect = d.id16()
	h.Nonce = d.id32()
	n := d.u8()
	if n > maxHelloAddr {
		return h, malformed("address of %d bytes", n)
	}
	h.Addr = string(d.take(int(n)))
	return h, d.end()
}

// --- AUTH: cert len u32, cert, sig len u16, sig, mesh proof 32

type authMsg struct {
	Cert      []byte
	Sig       []byte
	MeshProof [32]byte
}

func (a authMsg) encode() []byte {
	b := make([]byte, 0, 4+len(a.Cert)+2+len(a.Sig)+32)
	b = binary.BigEndian.AppendUint32(b, uint32(len(a.Cert)))
	b = append(b, a.Cert...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(a.Sig)))
	b = append(b, a.Sig...)
	return append(b, a.MeshProof[:]...)
}

func decodeAuth(p []byte) (authMsg, error) {
	d := dec{b: p}
	var a authMsg
	n := d.u32()
	if n > MaxCertBlob {
		return a, malformed("certificate of %d bytes exceeds %d", n, MaxCertBlob)
	}
	a.Cert = append([]byte(nil), d.take(int(n))...)
	m := d.u16()
	if m > MaxSignature {
		return a, malformed("signature of %d bytes exceeds %d", m, MaxSignature)
	}
	a.Sig = append([]byte(nil), d.take(int(m))...)
	a.MeshProof = d.id32()
	return a, d.end()
}

// --- MESHDIGEST: digest 32, count u32

func encodeMeshDigest(digest [32]byte, count int) []byte {
	b := append([]byte(nil), digest[:]...)
	return binary.BigEndian.AppendUint32(b, uint32(count))
}

func decodeMeshDigest(p []byte) ([32]byte, uint32, error) {
	d := dec{b: p}
	dg := d.id32()
	n := d.u32()
	return dg, n, d.end()
}

// --- SUMMARY: count u32, then entries: space 16, author 16, seq u64.
// A space's vector may span frames; an entry with zero author and seq 0
// lists a space with an empty vector.

type summaryEntry struct {
	Space  SpaceID
	Author PeerID
	Seq    uint64
}

const summaryEntrySize = 16 + 16 + 8

// maxSummaryEntries is how many entries fit in one frame.
const maxSummaryEntries = (MaxFrame - 4) / summaryEntrySize

func encodeSummary(entries []summaryEntry) []byte {
	b := make([]byte, 0, 4+len(entries)*summaryEntrySize)
	b = binary.BigEndian.AppendUint32(b, uint32(len(entries)))
	for _, e := range entries {
		b = append(b, e.Space[:]...)
		b = append(b, e.Author[:]...)
		b = binary.BigEndian.AppendUint64(b, e.Seq)
	}
	return b
}

func decodeSummary(p []byte) ([]summaryEntry, error) {
	d := dec{b: p}
	n := d.u32()
	if d.err == nil && uint64(n)*summaryEntrySize != uint64(len(d.b)) {
		return nil, malformed("summary count %d does not match %d bytes", n, len(d.b))
	}
	out := make([]summaryEntry, n)
	for i := range out {
		out[i].Space = d.id16()
		out[i].Author = d.id16()
		out[i].Seq = d.u64()
	}
	return out, d.end()
}

// summaryEntries flattens per-space vectors into entries, in space then
// author order (deterministic bytes on the wire).
func summaryEntries(vs map[SpaceID]Vector) []summaryEntry {
	spaces := make([]SpaceID, 0, len(vs))
	for s := range vs {
		spaces = append(spaces, s)
	}
	sort.Slice(spaces, func(i, j int) bool { return spaces[i].Compare(spaces[j]) < 0 })
	var out []summaryEntry
	for _, s := range spaces {
		authors := vs[s].Authors()
		if len(authors) == 0 {
			out = append(out, summaryEntry{Space: s})
			continue
		}
		for _, a := range authors {
			out = append(out, summaryEntry{Space: s, Author: a, Seq: vs[s][a]})
		}
	}
	return out
}

// --- ENV: space 16, author 16, seq u64, total length u32, first chunk.
// ENVCONT: next chunk. Chunks of one envelope are consecutive frames.

const envHeaderSize = 16 + 16 + 8 + 4

type envHead struct {
	Space  SpaceID
	Author PeerID
	Seq    uint64
	Total  uint32
}

func (h envHead) encode() []byte {
	b := make([]byte, 0, envHeaderSize)
	b = append(b, h.Space[:]...)
	b = append(b, h.Author[:]...)
	b = binary.BigEndian.AppendUint64(b, h.Seq)
	return binary.BigEndian.AppendUint32(b, h.Total)
}

func decodeEnvHead(p []byte) (envHead, []byte, error) {
	d := dec{b: p}
	var h envHead
	h.Space = d.id16()
	h.Author = d.id16()
	h.Seq = d.u64()
	h.Total = d.u32()
	if d.err != nil {
		return h, nil, d.err
	}
	if h.Total > MaxEnvelope {
		return h, nil, malformed("envelope of %d bytes exceeds %d", h.Total, MaxEnvelope)
	}
	if h.Seq == 0 {
		return h, nil, malformed("envelope seq 0")
	}
	if uint32(len(d.b)) > h.Total {
		return h, nil, malformed("chunk longer than envelope")
	}
	return h, d.b, nil
}

// --- ERROR: code u16, message (≤ 256 bytes, informational)

// Error codes sent in ERROR frames. Append only.
const (
	codeInternal  uint16 = 1
	codeAuth      uint16 = 2
	codeMalformed uint16 = 3
	codeBusy      uint16 = 4
	codeVersion   uint16 = 5
	codeMerged    uint16 = 6 // the sender's round was merged into ours (one session per pair)
)

func encodeError(code uint16, msg string) []byte {
	if len(msg) > 256 {
		msg = msg[:256]
	}
	b := binary.BigEndian.AppendUint16(nil, code)
	return append(b, msg...)
}

// PeerError is a remote ERROR frame.
type PeerError struct {
	Code    uint16
	Message string
}

func (e *PeerError) Error() string { return fmt.Sprintf("peer error %d: %s", e.Code, e.Message) }

func decodeError(p []byte) error {
	d := dec{b: p}
	code := d.u16()
	if d.err != nil {
		return d.err
	}
	msg := d.b
	if len(msg) > 256 {
		msg = msg[:256]
	}
	return &PeerError{Code: code, Message: string(msg)}
}

// --- gossip hint (docs/sync.md "Gossip: hints"):
//   version 1: type u8 (1), version u8 (1), origin id 16, counter u64 = 26 bytes
//   version 2: the same, then holder id 16 = 42 bytes
// The holder is a device that already holds the origin's change (the origin
// itself, or a node that pulled it): receivers pull from it, so one write
// fans out instead of every node pulling from the writer. Version 1 (older
// builds) decodes with holder = origin.

const (
	hintSizeV1 = 1 + 1 + 16 + 8
	hintSize   = hintSizeV1 + 16
)

type hint struct {
	Origin  PeerID
	Counter uint64
	Holder  PeerID
}

func (h hint) encode() []byte {
	b := make([]byte, 0, hintSize)
	b = append(b, gossipHint, 2)
	b = append(b, h.Origin[:]...)
	b = binary.BigEndian.AppendUint64(b, h.Counter)
	return append(b, h.Holder[:]...)
}

func decodeHint(p []byte) (hint, error) {
	if len(p) > MaxHint {
		return hint{}, malformed("gossip of %d bytes", len(p))
	}
	d := dec{b: p}
	var h hint
	if t := d.u8(); d.err == nil && t != gossipHint {
		return h, malformed("unknown gossip type %d", t)
	}
	v := d.u8()
	if d.err == nil && v != 1 && v != 2 {
		return h, malformed("unknown hint version %d", v)
	}
	h.Origin = d.id16()
	h.Counter = d.u64()
	h.Holder = h.Origin
	if v == 2 {
		h.Holder = d.id16()
	}
	return h, d.end()
}

// node meta: version u8 (1), role u8, protocol version u8.

func encodeMeta(role Role) []byte { return []byte{1, byte(role), ProtocolVersion} }

func decodeMeta(p []byte) (Role, byte, error) {
	if len(p) != 3 || p[0] != 1 {
		return 0, 0, malformed("node meta")
	}
	return Role(p[1]), p[2], nil
}
