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
	w := newBatchWriter()
	for _, c := range chs {
		if err := c.Validate(); err != nil {
			return nil, err
		}
		if err := w.collect(c); err != nil {
			return nil, err
		}
	}
	body := w.header(len(chs), level)
	for _, c := range chs {
		body = w.appendChange(body, c)
	}
	for _, c := range chs {
		for i := range c.Ops {
			if opHasValue(c.Ops[i].Kind) {
				body = append(body, c.Ops[i].Value...)
			}
		}
	}
	return finishBatch(body, level), nil
}

// TranscodeChanges encodes as one batch the changes encs, each encoded by
// Change.MarshalBinary: the result is byte for byte EncodeChangesLevel of
// the decoded changes. It decodes each change twice into one scratch
// change instead of holding them all decoded, so a sender streaming its
// stored changes in batches holds a batch's encodings, not ~4 times as
// many bytes of Change values. encs are only read, and only during the
// call.
func TranscodeChanges(encs [][]byte, level int) ([]byte, error) {
	if level < flate.HuffmanOnly || level > flate.BestCompression {
		return nil, fmt.Errorf("crdt: compression level %d", level)
	}
	var c Change
	in := &interner{m: make(map[string]string)}
	var ops [64]Op
	var dots [256]Dot
	decode := func(b []byte) error {
		if len(b) > MaxChangeBytes {
			return malformed(ErrOversize, "change of %d bytes", len(b))
		}
		clear(c.Ops)
		c = Change{}
		in.ops, in.dots = ops[:], dots[:]
		r := &reader{b: b}
		decodeChange(r, &c, in)
		return r.end()
	}
	w := newBatchWriter()
	for _, b := range encs {
		if err := decode(b); err != nil {
			return nil, err
		}
		if err := w.collect(&c); err != nil {
			return nil, err
		}
	}
	body := w.header(len(encs), level)
	// The values column follows every change's metadata: keep where each
	// value is (they alias encs) and copy them after.
	vals := make([][]byte, 0, len(encs))
	for _, b := range encs {
		if err := decode(b); err != nil {
			return nil, err
		}
		body = w.appendChange(body, &c)
		for i := range c.Ops {
			if opHasValue(c.Ops[i].Kind) && len(c.Ops[i].Value) > 0 {
				vals = append(vals, c.Ops[i].Value)
			}
		}
	}
	clear(c.Ops)
	for _, v := range vals {
		body = append(body, v...)
	}
	return finishBatch(body, level), nil
}

// batchWriter writes a change batch in two passes: collect every change
// (the replica and string tables), then the header and each change.
type batchWriter struct {
	reps    []ReplicaID
	sidx    map[string]uint64
	strs    []string
	lastRec RecordID
	values  int
	prev    uint64 // the previous change's packed HLC
}

func newBatchWriter() *batchWriter {
	return &batchWriter{reps: make([]ReplicaID, 0, 4), sidx: make(map[string]uint64)}
}

// collect adds a valid change's replicas and strings to the tables.
func (w *batchWriter) collect(c *Change) error {
	if len(c.Deps) > 0 {
		// Batches are the crdt layer's bulk form (benchmarks, state
		// transfer tests); dependencies live in envelopes only.
		return invalid("a change batch carries no dependencies (change %s:%d has %d)", c.Author, c.Seq, len(c.Deps))
	}
	addStr := func(s string) {
		if _, ok := w.sidx[s]; !ok {
			w.sidx[s] = 0
			w.strs = append(w.strs, s)
		}
	}
	w.reps = append(w.reps, c.Author)
	for i := range c.Ops {
		o := &c.Ops[i]
		if o.Record != w.lastRec || len(w.strs) == 0 {
			addStr(string(o.Record))
			w.lastRec = o.Record
		}
		if opHasField(o.Kind) {
			addStr(o.Field)
		}
		if opHasValue(o.Kind) {
			w.values += len(o.Value)
		}
		for _, d := range o.Seen {
			if d.Replica != w.reps[len(w.reps)-1] {
				w.reps = append(w.reps, d.Replica)
			}
		}
	}
	return nil
}

func (w *batchWriter) ridx(r ReplicaID) uint64 {
	if len(w.reps) <= 8 {
		for i := range w.reps {
			if w.reps[i] == r {
				return uint64(i)
			}
		}
	}
	i, _ := slices.BinarySearchFunc(w.reps, r, ReplicaID.Compare)
	return uint64(i)
}

// header sorts the tables and returns a new body holding the batch header
// (for a plain batch), the count of n changes and the tables.
func (w *batchWriter) header(n, level int) []byte {
	slices.SortFunc(w.reps, ReplicaID.Compare)
	w.reps = slices.Compact(w.reps)
	slices.Sort(w.strs)
	for i, s := range w.strs {
		w.sidx[s] = uint64(i)
	}
	// A plain batch is the header then the body: write the header first so
	// that the body needs no second copy.
	body := make([]byte, 0, 2+16+17*len(w.reps)+12*len(w.strs)+16*n+w.values)
	if level == NoCompression {
		body = append(body, batchVersion, 0)
	}
	body = appendUvarint(body, uint64(n))
	body = appendUvarint(body, uint64(len(w.reps)))
	for i := range w.reps {
		body = append(body, w.reps[i][:]...)
	}
	body = appendUvarint(body, uint64(len(w.strs)))
	for _, s := range w.strs {
		body = appendString(body, s)
	}
	return body
}

// appendChange appends a change's metadata (not its values).
func (w *batchWriter) appendChange(body []byte, c *Change) []byte {
	body = appendUvarint(body, w.ridx(c.Author))
	body = appendUvarint(body, c.Seq)
	h := c.HLC.Pack()
	body = appendUvarint(body, zigzag(int64(h-w.prev)))
	w.prev = h
	body = appendUvarint(body, uint64(len(c.Ops)))
	for i := range c.Ops {
		o := &c.Ops[i]
		body = append(body, byte(o.Kind))
		body = appendUvarint(body, w.sidx[string(o.Record)])
		if opHasField(o.Kind) {
			body = appendUvarint(body, w.sidx[o.Field])
		}
		if opHasValue(o.Kind) {
			body = appendUvarint(body, uint64(len(o.Value)))
		}
		if o.Kind == OpResolve {
			body = appendString(body, o.Reason)
		}
		body = appendUvarint(body, uint64(len(o.Seen)))
		for _, d := range o.Seen {
			body = appendUvarint(body, w.ridx(d.Replica))
			body = appendUvarint(body, d.Seq)
			body = appendUvarint(body, uint64(d.Op))
		}
	}
	return body
}

// finishBatch returns a plain body as it is, or compresses it.
func finishBatch(body []byte, level int) []byte {
	if level == NoCompression {
		return body
	}
	out := bytes.NewBuffer(make([]byte, 0, len(body)/2+16))
	out.Write([]byte{batchVersion, 1})
	out.Write(binary.AppendUvarint(nil, uint64(len(body))))
	pool := &flateWriters[level-flate.HuffmanOnly]
	fw, _ := pool.Get().(*flate.Writer)
	if fw == nil {
		fw, _ = flate.NewWriter(out, level)
	} else {
		fw.Reset(out)
	}
	fw.Write(body)
	fw.Close()
	pool.Put(fw)
	return out.Bytes()
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

// DecodeChangesFunc decodes a batch written by EncodeChanges, as
// DecodeChanges does, and calls fn with each change in order. It checks
// the whole batch first (the same checks as DecodeChanges: on a batch
// DecodeChanges refuses it returns an error without calling fn), then
// decodes each change again into one scratch change: fn must not keep the
// change, its ops or its values beyond the call (Space.Apply copies what
// it keeps). So a receiver applying a batch holds the batch, not the batch
// and ~3 times its size in Change values. fn's error stops the decoding
// and is returned.
func DecodeChangesFunc(b []byte, fn func(*Change) error) error {
	if len(b) < 2 {
		return malformed(ErrTruncated, "batch header")
	}
	if b[0] != batchVersion {
		return malformed(ErrUnknownVersion, "batch version %d", b[0])
	}
	var body []byte
	switch b[1] {
	case 0:
		body = b[2:]
	case 1:
		r := &reader{b: b, off: 2}
		size := r.uvarint()
		if r.err != nil {
			return r.err
		}
		if size > MaxBatchBytes || size > uint64(len(b))*1032 {
			return malformed(ErrOversize, "batch of %d bytes", size)
		}
		var err error
		if body, err = inflateSized(b[r.off:], int(size)); err != nil {
			return err
		}
	default:
		return malformed(nil, "batch flags %d", b[1])
	}
	d, err := newBatchDecoder(body)
	if err != nil {
		return err
	}
	// Pass 1: the structure, the tables' use and the values column's size.
	total := 0
	for k := 0; k < d.n; k++ {
		if err := d.next(nil, &total); err != nil {
			return err
		}
	}
	if d.r.remaining() != total {
		return malformed(nil, "values column is %d bytes, want %d", d.r.remaining(), total)
	}
	for _, u := range d.usedR {
		if !u {
			return malformed(nil, "unused replica")
		}
	}
	for _, u := range d.usedS {
		if !u {
			return malformed(nil, "unused string")
		}
	}
	// Pass 2: every change with its values is valid. Pass 3: hand them out.
	for pass := 2; pass <= 3; pass++ {
		d.rewind(total)
		for k := 0; k < d.n; k++ {
			if err := d.next(&d.c, nil); err != nil {
				return err
			}
			if pass == 2 {
				if err := d.c.Validate(); err != nil {
					return malformed(nil, "%v", err)
				}
			} else if err := fn(&d.c); err != nil {
				return err
			}
		}
	}
	return nil
}

// batchDecoder reads a batch body's changes one at a time into scratch.
type batchDecoder struct {
	r            reader
	n            int // changes
	reps         []ReplicaID
	usedR, usedS []bool
	strs         []string
	start        int    // offset of the first change
	prev         uint64 // the previous change's packed HLC
	col          []byte // the rest of the values column (passes 2 and 3)
	c            Change
	in           interner
	ops          [64]Op
	dots         [256]Dot
}

func newBatchDecoder(body []byte) (*batchDecoder, error) {
	d := &batchDecoder{r: reader{b: body}}
	r := &d.r
	d.n = r.count(4, 1<<28)
	d.reps, d.usedR = readTable(r, nil, nil)
	ns := r.count(2, 1<<28)
	if r.err != nil {
		return nil, r.err
	}
	d.strs = make([]string, ns)
	d.usedS = make([]bool, ns)
	for i := range d.strs {
		d.strs[i] = r.text(MaxNameBytes)
		if r.err != nil {
			return nil, r.err
		}
		if d.strs[i] == "" || i > 0 && d.strs[i-1] >= d.strs[i] {
			return nil, malformed(nil, "string table not sorted")
		}
	}
	d.start = r.off
	return d, nil
}

// rewind goes back to the first change, with the values column (total
// bytes at the end of the body) to hand out.
func (d *batchDecoder) rewind(total int) {
	d.r.off = d.start
	d.prev = 0
	d.col = d.r.b[len(d.r.b)-total:]
}

// next reads the next change. With c nil (pass 1) it only checks it and
// adds its values' size to *total; otherwise it decodes it into c, which
// it resets, with its values from the column.
func (d *batchDecoder) next(c *Change, total *int) error {
	r := &d.r
	var scratch Change
	if c == nil {
		c = &scratch
	} else {
		*c = Change{}
	}
	d.in.ops, d.in.dots = d.ops[:], d.dots[:]
	if i := r.uvarint(); i < uint64(len(d.reps)) {
		c.Author = d.reps[i]
		d.usedR[i] = true
	} else if r.err == nil {
		return malformed(nil, "replica index %d out of range", i)
	}
	c.Seq = r.uvarint()
	d.prev += uint64(unzigzag(r.uvarint()))
	c.HLC = UnpackTimestamp(d.prev)
	if r.err == nil && c.HLC.Pack() != d.prev {
		return malformed(nil, "HLC out of range")
	}
	nops := r.count(3, MaxOpsPerChange)
	if r.err != nil {
		return r.err
	}
	if nops > 0 {
		c.Ops = d.in.opSlice(nops)
		clear(c.Ops) // the scratch ops hold the previous change's
	}
	str := func(i uint64) string {
		if i >= uint64(len(d.strs)) {
			r.fail(malformed(nil, "string index %d out of range", i))
			return ""
		}
		d.usedS[i] = true
		return d.strs[i]
	}
	for i := 0; i < nops && r.err == nil; i++ {
		o := &c.Ops[i]
		o.Kind = OpKind(r.byte1())
		if r.err == nil && (o.Kind < OpPut || o.Kind > OpResolve) {
			return malformed(nil, "op kind %d", o.Kind)
		}
		o.Record = RecordID(str(r.uvarint()))
		if opHasField(o.Kind) {
			o.Field = str(r.uvarint())
		}
		if opHasValue(o.Kind) {
			l := r.uvarint()
			if l > MaxValueBytes || l > uint64(len(r.b)) {
				return malformed(ErrOversize, "value of %d bytes", l)
			}
			if l > 0 {
				if total != nil {
					*total += int(l)
					if *total > len(r.b) {
						return malformed(ErrTruncated, "values column")
					}
				} else {
					o.Value, d.col = d.col[:l:l], d.col[l:]
				}
			}
		}
		if o.Kind == OpResolve {
			o.Reason = r.text(MaxNameBytes)
		}
		nseen := r.count(3, MaxOpsPerChange)
		if nseen > 0 && r.err == nil {
			o.Seen = d.in.dotSlice(nseen)
		}
		for j := 0; j < nseen && r.err == nil; j++ {
			ri := r.uvarint()
			dot := Dot{Seq: r.uvarint()}
			if ri < uint64(len(d.reps)) {
				dot.Replica = d.reps[ri]
				d.usedR[ri] = true
			} else if r.err == nil {
				return malformed(nil, "replica index %d out of range", ri)
			}
			op := r.uvarint()
			if op > 1<<32-1 {
				return malformed(nil, "op index")
			}
			dot.Op = uint32(op)
			o.Seen[j] = dot
		}
	}
	return r.err
}
