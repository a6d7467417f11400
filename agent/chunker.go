package agent

import (
	"bufio"
	"io"
	"math/bits"
)

// Content-defined chunking of attachments (FastCDC's gear hash with
// normalised chunking; docs/format.md "Attachments"). Cut points depend
// only on the bytes around them, so an edit in the middle of a file changes
// the chunks it touches and leaves the others — and their refs — as they
// were. Sizes: at least cdcMin, about cdcAvg, at most cdcMax bytes (a chunk
// plus its sealing and frame header stays under sync's 1 MiB frame).
const (
	cdcMin = 64 << 10
	cdcAvg = 256 << 10
	cdcMax = 768 << 10
)

// The masks of normalised chunking: more bits before the average size
// (cuts rarer), fewer after (cuts likelier), taken from the hash's high
// bits, which depend on the last 64 bytes.
var (
	cdcMaskSmall = highBits(bits.Len(cdcAvg) - 1 + 2)
	cdcMaskLarge = highBits(bits.Len(cdcAvg) - 1 - 2)
	gear         = gearTable()
)

func highBits(n int) uint64 { return ^uint64(0) << (64 - n) }

// gearTable is 256 fixed pseudo-random words (splitmix64 from a constant
// seed): part of the chunking format, never to change.
func gearTable() (t [256]uint64) {
	x := uint64(0x6669656c6473796e) // "fieldsyn"
	for i := range t {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		t[i] = z ^ (z >> 31)
	}
	return t
}

// cutPoint returns the length of the first chunk of b (b holds at least
// cdcMax bytes, or the rest of the input).
func cutPoint(b []byte) int {
	n := len(b)
	if n <= cdcMin {
		return n
	}
	if n > cdcMax {
		n = cdcMax
	}
	normal := min(n, cdcAvg)
	var h uint64
	i := cdcMin
	for ; i < normal; i++ {
		h = h<<1 + gear[b[i]]
		if h&cdcMaskSmall == 0 {
			return i + 1
		}
	}
	for ; i < n; i++ {
		h = h<<1 + gear[b[i]]
		if h&cdcMaskLarge == 0 {
			return i + 1
		}
	}
	return n
}

// chunkReader calls fn with each chunk of r in order; the slice is reused
// after fn returns.
func chunkReader(r io.Reader, fn func(chunk []byte) error) error {
	br := bufio.NewReaderSize(r, 2*cdcMax)
	for {
		b, err := br.Peek(cdcMax)
		if len(b) == 0 {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
			return err
		}
		n := cutPoint(b)
		if err := fn(b[:n]); err != nil {
			return err
		}
		if _, err := br.Discard(n); err != nil {
			return err
		}
	}
}
