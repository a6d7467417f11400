package crdt

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
)

// A change batch (docs/format.md, "Change batch") is columnar: one table of
// replicas, one of strings (record IDs and field names), the changes'
// metadata with indexes into those tables and delta-coded HLCs, then all
// values in one column. Shared strings are written once, and DEFLATE sees
// the values side by side.

// MaxBatchBytes bounds the decoded size of a change batch.
const MaxBatchBytes = 1 << 30

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// EncodeChanges encodes a batch of changes, compressed with DEFLATE
// (BestSpeed) if compress is set. Deterministic; every change must be valid.
func EncodeChanges(chs []*Change, compress bool) ([]byte, error) {
	level := NoCompression
	if compress {
		level = flate.BestSpeed
	}
	return EncodeChangesLevel(chs, level)
}

// NoCompression for EncodeChangesLevel: the batch is stored plain.
const NoCompression = flate.NoCompression

// EncodeChangesLevel is EncodeChanges with a compress/flate level
// (NoCompression, flate.HuffmanOnly, flate.BestSpeed ... flate.BestCompression).
// Every level decodes the same way.
func EncodeChangesLevel(chs []*Change, level int) ([]byte, error) {
	if level < flate.HuffmanOnly || level > flate.BestCompression {
		return nil, fmt.Errorf("crdt: compression level %d", level)
	}
	reps := make([]ReplicaID, 0, 4)
	sidx := make(map[string]uint64)
	var strs []string
	addStr := func(s string) {
		if _, ok := sidx[s]; !ok {
			sidx[s] = 0
			strs = append(strs, s)
		}
	}
	var lastRec RecordID
	values := 0
	for _, c := range chs {
		if err := c.Validate(); err != nil {
			return nil, err
		}
		if len(c.Deps) > 0 {
			// Batches are the crdt layer's bulk form (benchmarks, state
			// transfer tests); dependencies live in envelopes only.
			return nil, invalid("a change batch carries no dependencies (change %s:%d has %d)", c.Author, c.Seq, len(c.Deps))
		}
		reps = append(reps, c.Author)
		for i := range c.Ops {
			o := &c.Ops[i]
			if o.Record != lastRec || len(strs) == 0 {
				addStr(string(o.Record))
				lastRec = o.Record
			}
			if opHasField(o.Kind) {
				addStr(o.Field)
			}
			if opHasValue(o.Kind) {
				values += len(o.Value)
			}
			for _, d := range o.Seen {
				if d.Replica != reps[len(reps)-1] {
					reps = append(reps, d.Replica)
				}
			}
		}
	}
	slices.SortFunc(reps, ReplicaID.Compare)
	reps = slices.Compact(reps)
	slices.Sort(strs)
	for i, s := range strs {
		sidx[s] = uint64(i)
	}
	ridx := func(r ReplicaID) uint64 {
		if len(reps) <= 8 {
			for i := range reps {
				if reps[i] == r {
					return uint64(i)
				}
			}
		}
		i, _ := slices.BinarySearchFunc(reps, r, ReplicaID.Compare)
		return uint64(i)
	}
	// A plain batch is the header then the body: write the header first so
	// that the body needs no second copy.
	body := make([]byte, 0, 2+16+17*len(reps)+12*len(strs)+16*len(chs)+values)
	if level == NoCompression {
		body = append(body, batchVersion, 0)
	}
	body = appendUvarint(body, uint64(len(chs)))
	body = appendUvarint(body, uint64(len(reps)))
	for i := range reps {
		body = append(body, reps[i][:]...)
	}
	body = appendUvarint(body, uint64(len(strs)))
	for _, s := range strs {
		body = appendString(body, s)
	}
	var prev uint64
	for _, c := range chs {
		body = appendUvarint(body, ridx(c.Author))
		body = appendUvarint(body, c.Seq)
		h := c.HLC.Pack()
		body = appendUvarint(body, zigzag(int64(h-prev)))
		prev = h
		body = appendUvarint(body, uint64(len(c.Ops)))
		for i := range c.Ops {
			o := &c.Ops[i]
			body = append(body, byte(o.Kind))
			body = appendUvarint(body, sidx[string(o.Record)])
			if opHasField(o.Kind) {
				body = appendUvarint(body, sidx[o.Field])
			}
			if opHasValue(o.Kind) {
				body = appendUvarint(body, uint64(len(o.Value)))
			}
			if o.Kind == OpResolve {
				body = appendString(body, o.Reason)
			}
			body = appendUvarint(body, uint64(len(o.Seen)))
			for _, d := range o.Seen {
				body = appendUvarint(body, ridx(d.Replica))
				body = appendUvarint(body, d.Seq)
				body = appendUvarint(body, uint64(d.Op))
			}
		}
	}
	for _, c := range chs {
		for i := range c.Ops {
			if opHasValue(c.Ops[i].Kind) {
				body = append(body, c.Ops[i].Value...)
			}
		}
	}
	if level == NoCompression {
		return body, nil
	}
	out := bytes.NewBuffer(make([]byte, 0, len(body)/2+16))
	out.Write([]byte{batchVersion, 1})
	out.Write(binary.AppendUvarint(nil, uint64(len(body))))
	pool := &flateWriters[level-flate.HuffmanOnly]
	w, _ := pool.Get().(*flate.Writer)
	if w == nil {
		w, _ = flate.NewWriter(out, level)
	} else {
		w.Reset(out)
	}
	w.Write(body)
	w.Close()
	pool.Put(w)
	return out.Bytes(), nil
}

var flateWriters [flate.BestCompression - flate.HuffmanOnly + 1]sync.Pool

// DecodeChanges decodes a batch written by EncodeChanges: bounded, strict
// (only what EncodeChanges writes, only valid changes), never panics.
// Values alias the decoded buffer.
func DecodeChanges(b []byte) ([]*Change, error) {
	if len(b) < 2 {
		return nil, malformed(ErrTruncated, "batch header")
	}
	if b[0] != batchVersion {
		return nil, malformed(ErrUnknownVersion, "batch version %d", b[0])
	}
	var body []byte
	switch b[1] {
	case 0:
		body = bytes.Clone(b[2:])
	case 1:
		r := &reader{b: b, off: 2}
		size := r.uvarint()
		if r.err != nil {
			return nil, r.err
		}
		// DEFLATE expands at most 1032:1; a larger claim is a lie.
		if size > MaxBatchBytes || size > uint64(len(b))*1032 {
			return nil, malformed(ErrOversize, "batch of %d bytes", size)
		}
		var err error
		if body, err = inflateSized(b[r.off:], int(size)); err != nil {
			return nil, err
		}
	default:
		return nil, malformed(nil, "batch flags %d", b[1])
	}
	return decodeBatchBody(body)
}

func decodeBatchBody(body []byte) ([]*Change, error) {
	r := &reader{b: body}
	n := r.count(4, 1<<28)
	reps, usedR := readTable(r, nil, nil)
	ns := r.count(2, 1<<28)
	if r.err != nil {
		return nil, r.err
	}
	strs := make([]string, ns)
	usedS := make([]bool, ns)
	for i := range strs {
		strs[i] = r.text(MaxNameBytes)
		if r.err != nil {
			return nil, r.err
		}
		if strs[i] == "" || i > 0 && strs[i-1] >= strs[i] {
			return nil, malformed(nil, "string table not sorted")
		}
	}
	str := func(i uint64) string {
		if i >= uint64(len(strs)) {
			r.fail(malformed(nil, "string index %d out of range", i))
			return ""
		}
		usedS[i] = true
		return strs[i]
	}
	rep := func(i uint64) ReplicaID {
		if i >= uint64(len(reps)) {
			r.fail(malformed(nil, "replica index %d out of range", i))
			return ReplicaID{}
		}
		usedR[i] = true
		return reps[i]
	}
	out := make([]*Change, n)
	slab := make([]Change, n)
	in := &interner{}
	type pending struct {
		op *Op
		n  int
	}
	var vals []pending
	total := 0
	var prev uint64
	for k := range out {
		c := &slab[k]
		out[k] = c
		c.Author = rep(r.uvarint())
		c.Seq = r.uvarint()
		prev += uint64(unzigzag(r.uvarint()))
		c.HLC = UnpackTimestamp(prev)
		if r.err == nil && c.HLC.Pack() != prev {
			return nil, malformed(nil, "HLC out of range")
		}
		nops := r.count(3, MaxOpsPerChange)
		if r.err != nil {
			return nil, r.err
		}
		if nops > 0 {
			c.Ops = in.opSlice(nops)
		}
		for i := 0; i < nops && r.err == nil; i++ {
			o := &c.Ops[i]
			o.Kind = OpKind(r.byte1())
			if r.err == nil && (o.Kind < OpPut || o.Kind > OpResolve) {
				return nil, malformed(nil, "op kind %d", o.Kind)
			}
			o.Record = RecordID(str(r.uvarint()))
			if opHasField(o.Kind) {
				o.Field = str(r.uvarint())
			}
			if opHasValue(o.Kind) {
				l := r.uvarint()
				if l > MaxValueBytes || l > uint64(len(body)) {
					return nil, malformed(ErrOversize, "value of %d bytes", l)
				}
				if l > 0 {
					vals = append(vals, pending{o, int(l)})
					total += int(l)
					if total > len(body) {
						return nil, malformed(ErrTruncated, "values column")
					}
				}
			}
			if o.Kind == OpResolve {
				o.Reason = r.text(MaxNameBytes)
			}
			nseen := r.count(3, MaxOpsPerChange)
			if nseen > 0 && r.err == nil {
				o.Seen = in.dotSlice(nseen)
			}
			for j := 0; j < nseen && r.err == nil; j++ {
				d := Dot{Replica: rep(r.uvarint()), Seq: r.uvarint()}
				op := r.uvarint()
				if op > 1<<32-1 {
					return nil, malformed(nil, "op index")
				}
				d.Op = uint32(op)
				o.Seen[j] = d
			}
		}
		if r.err != nil {
			return nil, r.err
		}
	}
	if r.remaining() != total {
		return nil, malformed(nil, "values column is %d bytes, want %d", r.remaining(), total)
	}
	col := r.b[r.off:]
	for _, v := range vals {
		v.op.Value, col = col[:v.n:v.n], col[v.n:]
	}
	for _, u := range usedR {
		if !u {
			return nil, malformed(nil, "unused replica")
		}
	}
	for _, u := range usedS {
		if !u {
			return nil, malformed(nil, "unused string")
		}
	}
	for _, c := range out {
		if err := c.Validate(); err != nil {
			return nil, malformed(nil, "%v", err)
		}
	}
	return out, nil
}
