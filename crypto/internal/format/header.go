package format

import "encoding/binary"

// Envelope header layout (docs/crypto.md §2).
const (
	HeaderVersion  = 1
	HeaderVersion2 = 2 // segmented change envelope (docs/crypto.md §2, "Envelope version 2")
	HeaderSize     = 104
	SignedHeader   = offBodyLen // a v2 signature covers the header without its body length

	offVersion     = 0
	offKind        = 1
	offBodyVersion = 2
	offReserved    = 3
	offSpace       = 4
	offAuthor      = 20
	offSeq         = 36
	offEpoch       = 44
	offHLC         = 60
	offPrev        = 68
	offBodyLen     = 100
)

// Header is the envelope header's raw fields.
type Header struct {
	Version, Kind, BodyVersion uint8
	Space, Author              [16]byte
	Seq                        uint64
	Epoch                      [16]byte
	HLC                        uint64
	Prev                       [32]byte
	BodyLen                    uint32
}

// AppendHeader appends h's 104 bytes (reserved byte zero).
func AppendHeader(b []byte, h *Header) []byte {
	b = append(b, h.Version, h.Kind, h.BodyVersion, 0)
	b = append(b, h.Space[:]...)
	b = append(b, h.Author[:]...)
	b = AppendU64(b, h.Seq)
	b = append(b, h.Epoch[:]...)
	b = AppendU64(b, h.HLC)
	b = append(b, h.Prev[:]...)
	return AppendU32(b, h.BodyLen)
}

// DecodeHeader decodes the first 104 bytes of b, checking only the version
// (1 or 2) and the reserved byte (the envelope's rules are package crypto's).
func DecodeHeader(b []byte, h *Header) error {
	if len(b) < 1 {
		return Truncated("envelope header")
	}
	if b[offVersion] != HeaderVersion && b[offVersion] != HeaderVersion2 {
		return Malformed("envelope header", ErrUnknownVersion, "version "+itoa(b[offVersion]))
	}
	if len(b) < HeaderSize {
		return Truncated("envelope header")
	}
	if b[offReserved] != 0 {
		return Invalid("envelope header", "reserved byte")
	}
	h.Version = b[offVersion]
	h.Kind = b[offKind]
	h.BodyVersion = b[offBodyVersion]
	copy(h.Space[:], b[offSpace:])
	copy(h.Author[:], b[offAuthor:])
	h.Seq = binary.BigEndian.Uint64(b[offSeq:])
	copy(h.Epoch[:], b[offEpoch:])
	h.HLC = binary.BigEndian.Uint64(b[offHLC:])
	copy(h.Prev[:], b[offPrev:])
	h.BodyLen = binary.BigEndian.Uint32(b[offBodyLen:])
	return nil
}
