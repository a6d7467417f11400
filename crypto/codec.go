package crypto

import (
	"encoding/binary"
	"unicode/utf8"
)

// reader is a bounded decoder over a byte slice. After the first failure
// every read returns zero values and err keeps the first error; callers check
// err once at the end. It never panics on any input.
type reader struct {
	b    []byte
	what string
	err  error
}

func newReader(b []byte, what string) *reader { return &reader{b: b, what: what} }

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.fail(truncated(r.what))
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) copyTo(dst []byte) {
	if v := r.bytes(len(dst)); v != nil {
		copy(dst, v)
	}
}

func (r *reader) u8() uint8 {
	v := r.bytes(1)
	if v == nil {
		return 0
	}
	return v[0]
}

func (r *reader) u16() uint16 {
	v := r.bytes(2)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint16(v)
}

func (r *reader) u32() uint32 {
	v := r.bytes(4)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint32(v)
}

func (r *reader) u64() uint64 {
	v := r.bytes(8)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// str reads a length-prefixed (u8 or u16) UTF-8 string of at most max bytes.
func (r *reader) str(wide bool, max int) string {
	var n int
	if wide {
		n = int(r.u16())
	} else {
		n = int(r.u8())
	}
	if r.err != nil {
		return ""
	}
	if n > max {
		r.fail(malformed(r.what, ErrOversize, "string length"))
		return ""
	}
	v := r.bytes(n)
	if r.err != nil {
		return ""
	}
	if !utf8.Valid(v) {
		r.fail(invalid(r.what, "string is not UTF-8"))
		return ""
	}
	return string(v)
}

// done fails unless every byte was consumed.
func (r *reader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail(invalid(r.what, "trailing bytes"))
	}
	return r.err
}

func appendU16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func appendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

func appendStr8(b []byte, s string) []byte {
	b = append(b, byte(len(s)))
	return append(b, s...)
}

func appendStr16(b []byte, s string) []byte {
	b = appendU16(b, uint16(len(s)))
	return append(b, s...)
}
