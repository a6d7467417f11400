package crdt

import (
	"bytes"
	"encoding/base32"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ReplicaID identifies a replica: it is the 16-byte device ID. Replica IDs
// are ordered by their bytes.
type ReplicaID [16]byte

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// String returns the lowercase unpadded base32 form (26 characters), the
// same text form as crypto.DeviceID.
func (r ReplicaID) String() string { return strings.ToLower(b32.EncodeToString(r[:])) }

// Compare orders replica IDs by their bytes.
func (r ReplicaID) Compare(s ReplicaID) int { return bytes.Compare(r[:], s[:]) }

// IsZero reports whether r is the all-zero ID (never a valid author).
func (r ReplicaID) IsZero() bool { return r == ReplicaID{} }

// ParseReplicaID parses the 26-character base32 form (either case).
func ParseReplicaID(s string) (ReplicaID, error) {
	var r ReplicaID
	if len(s) != 26 {
		return r, fmt.Errorf("replica id %q: want 26 base32 characters", s)
	}
	b, err := b32.DecodeString(strings.ToUpper(s))
	if err != nil || len(b) != 16 {
		return r, fmt.Errorf("replica id %q: not base32", s)
	}
	copy(r[:], b)
	return r, nil
}

// Dot names one operation: the author and seq of its change, and Op, the
// index of the operation inside that change. Dots are op-level so that an
// overwrite of one field of a change never touches another field written by
// the same change (see docs/crdt.md, "Dots"). Context.Add and Context.Contains
// deal in whole changes and ignore Op.
type Dot struct {
	Replica ReplicaID
	Seq     uint64
	Op      uint32
}

// Compare orders dots by replica bytes, then seq, then op index.
func (d Dot) Compare(e Dot) int {
	if c := bytes.Compare(d.Replica[:], e.Replica[:]); c != 0 {
		return c
	}
	switch {
	case d.Seq < e.Seq:
		return -1
	case d.Seq > e.Seq:
		return 1
	case d.Op < e.Op:
		return -1
	case d.Op > e.Op:
		return 1
	}
	return 0
}

// String returns "REPLICA:SEQ.OP", e.g. "ab...z:12.0".
func (d Dot) String() string {
	return d.Replica.String() + ":" + strconv.FormatUint(d.Seq, 10) + "." + strconv.FormatUint(uint64(d.Op), 10)
}

// ParseDot parses the form written by Dot.String. ".OP" may be omitted (op 0).
func ParseDot(s string) (Dot, error) {
	var d Dot
	rs, rest, ok := strings.Cut(s, ":")
	if !ok {
		return d, errors.New("dot: want REPLICA:SEQ.OP")
	}
	r, err := ParseReplicaID(rs)
	if err != nil {
		return d, err
	}
	ss, os, hasOp := strings.Cut(rest, ".")
	seq, err := strconv.ParseUint(ss, 10, 64)
	if err != nil || seq == 0 {
		return d, fmt.Errorf("dot %q: bad seq", s)
	}
	var op uint64
	if hasOp {
		if op, err = strconv.ParseUint(os, 10, 32); err != nil {
			return d, fmt.Errorf("dot %q: bad op index", s)
		}
	}
	return Dot{Replica: r, Seq: seq, Op: uint32(op)}, nil
}

// NoteID identifies a note: the dot of the NoteAdd operation that wrote it.
type NoteID = Dot

// RecordID names a record inside a space. The agent NFC-normalises it.
type RecordID string
