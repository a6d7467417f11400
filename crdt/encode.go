package crdt

import (
	"bytes"
	"compress/flate"
	"io"
	"slices"
	"unique"
)

// Format versions (docs/format.md).
const (
	// changeVersion 2 adds the causal dependencies (Change.Deps); version 1
	// (without them) still decodes.
	changeVersion  = 2
	recordVersion  = 1
	contextVersion = 1
	spaceVersion   = 1
	batchVersion   = 1
)

// replicaTable maps the replicas of an encoding to small indexes.
type replicaTable struct {
	ids []ReplicaID // sorted
}

func (t *replicaTable) add(r ReplicaID) {
	if n := len(t.ids); n > 0 && t.ids[n-1] == r {
		return
	}
	t.ids = append(t.ids, r)
}

func (t *replicaTable) finish() {
	if len(t.ids) > 1 {
		slices.SortFunc(t.ids, ReplicaID.Compare)
		t.ids = slices.Compact(t.ids)
	}
}

func (t *replicaTable) index(r ReplicaID) uint64 {
	if len(t.ids) <= 8 {
		for i := range t.ids {
			if t.ids[i] == r {
				return uint64(i)
			}
		}
	}
	i, _ := slices.BinarySearchFunc(t.ids, r, ReplicaID.Compare)
	return uint64(i)
}

func appendTable(b []byte, t *replicaTable) []byte {
	b = appendUvarint(b, uint64(len(t.ids)))
	for i := range t.ids {
		b = append(b, t.ids[i][:]...)
	}
	return b
}

// readTable reads a sorted, unique replica table into ids (reusing its
// capacity). used tracks which entries are referenced, so the decoder can
// reject unused ones (canonical form).
func readTable(r *reader, ids []ReplicaID, used []bool) ([]ReplicaID, []bool) {
	n := r.count(16, 1<<24)
	if r.err != nil {
		return nil, nil
	}
	if n > cap(ids) {
		ids = make([]ReplicaID, n)
		used = make([]bool, n)
	}
	ids, used = ids[:n], used[:n]
	for i := range ids {
		ids[i] = r.replica()
		used[i] = false
		if i > 0 && ids[i-1].Compare(ids[i]) >= 0 {
			r.fail(malformed(nil, "replica table not sorted"))
			return nil, nil
		}
	}
	return ids, used
}

func checkUsed(r *reader, used []bool) {
	for _, u := range used {
		if !u {
			r.fail(malformed(nil, "unused replica in table"))
			return
		}
	}
}

func appendDot(b []byte, t *replicaTable, d Dot) []byte {
	b = appendUvarint(b, t.index(d.Replica))
	b = appendUvarint(b, d.Seq)
	return appendUvarint(b, uint64(d.Op))
}

func readDot(r *reader, ids []ReplicaID, used []bool) Dot {
	i := r.uvarint()
	seq := r.uvarint()
	op := r.uvarint()
	if r.err != nil {
		return Dot{}
	}
	if i >= uint64(len(ids)) {
		r.fail(malformed(nil, "replica index %d out of range", i))
		return Dot{}
	}
	if seq == 0 || op > 1<<32-1 {
		r.fail(malformed(nil, "bad dot"))
		return Dot{}
	}
	used[i] = true
	return Dot{Replica: ids[i], Seq: seq, Op: uint32(op)}
}

// ---- Change ----

func opHasField(k OpKind) bool {
	return k == OpPut || k == OpResolve || k == OpSetAdd || k == OpSetRemove
}

func opHasValue(k OpKind) bool { return opHasField(k) || k == OpNoteAdd }

// MarshalBinary encodes the change (docs/format.md, "Change"). The encoding
// is deterministic: equal changes give equal bytes. An invalid change is an
// error.
func (c *Change) MarshalBinary() ([]byte, error) {
	return c.AppendBinary(nil)
}

// AppendBinary appends the encoding of MarshalBinary to b.
func (c *Change) AppendBinary(b []byte) ([]byte, error) {
	if c.OpIndex != nil {
		return nil, invalid("a change with op indexes (part of a change) has no encoding")
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c.appendBinary(b)
}

func (c *Change) appendBinary(b []byte) ([]byte, error) {
	// The replica table lists the replicas of seen dots other than the
	// author; the author is index 0, the table's entries 1...
	var small [4]ReplicaID
	t := replicaTable{ids: small[:0]}
	for i := range c.Ops {
		for _, d := range c.Ops[i].Seen {
			if d.Replica != c.Author {
				t.add(d.Replica)
			}
		}
	}
	t.finish()
	start := len(b)
	b = append(b, changeVersion)
	b = append(b, c.Author[:]...)
	b = appendUvarint(b, c.Seq)
	b = appendU64(b, c.HLC.Pack())
	b = appendTable(b, &t)
	b = appendUvarint(b, uint64(len(c.Deps)))
	for _, d := range c.Deps {
		b = appendUvarint(b, t.index(d.Replica))
		b = appendUvarint(b, d.Seq)
		b = append(b, d.Hash[:]...)
	}
	b = appendUvarint(b, uint64(len(c.Ops)))
	for i := range c.Ops {
		o := &c.Ops[i]
		b = append(b, byte(o.Kind))
		b = appendString(b, string(o.Record))
		if opHasField(o.Kind) {
			b = appendString(b, o.Field)
		}
		if opHasValue(o.Kind) {
			b = appendBytes(b, o.Value)
		}
		if o.Kind == OpResolve {
			b = appendString(b, o.Reason)
		}
		b = appendUvarint(b, uint64(len(o.Seen)))
		for _, d := range o.Seen {
			idx := uint64(0)
			if d.Replica != c.Author {
				idx = t.index(d.Replica) + 1
			}
			b = appendUvarint(b, idx)
			b = appendUvarint(b, d.Seq)
			b = appendUvarint(b, uint64(d.Op))
		}
	}
	if len(b)-start > MaxChangeBytes {
		return nil, invalid("encoded change is %d bytes > %d", len(b)-start, MaxChangeBytes)
	}
	return b, nil
}

// UnmarshalChange decodes a change. It is bounded (no input makes it panic
// or allocate more than a small multiple of len(b)) and strict: it accepts
// only what MarshalBinary produces, and only valid changes. The returned
// change's values alias a private copy of b.
func UnmarshalChange(b []byte) (*Change, error) {
	if len(b) > MaxChangeBytes {
		return nil, malformed(ErrOversize, "change of %d bytes", len(b))
	}
	r := &reader{b: bytes.Clone(b)}
	c := &Change{}
	decodeChange(r, c, nil)
	if err := r.end(); err != nil {
		return nil, err
	}
	return c, nil
}

// interner shares the strings of a batch (record IDs, field names) and
// hands out op and dot slices from slabs, to save allocations.
type interner struct {
	m    map[string]string
	ops  []Op
	dots []Dot
}

func (in *interner) opSlice(n int) []Op {
	if in == nil || n > 64 {
		return make([]Op, n)
	}
	if len(in.ops) < n {
		in.ops = make([]Op, 256)
	}
	s := in.ops[:n:n]
	in.ops = in.ops[n:]
	return s
}

func (in *interner) dotSlice(n int) []Dot {
	if in == nil || n > 64 {
		return make([]Dot, n)
	}
	if len(in.dots) < n {
		in.dots = make([]Dot, 256)
	}
	s := in.dots[:n:n]
	in.dots = in.dots[n:]
	return s
}

func (in *interner) text(r *reader, max int) string {
	if in == nil {
		return r.text(max)
	}
	p := r.bytes(max)
	if r.err != nil {
		return ""
	}
	if s, ok := in.m[string(p)]; ok {
		return s
	}
	s := r.textOf(p)
	if r.err == nil && len(in.m) < 1<<16 {
		in.m[s] = s
	}
	return s
}

func decodeChange(r *reader, c *Change, in *interner) {
	v := r.byte1()
	if r.err == nil && v != changeVersion && v != 1 {
		r.fail(malformed(ErrUnknownVersion, "change version %d", v))
		return
	}
	c.Author = r.replica()
	c.Seq = r.uvarint()
	c.HLC = UnpackTimestamp(r.u64())
	var smallIDs [4]ReplicaID
	var smallUsed [4]bool
	ids, used := readTable(r, smallIDs[:0], smallUsed[:0])
	if r.err != nil {
		return
	}
	if v >= 2 {
		nd := r.count(34, uint64(len(ids)))
		if r.err != nil {
			return
		}
		if nd > 0 {
			c.Deps = make([]Dep, nd)
		}
		last := -1
		for i := 0; i < nd && r.err == nil; i++ {
			idx := r.uvarint()
			seq := r.uvarint()
			h := r.fixed(32)
			if r.err != nil {
				return
			}
			if idx >= uint64(len(ids)) || int(idx) <= last || seq == 0 {
				r.fail(malformed(nil, "bad dependency %d", i))
				return
			}
			last = int(idx)
			c.Deps[i] = Dep{Replica: ids[idx], Seq: seq}
			copy(c.Deps[i].Hash[:], h)
		}
	}
	nops := r.count(3, MaxOpsPerChange)
	if r.err != nil {
		return
	}
	if nops > 0 {
		c.Ops = in.opSlice(nops)
	}
	for i := 0; i < nops && r.err == nil; i++ {
		o := &c.Ops[i]
		o.Kind = OpKind(r.byte1())
		if r.err == nil && (o.Kind < OpPut || o.Kind > OpResolve) {
			r.fail(malformed(nil, "op %d: unknown kind %d", i, o.Kind))
			return
		}
		o.Record = RecordID(in.text(r, MaxNameBytes))
		if opHasField(o.Kind) {
			o.Field = in.text(r, MaxNameBytes)
		}
		if opHasValue(o.Kind) {
			o.Value = r.bytes(MaxValueBytes)
			if len(o.Value) == 0 {
				o.Value = nil
			}
		}
		if o.Kind == OpResolve {
			o.Reason = r.text(MaxNameBytes)
		}
		ns := r.count(3, MaxOpsPerChange)
		if ns > 0 && r.err == nil {
			o.Seen = in.dotSlice(ns)
		}
		for j := 0; j < ns && r.err == nil; j++ {
			idx := r.uvarint()
			seq := r.uvarint()
			op := r.uvarint()
			if r.err != nil {
				return
			}
			if idx > uint64(len(ids)) || op > 1<<32-1 {
				r.fail(malformed(nil, "op %d: bad seen dot", i))
				return
			}
			d := Dot{Replica: c.Author, Seq: seq, Op: uint32(op)}
			if idx > 0 {
				d.Replica = ids[idx-1]
				used[idx-1] = true
				if d.Replica == c.Author {
					r.fail(malformed(nil, "author in replica table"))
					return
				}
			}
			o.Seen[j] = d
		}
	}
	if r.err != nil {
		return
	}
	checkUsed(r, used)
	if r.err != nil {
		return
	}
	if err := c.Validate(); err != nil {
		r.fail(malformed(nil, "%v", err))
	}
}

func (r *reader) textOf(p []byte) string {
	if !utf8Valid(p) {
		r.fail(malformed(nil, "invalid UTF-8"))
		return ""
	}
	return string(p)
}

// ---- Record ----

// MarshalBinary encodes the record (docs/format.md, "Record"). Same state,
// same bytes.
func (r *Record) MarshalBinary() ([]byte, error) { return r.appendBinary(nil), nil }

func (r *Record) appendBinary(b []byte) []byte { return r.appendEncoding(b, false) }

// appendValues appends the register values of r in encoding order (the
// values column of a space).
func (r *Record) appendValues(b []byte) []byte {
	for i := range r.regs {
		b = appendBytes(b, r.regs[i].value())
	}
	return b
}

// appendEncoding appends the record; with noValues, register values are
// left out (a space stores them in a separate column).
func (r *Record) appendEncoding(b []byte, noValues bool) []byte {
	var small [4]ReplicaID
	t := replicaTable{ids: small[:0]}
	for i := range r.regs {
		if i == 0 || r.regs[i].key != r.regs[i-1].key {
			t.add(r.regs[i].key.Value().rep)
		}
	}
	x := r.more()
	for _, s := range x.sets {
		for _, e := range s.entries {
			t.add(e.dot.Replica)
		}
	}
	for _, e := range x.dels {
		t.add(e.dot.Replica)
	}
	for _, n := range x.notes {
		t.add(n.id.Replica)
	}
	t.finish()
	b = append(b, recordVersion)
	b = appendString(b, string(r.id))
	b = appendTable(b, &t)
	// Slots in (kind, name, elem) order: registers (kind 1), then sets.
	nregs := 0
	for i := range r.regs {
		if i == 0 || !r.regs[i].sameName(&r.regs[i-1]) {
			nregs++
		}
	}
	b = appendUvarint(b, uint64(nregs+len(x.sets)))
	r.regRuns(func(run []regEntry) {
		b = append(b, byte(kindRegister))
		b = appendString(b, run[0].fieldName())
		b = appendUvarint(b, uint64(len(run)))
		for i := range run {
			b = appendDot(b, &t, run[i].dotOf())
			b = appendU64(b, run[i].hlc)
			if !noValues {
				b = appendBytes(b, run[i].value())
			}
		}
	})
	for _, s := range x.sets {
		b = append(b, byte(kindSet))
		b = appendString(b, s.name)
		b = appendString(b, s.elem)
		b = appendUvarint(b, uint64(len(s.entries)))
		for _, e := range s.entries {
			b = appendDot(b, &t, e.dot)
			b = appendU64(b, e.hlc)
		}
	}
	b = appendUvarint(b, uint64(len(x.dels)))
	for _, e := range x.dels {
		b = appendDot(b, &t, e.dot)
		b = appendU64(b, e.hlc)
	}
	b = appendUvarint(b, uint64(len(x.notes)))
	for _, n := range x.notes {
		b = appendDot(b, &t, n.id)
		b = appendU64(b, n.hlc)
		if n.removed {
			b = append(b, 1)
		} else {
			b = append(b, 0)
			b = appendString(b, n.text)
		}
	}
	return b
}

// UnmarshalRecord decodes a record: bounded, strict (only canonical
// encodings), never panics. Values alias a private copy of b.
func UnmarshalRecord(b []byte) (*Record, error) {
	if len(b) > MaxRecordBytes {
		return nil, malformed(ErrOversize, "record of %d bytes", len(b))
	}
	r := &reader{b: bytes.Clone(b)}
	rec := decodeRecord(r, nil)
	if err := r.end(); err != nil {
		return nil, err
	}
	return rec, nil
}

// decodeEntries reads the entries of a set element or the delete markers.
func decodeEntries(r *reader, ids []ReplicaID, used []bool) []entry {
	n := r.count(11, 1<<26)
	if r.err != nil || n == 0 {
		return nil
	}
	es := make([]entry, n)
	for i := range es {
		es[i].dot = readDot(r, ids, used)
		es[i].hlc = r.u64()
		if r.err != nil {
			return nil
		}
		if i > 0 && es[i-1].dot.Compare(es[i].dot) >= 0 {
			r.fail(malformed(nil, "entries not sorted"))
			return nil
		}
	}
	return es
}

// decodeRegEntries reads a register's siblings (as decodeEntries does,
// with their values from vr, the values column of a space, or if vr is
// nil inline from r) and appends them to regs under name.
func decodeRegEntries(r *reader, ids []ReplicaID, used []bool, vr *reader, name string, regs []regEntry) []regEntry {
	n := r.count(11, 1<<26)
	if r.err != nil || n == 0 {
		return regs
	}
	var key unique.Handle[regKey]
	var prev Dot
	for i := 0; i < n; i++ {
		d := readDot(r, ids, used)
		hlc := r.u64()
		var v []byte
		if vr != nil {
			v = vr.bytes(MaxValueBytes)
			if vr.err != nil {
				r.fail(vr.err)
			}
		} else {
			v = r.bytes(MaxValueBytes)
		}
		if r.err != nil {
			return regs
		}
		if i > 0 && prev.Compare(d) >= 0 {
			r.fail(malformed(nil, "entries not sorted"))
			return regs
		}
		if i == 0 || d.Replica != prev.Replica {
			key = makeKey(name, d.Replica)
		}
		prev = d
		regs = append(regs, newRegEntry(key, d, hlc, v))
	}
	return regs
}

func decodeRecord(r *reader, vr *reader) *Record {
	if v := r.byte1(); r.err == nil && v != recordVersion {
		r.fail(malformed(ErrUnknownVersion, "record version %d", v))
		return nil
	}
	id := r.text(MaxNameBytes)
	if r.err == nil && id == "" {
		r.fail(malformed(nil, "empty record id"))
	}
	ids, used := readTable(r, nil, nil)
	rec := &Record{id: RecordID(id)}
	ns := r.count(4, 1<<26)
	if r.err != nil {
		return nil
	}
	var prev slot
	var prevKind slotKind
	for i := 0; i < ns; i++ {
		var s slot
		kind := slotKind(r.byte1())
		if r.err == nil && kind != kindRegister && kind != kindSet {
			r.fail(malformed(nil, "slot kind %d", kind))
		}
		s.name = r.text(MaxNameBytes)
		if r.err == nil && s.name == "" {
			r.fail(malformed(nil, "empty field name"))
		}
		var n int
		if kind == kindSet {
			s.elem = string(r.bytes(MaxValueBytes))
			s.entries = decodeEntries(r, ids, used)
			n = len(s.entries)
		} else {
			if rec.regs == nil {
				rec.regs = make([]regEntry, 0, ns)
			}
			k := len(rec.regs)
			rec.regs = decodeRegEntries(r, ids, used, vr, s.name, rec.regs)
			n = len(rec.regs) - k
		}
		if r.err != nil {
			return nil
		}
		if n == 0 {
			r.fail(malformed(nil, "empty slot"))
			return nil
		}
		if i > 0 && (prevKind > kind || prevKind == kind && cmpSetKey(&prev, s.name, s.elem) >= 0) {
			r.fail(malformed(nil, "slots not sorted"))
			return nil
		}
		prev, prevKind = s, kind
		if kind == kindSet {
			rec.ext().sets = append(rec.ext().sets, s)
		}
	}
	if dels := decodeEntries(r, ids, used); len(dels) > 0 {
		rec.ext().dels = dels
	}
	nn := r.count(12, 1<<26)
	if r.err != nil {
		return nil
	}
	var notes []note
	if nn > 0 {
		notes = make([]note, nn)
		rec.ext().notes = notes
	}
	for i := range notes {
		n := &notes[i]
		n.id = readDot(r, ids, used)
		n.hlc = r.u64()
		switch r.byte1() {
		case 0:
			n.text = r.text(MaxValueBytes)
		case 1:
			n.removed = true
		default:
			r.fail(malformed(nil, "note flag"))
		}
		if r.err != nil {
			return nil
		}
		if i > 0 && notes[i-1].id.Compare(n.id) >= 0 {
			r.fail(malformed(nil, "notes not sorted"))
			return nil
		}
	}
	checkUsed(r, used)
	if r.err != nil {
		return nil
	}
	return rec
}

// ---- Context ----

// MarshalBinary encodes the context (docs/format.md, "Context").
func (c *Context) MarshalBinary() ([]byte, error) { return c.appendBinary(nil), nil }

func (c *Context) appendBinary(b []byte) []byte {
	set := make(map[ReplicaID]struct{}, len(c.vv))
	for r, s := range c.vv {
		if s > 0 {
			set[r] = struct{}{}
		}
	}
	for r := range c.extra {
		set[r] = struct{}{}
	}
	for r := range c.partial {
		set[r] = struct{}{}
	}
	ids := sortedReplicas(set)
	b = append(b, contextVersion)
	b = appendUvarint(b, uint64(len(ids)))
	for _, r := range ids {
		b = append(b, r[:]...)
		vv := c.vv[r]
		b = appendUvarint(b, vv)
		ex := c.extra[r]
		b = appendUvarint(b, uint64(len(ex)))
		prev := vv + 1
		for _, s := range ex {
			b = appendUvarint(b, s-prev-1)
			prev = s
		}
		type pd struct {
			seq uint64
			partialDot
		}
		var ps []pd
		for seq, l := range c.partial[r] {
			for p := range l {
				ps = append(ps, pd{seq, p})
			}
		}
		slices.SortFunc(ps, func(a, b pd) int {
			switch {
			case a.seq != b.seq:
				if a.seq < b.seq {
					return -1
				}
				return 1
			case a.op != b.op:
				if a.op < b.op {
					return -1
				}
				return 1
			}
			return compareStrings(string(a.rec), string(b.rec))
		})
		b = appendUvarint(b, uint64(len(ps)))
		for _, p := range ps {
			b = appendUvarint(b, p.seq)
			b = appendUvarint(b, uint64(p.op))
			b = appendString(b, string(p.rec))
		}
	}
	return b
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// UnmarshalContext decodes a context: bounded, strict, never panics.
func UnmarshalContext(b []byte) (*Context, error) {
	r := &reader{b: b}
	c := decodeContext(r)
	if err := r.end(); err != nil {
		return nil, err
	}
	return c, nil
}

func decodeContext(r *reader) *Context {
	if v := r.byte1(); r.err == nil && v != contextVersion {
		r.fail(malformed(ErrUnknownVersion, "context version %d", v))
		return nil
	}
	c := &Context{}
	n := r.count(19, 1<<24)
	var prevID ReplicaID
	for i := 0; i < n && r.err == nil; i++ {
		id := r.replica()
		if i > 0 && prevID.Compare(id) >= 0 {
			r.fail(malformed(nil, "context replicas not sorted"))
			return nil
		}
		prevID = id
		vv := r.uvarint()
		nex := r.count(1, 1<<32)
		if r.err != nil {
			return nil
		}
		if vv > 0 {
			if c.vv == nil {
				c.vv = make(map[ReplicaID]uint64)
			}
			c.vv[id] = vv
		}
		if nex > 0 {
			ex := make([]uint64, nex)
			prev := vv + 1
			if prev == 0 {
				r.fail(malformed(nil, "seq overflow"))
				return nil
			}
			for j := range ex {
				g := r.uvarint()
				s := prev + 1 + g
				if r.err != nil {
					return nil
				}
				if s <= prev {
					r.fail(malformed(nil, "seq overflow"))
					return nil
				}
				ex[j] = s
				prev = s
			}
			if c.extra == nil {
				c.extra = make(map[ReplicaID][]uint64)
			}
			c.extra[id] = ex
		}
		np := r.count(3, 1<<26)
		var last struct {
			seq uint64
			op  uint32
			rec RecordID
		}
		for j := 0; j < np && r.err == nil; j++ {
			seq := r.uvarint()
			op := r.uvarint()
			rec := RecordID(r.text(MaxNameBytes))
			if r.err != nil {
				return nil
			}
			if op > 1<<32-1 || seq == 0 || rec == "" || c.hasChange(id, seq) {
				r.fail(malformed(nil, "bad partial dot"))
				return nil
			}
			if j > 0 && (seq < last.seq || seq == last.seq && (uint32(op) < last.op || uint32(op) == last.op && rec <= last.rec)) {
				r.fail(malformed(nil, "partial dots not sorted"))
				return nil
			}
			last.seq, last.op, last.rec = seq, uint32(op), rec
			c.addPartial(Dot{id, seq, uint32(op)}, rec)
		}
		if r.err == nil && vv == 0 && nex == 0 && np == 0 {
			r.fail(malformed(nil, "empty context entry"))
		}
	}
	if r.err != nil {
		return nil
	}
	return c
}

// ---- Space ----

// MarshalBinary encodes the whole space: a version byte, then a DEFLATE
// stream of the context, every record sorted by ID without its register
// values, then the values column (docs/format.md, "Space"). Same state,
// same bytes (with the same Go release).
func (s *Space) MarshalBinary() ([]byte, error) {
	var out bytes.Buffer
	out.WriteByte(spaceVersion)
	w, err := flate.NewWriter(&out, flate.DefaultCompression)
	if err != nil {
		return nil, err
	}
	s.writeBody(func(p []byte) { w.Write(p) })
	if err := w.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// AppendCanonical appends the uncompressed canonical encoding of the space
// — what MarshalBinary compresses and what a digest should hash.
func (s *Space) AppendCanonical(b []byte) []byte {
	s.writeBody(func(p []byte) { b = append(b, p...) })
	return b
}

func (s *Space) writeBody(write func([]byte)) {
	s.init()
	tmp := appendBytes(nil, s.Context.appendBinary(nil))
	ids := s.IDs()
	tmp = appendUvarint(tmp, uint64(len(ids)))
	write(tmp)
	var rec []byte
	for _, id := range ids {
		rec = s.Records[id].appendEncoding(rec[:0], true)
		tmp = appendBytes(tmp[:0], rec)
		write(tmp)
	}
	for _, id := range ids {
		tmp = s.Records[id].appendValues(tmp[:0])
		write(tmp)
	}
}

// UnmarshalSpace decodes a space. The decompressed size is bounded by
// MaxStateBytes; never panics.
func UnmarshalSpace(b []byte) (*Space, error) {
	if len(b) == 0 {
		return nil, malformed(ErrTruncated, "empty space")
	}
	if b[0] != spaceVersion {
		return nil, malformed(ErrUnknownVersion, "space version %d", b[0])
	}
	body, err := inflate(b[1:], MaxStateBytes)
	if err != nil {
		return nil, err
	}
	return decodeSpaceBody(body)
}

func inflate(b []byte, max int64) ([]byte, error) {
	fr := flate.NewReader(bytes.NewReader(b))
	defer fr.Close()
	body, err := io.ReadAll(io.LimitReader(fr, max+1))
	if err != nil {
		return nil, malformed(nil, "deflate: %v", err)
	}
	if int64(len(body)) > max {
		return nil, malformed(ErrOversize, "decompressed size > %d", max)
	}
	return body, nil
}

// inflateSized decompresses a stream that must hold exactly size bytes.
// Memory grows with the data actually decompressed, not with the claim.
func inflateSized(b []byte, size int) ([]byte, error) {
	fr := flate.NewReader(bytes.NewReader(b))
	defer fr.Close()
	buf := bytes.NewBuffer(make([]byte, 0, min(size, 4*len(b)+4096)))
	if _, err := buf.ReadFrom(io.LimitReader(fr, int64(size)+1)); err != nil {
		return nil, malformed(nil, "deflate: %v", err)
	}
	if buf.Len() != size {
		return nil, malformed(ErrTruncated, "batch is %d bytes, header says %d", buf.Len(), size)
	}
	return buf.Bytes(), nil
}

func decodeSpaceBody(body []byte) (*Space, error) {
	r := &reader{b: body}
	cb := r.bytes(len(body))
	if r.err != nil {
		return nil, r.err
	}
	ctx, err := UnmarshalContext(cb)
	if err != nil {
		return nil, err
	}
	s := &Space{Context: ctx}
	n := r.count(4, 1<<28)
	if r.err != nil {
		return nil, r.err
	}
	blobs := make([][]byte, n)
	for i := range blobs {
		blobs[i] = r.bytes(len(body))
		if r.err != nil {
			return nil, r.err
		}
	}
	vr := &reader{b: body, off: r.off}
	s.Records = make(map[RecordID]*Record, n)
	var prev RecordID
	for i, rb := range blobs {
		rr := &reader{b: rb}
		rec := decodeRecord(rr, vr)
		if err := rr.end(); err != nil {
			return nil, err
		}
		if i > 0 && rec.id <= prev {
			return nil, malformed(nil, "records not sorted")
		}
		prev = rec.id
		s.Records[rec.id] = rec
	}
	if err := vr.end(); err != nil {
		return nil, err
	}
	return s, nil
}
