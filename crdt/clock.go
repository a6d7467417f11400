package crdt

import (
	"strconv"
	"time"
)

// Timestamp is a hybrid logical clock reading: Wall is milliseconds since the
// Unix epoch, Logical counts events within one millisecond.
type Timestamp struct {
	Wall    int64
	Logical uint16
}

// MaxWall is the largest wall time a Timestamp can pack (48 bits of ms).
const MaxWall = 1<<48 - 1

// Pack returns an order-preserving uint64: 48 bits of wall milliseconds
// (clamped to [0, MaxWall]), then 16 bits of logical counter.
func (t Timestamp) Pack() uint64 {
	w := t.Wall
	if w < 0 {
		w = 0
	}
	if w > MaxWall {
		w = MaxWall
	}
	return uint64(w)<<16 | uint64(t.Logical)
}

// UnpackTimestamp is the inverse of Pack.
func UnpackTimestamp(u uint64) Timestamp {
	return Timestamp{Wall: int64(u >> 16), Logical: uint16(u)}
}

// Compare returns -1, 0 or +1 ordering by wall time, then logical counter.
func (t Timestamp) Compare(u Timestamp) int {
	switch {
	case t.Wall < u.Wall:
		return -1
	case t.Wall > u.Wall:
		return 1
	case t.Logical < u.Logical:
		return -1
	case t.Logical > u.Logical:
		return 1
	}
	return 0
}

// IsZero reports whether t is the zero timestamp.
func (t Timestamp) IsZero() bool { return t == Timestamp{} }

// Time returns the wall part as a UTC time.Time (for display).
func (t Timestamp) Time() time.Time { return time.UnixMilli(t.Wall).UTC() }

// String returns e.g. "2026-11-27T09:36:59.123Z+3" (wall time, then the
// logical counter).
func (t Timestamp) String() string {
	return t.Time().Format("2006-01-02T15:04:05.000Z") + "+" + strconv.Itoa(int(t.Logical))
}

// DefaultMaxDriftMillis is the drift beyond which a remote timestamp is
// treated as skewed when Clock.MaxDriftMillis is zero: 10 minutes.
const DefaultMaxDriftMillis = 10 * 60 * 1000

// Clock is a hybrid logical clock as a pure value: the caller passes the
// physical time (ms since the epoch) to every call, and persists Last.
// The zero Clock is ready to use.
type Clock struct {
	// Last is the latest timestamp issued or accepted.
	Last Timestamp
	// MaxDriftMillis bounds how far ahead of physical time a remote
	// timestamp may be and still move Last. 0 means DefaultMaxDriftMillis;
	// a negative value disables the check.
	MaxDriftMillis int64
}

// Now returns a timestamp strictly greater than every timestamp issued or
// accepted before: the physical time if it is ahead of Last, else Last with
// the logical counter advanced (carrying into the wall part on overflow).
func (c *Clock) Now(physMillis int64) Timestamp {
	if physMillis > MaxWall {
		physMillis = MaxWall
	}
	if physMillis > c.Last.Wall {
		c.Last = Timestamp{Wall: physMillis}
	} else if c.Last.Logical == 1<<16-1 {
		c.Last = Timestamp{Wall: c.Last.Wall + 1}
	} else {
		c.Last.Logical++
	}
	return c.Last
}

// Observe folds a remote timestamp into the clock. driftMillis is how far
// the remote wall time is ahead of physMillis (negative if behind). A remote
// timestamp more than the maximum drift ahead is still accepted by the
// caller (it is causally valid), but it does not move Last, and skewed is
// true so that the author can be flagged with its drift.
func (c *Clock) Observe(remote Timestamp, physMillis int64) (driftMillis int64, skewed bool) {
	driftMillis = remote.Wall - physMillis
	max := c.MaxDriftMillis
	if max == 0 {
		max = DefaultMaxDriftMillis
	}
	if max > 0 && driftMillis > max {
		return driftMillis, true
	}
	if remote.Compare(c.Last) > 0 {
		c.Last = remote
	}
	return driftMillis, false
}
