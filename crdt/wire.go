package crdt

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

// Encoding helpers shared by every codec. Varints are unsigned LEB128
// (encoding/binary's Uvarint) and must be minimal; decoders reject anything
// the encoder would not produce, so decode→encode is the identity.

func appendUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

func appendBytes(b []byte, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) remaining() int { return len(r.b) - r.off }

func (r *reader) byte1() byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.fail(malformed(ErrTruncated, "at byte %d", r.off))
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n == 0 {
		r.fail(malformed(ErrTruncated, "varint at byte %d", r.off))
		return 0
	}
	if n < 0 || n != uvarintLen(v) {
		r.fail(malformed(nil, "bad varint at byte %d", r.off))
		return 0
	}
	r.off += n
	return v
}

// count reads a count of items that each take at least minSize bytes, so a
// count can never promise more items than the input can hold.
func (r *reader) count(minSize int, max uint64) int {
	v := r.uvarint()
	if r.err != nil {
		return 0
	}
	if v > max {
		r.fail(malformed(ErrOversize, "count %d > %d", v, max))
		return 0
	}
	if minSize > 0 && v > uint64(r.remaining()/minSize) {
		r.fail(malformed(ErrTruncated, "count %d at byte %d", v, r.off))
		return 0
	}
	return int(v)
}

func (r *reader) fixed(n int) []byte {
	if r.err != nil {
		return nil
	}
	if r.remaining() < n {
		r.fail(malformed(ErrTruncated, "at byte %d", r.off))
		return nil
	}
	p := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return p
}

// bytes returns a length-prefixed slice aliasing the input.
func (r *reader) bytes(max int) []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(max) {
		r.fail(malformed(ErrOversize, "length %d > %d", n, max))
		return nil
	}
	return r.fixed(int(n))
}

func (r *reader) text(max int) string {
	p := r.bytes(max)
	if r.err != nil {
		return ""
	}
	if !utf8.Valid(p) {
		r.fail(malformed(nil, "invalid UTF-8 at byte %d", r.off))
		return ""
	}
	return string(p)
}

func (r *reader) u64() uint64 {
	p := r.fixed(8)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint64(p)
}

func (r *reader) replica() ReplicaID {
	var id ReplicaID
	copy(id[:], r.fixed(16))
	return id
}

func (r *reader) end() error {
	if r.err == nil && r.off != len(r.b) {
		r.fail(malformed(nil, "%d trailing bytes", len(r.b)-r.off))
	}
	return r.err
}

func appendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

func utf8Valid(p []byte) bool { return utf8.Valid(p) }
