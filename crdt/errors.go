package crdt

import (
	"errors"
	"fmt"
)

// Errors. Decoding errors wrap ErrMalformed and, where it applies, one of
// ErrTruncated, ErrOversize or ErrUnknownVersion, so each is both
// errors.Is(err, ErrMalformed) and specific.
var (
	// ErrMalformed: the input is not a valid encoding.
	ErrMalformed = errors.New("crdt: malformed encoding")
	// ErrTruncated: the input ends early.
	ErrTruncated = errors.New("truncated")
	// ErrOversize: a length or count exceeds a limit.
	ErrOversize = errors.New("oversize")
	// ErrUnknownVersion: the format version is not one this code reads.
	ErrUnknownVersion = errors.New("unknown version")
	// ErrInvalidChange: a change breaks a rule of docs/crdt.md (empty
	// author, seq 0, two ops on one field, a seen dot from its own future...).
	ErrInvalidChange = errors.New("crdt: invalid change")
	// ErrNotSibling: Resolve named a dot that is not a live sibling of the
	// field, or NoteRemove named a note the record does not hold.
	ErrNotSibling = errors.New("crdt: not a live sibling")
)

type malformedError struct {
	kind error // ErrTruncated, ErrOversize, ErrUnknownVersion or nil
	msg  string
}

func (e *malformedError) Error() string {
	if e.kind != nil {
		return "crdt: malformed encoding: " + e.kind.Error() + ": " + e.msg
	}
	return "crdt: malformed encoding: " + e.msg
}

func (e *malformedError) Is(target error) bool {
	return target == ErrMalformed || (e.kind != nil && target == e.kind)
}

func malformed(kind error, format string, args ...any) error {
	return &malformedError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidChange, fmt.Sprintf(format, args...))
}
