// Package format is fieldsync/crypto's binary codec: bounded decoding,
// big-endian encoding helpers, the malformed-input errors and the envelope
// header layout. It parses and serialises only; it holds no keys and does no
// cryptography (like age's internal/format).
package format

import (
	"encoding/binary"
	"errors"
	"unicode/utf8"
)

// The malformed-input errors, re-exported by package crypto.
var (
	ErrMalformed      = errors.New("malformed")
	ErrTruncated      = errors.New("truncated")
	ErrOversize       = errors.New("oversize")
	ErrUnknownVersion = errors.New("unknown version")
	ErrInvalid        = errors.New("invalid field")
)

// MalformedError is ErrMalformed with its reason: errors.Is matches both.
type MalformedError struct {
	What   string // the object, e.g. "envelope header"
	Reason error  // ErrTruncated, ErrOversize, ErrUnknownVersion, ErrInvalid (or another sentinel)
	Detail string // optional
}

func (e *MalformedError) Error() string {
	s := "malformed " + e.What + ": " + e.Reason.Error()
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

// Unwrap returns ErrMalformed and the reason.
func (e *MalformedError) Unwrap() []error { return []error{ErrMalformed, e.Reason} }

// Malformed returns a *MalformedError.
func Malformed(what string, reason error, detail string) error {
	return &MalformedError{What: what, Reason: reason, Detail: detail}
}

// Truncated is Malformed(what, ErrTruncated, "").
func Truncated(what string) error { return Malformed(what, ErrTruncated, "") }

// Invalid is Malformed(what, ErrInvalid, detail).
func Invalid(what, detail string) error { return Malformed(what, ErrInvalid, detail) }

// Reader is a bounded decoder over a byte slice. After the first failure
// every read returns zero values and Err keeps the first error; callers check
// once at the end (Done). It never panics on any input.
type Reader struct {
	b    []byte
	what string
	err  error
}

// NewReader reads b; what names the object in errors.
func NewReader(b []byte, what string) *Reader { return &Reader{b: b, what: what} }

// Err returns the first error.
func (r *Reader) Err() error { return r.err }

// Len returns the number of bytes left.
func (r *Reader) Len() int { return len(r.b) }

// Fail records err unless an error is already recorded.
func (r *Reader) Fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// Bytes returns the next n bytes (aliasing the input), or nil after a failure.
func (r *Reader) Bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.Fail(Truncated(r.what))
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// CopyTo fills dst from the next len(dst) bytes.
func (r *Reader) CopyTo(dst []byte) {
	if v := r.Bytes(len(dst)); v != nil {
		copy(dst, v)
	}
}

// U8 reads one byte.
func (r *Reader) U8() uint8 {
	if v := r.Bytes(1); v != nil {
		return v[0]
	}
	return 0
}

// U16 reads a big-endian uint16.
func (r *Reader) U16() uint16 {
	if v := r.Bytes(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

// U32 reads a big-endian uint32.
func (r *Reader) U32() uint32 {
	if v := r.Bytes(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

// U64 reads a big-endian uint64.
func (r *Reader) U64() uint64 {
	if v := r.Bytes(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// Str reads a length-prefixed (u16 if wide, else u8) UTF-8 string of at most
// max bytes.
func (r *Reader) Str(wide bool, max int) string {
	var n int
	if wide {
		n = int(r.U16())
	} else {
		n = int(r.U8())
	}
	if r.err != nil {
		return ""
	}
	if n > max {
		r.Fail(Malformed(r.what, ErrOversize, "string length"))
		return ""
	}
	v := r.Bytes(n)
	if r.err != nil {
		return ""
	}
	if !utf8.Valid(v) {
		r.Fail(Invalid(r.what, "string is not UTF-8"))
		return ""
	}
	return string(v)
}

// Magic reads magic and a version byte, failing with ErrUnknownVersion
// unless they are magic and version.
func (r *Reader) Magic(magic string, version byte) {
	m := r.Bytes(len(magic))
	if r.err != nil {
		return
	}
	if string(m) != magic {
		r.Fail(Malformed(r.what, ErrUnknownVersion, "magic"))
		return
	}
	if v := r.U8(); r.err == nil && v != version {
		r.Fail(Malformed(r.what, ErrUnknownVersion, "version "+itoa(v)))
	}
}

// Done fails unless every byte was consumed, and returns the first error.
func (r *Reader) Done() error {
	if r.err == nil && len(r.b) != 0 {
		r.Fail(Invalid(r.what, "trailing bytes"))
	}
	return r.err
}

func itoa(v byte) string {
	if v < 10 {
		return string('0' + v)
	}
	if v < 100 {
		return string([]byte{'0' + v/10, '0' + v%10})
	}
	return string([]byte{'0' + v/100, '0' + v/10%10, '0' + v%10})
}

// AppendU16 appends v big-endian.
func AppendU16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }

// AppendU32 appends v big-endian.
func AppendU32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }

// AppendU64 appends v big-endian.
func AppendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

// AppendStr8 appends a u8 length and s (len(s) ≤ 255: the caller checks).
func AppendStr8(b []byte, s string) []byte { return append(append(b, byte(len(s))), s...) }

// AppendStr16 appends a u16 length and s (len(s) ≤ 65535: the caller checks).
func AppendStr16(b []byte, s string) []byte { return append(AppendU16(b, uint16(len(s))), s...) }
