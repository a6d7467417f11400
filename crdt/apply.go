package crdt

import (
	"bytes"
	"slices"
	"strings"
)

// applyValid applies a validated change whose records are all reachable
// through rec (which must return a record, creating it if needed). It is a
// join of the change's delta into the state; it returns false if the change
// was already in ctx (nothing changes).
func applyValid(ctx *Context, rec func(RecordID, int) *Record, ch *Change) bool {
	if ctx.hasChange(ch.Author, ch.Seq) {
		return false
	}
	hlc := ch.HLC.Pack()
	var r *Record
	for i := range ch.Ops {
		o := &ch.Ops[i]
		if r == nil || r.id != o.Record {
			// k: the slots the ops of this change that follow on this
			// record may create, to size a new record in one go.
			k := 0
			for j := i; j < len(ch.Ops) && ch.Ops[j].Record == o.Record; j++ {
				if ch.Ops[j].Kind == OpPut || ch.Ops[j].Kind == OpResolve || ch.Ops[j].Kind == OpSetAdd {
					k++
				}
			}
			r = rec(o.Record, k)
			if r.regs == nil && k > 1 {
				r.regs = make([]regEntry, 0, k)
			}
		}
		d := ch.opDot(i)
		// A partial dot for this op in this record means a change already
		// applied overwrote it: the op arrives dead.
		dead := ctx.hasPartial(d, o.Record)
		skip := Dot{}
		switch o.Kind {
		case OpPut, OpResolve:
			if !dead {
				skip = r.putEntry(ctx, o, d, hlc)
			}
		case OpSetAdd:
			if !dead {
				r.addSetEntry(o.Field, string(o.Value), entry{dot: d, hlc: hlc})
			}
		case OpDelete:
			if !dead {
				x := r.ext()
				x.dels = insertEntry(x.dels, entry{dot: d, hlc: hlc})
			}
		case OpNoteAdd:
			r.addNote(note{id: d, hlc: hlc, text: string(o.Value), removed: dead})
		}
		for _, s := range o.Seen {
			if s == skip {
				continue
			}
			if ctx.hasChange(s.Replica, s.Seq) {
				r.removeDot(s, o)
			} else {
				ctx.addPartial(s, o.Record)
			}
		}
	}
	ctx.addChange(ch.Author, ch.Seq)
	return true
}

// ApplyChange applies ch to the records it names and to the space's context
// ctx (modified in place). load returns a stored record, or (nil, nil) for a
// record not held; the records it returns may be modified. The result holds
// every record the change names, to be stored with ctx in one batch; it is
// empty if ch was already applied (applying a change twice, or after a
// change that overwrote it, changes nothing). On error nothing is modified.
func ApplyChange(ctx *Context, load func(RecordID) (*Record, error), ch *Change) (map[RecordID]*Record, error) {
	if err := ch.Validate(); err != nil {
		return nil, err
	}
	if ctx.hasChange(ch.Author, ch.Seq) {
		return map[RecordID]*Record{}, nil
	}
	ids := ch.Records()
	out := make(map[RecordID]*Record, len(ids))
	for _, id := range ids {
		r, err := load(id)
		if err != nil {
			return nil, err
		}
		if r == nil {
			r = NewRecord(id)
		} else if r.id != id {
			return nil, invalid("load(%q) returned record %q", id, r.id)
		}
		out[id] = r
	}
	applyValid(ctx, func(id RecordID, _ int) *Record { return out[id] }, ch)
	return out, nil
}

// Space is a whole space in memory: its context and every record. Used by
// tests, benchmarks and repair; the agent stores records one by one. The
// zero Space is empty and ready to use.
type Space struct {
	Context *Context
	Records map[RecordID]*Record
}

// NewSpace returns an empty space.
func NewSpace() *Space {
	return &Space{Context: NewContext(), Records: make(map[RecordID]*Record)}
}

// init makes the zero Space usable.
func (s *Space) init() {
	if s.Context == nil {
		s.Context = NewContext()
	}
	if s.Records == nil {
		s.Records = make(map[RecordID]*Record)
	}
}

// record returns the record id, creating it if needed. A new record that
// is about to get k registers is allocated with room for them in one
// block, so that reading it later touches adjacent memory.
func (s *Space) record(id RecordID, k int) *Record {
	r := s.Records[id]
	if r == nil {
		r = newRecordBlock(id, k)
		s.Records[id] = r
	}
	return r
}

// Record blocks hold a record and room for its first registers plus one:
// the spare slot takes a concurrent write's sibling in place (a conflict)
// instead of moving every register to a new array while the old one stays
// pinned by the header it shares a block with. With a 48-byte header and
// 40-byte entries they are 248 and 408 bytes (allocated as 256 and 416).
type recordBlock5 struct {
	r Record
	e [5]regEntry
}

type recordBlock9 struct {
	r Record
	e [9]regEntry
}

func newRecordBlock(id RecordID, k int) *Record {
	switch {
	case k >= 2 && k <= 4:
		b := &recordBlock5{}
		b.r = Record{id: id, regs: b.e[:0:len(b.e)]}
		return &b.r
	case k >= 5 && k <= 8:
		b := &recordBlock9{}
		b.r = Record{id: id, regs: b.e[:0:len(b.e)]}
		return &b.r
	}
	return NewRecord(id)
}

// Apply applies a change (see ApplyChange). It copies the values it keeps,
// so a record never pins the buffer a change was decoded from.
func (s *Space) Apply(ch *Change) error {
	if err := ch.Validate(); err != nil {
		return err
	}
	s.init()
	applyValid(s.Context, s.record, ch)
	return nil
}

// MarkSeen records a seq that carried no CRDT operations.
func (s *Space) MarkSeen(d Dot) {
	s.init()
	s.Context.Add(d)
}

// Record returns the record with the given ID, or nil.
func (s *Space) Record(id RecordID) *Record { return s.Records[id] }

// IDs returns the record IDs, sorted.
func (s *Space) IDs() []RecordID {
	ids := make([]RecordID, 0, len(s.Records))
	for id := range s.Records {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Clone returns a deep copy of s.
func (s *Space) Clone() *Space {
	s.init()
	c := &Space{Context: s.Context.Clone(), Records: make(map[RecordID]*Record, len(s.Records))}
	for id, r := range s.Records {
		c.Records[id] = r.Clone()
	}
	return c
}

// Merge returns the join of two spaces; a and b are not modified (values
// are shared). Merging agrees with applying: a space that applied changes X
// merged with one that applied Y equals a space that applied X ∪ Y.
func Merge(a, b *Space) *Space {
	a.init()
	b.init()
	out := &Space{Context: a.Context.Clone(), Records: make(map[RecordID]*Record, len(a.Records))}
	out.Context.Join(b.Context)
	empty := &Record{}
	for id, ra := range a.Records {
		rb := b.Records[id]
		if rb == nil {
			rb = empty
		}
		out.Records[id] = mergeRecord(id, ra, a.Context, rb, b.Context)
	}
	for id, rb := range b.Records {
		if _, ok := a.Records[id]; !ok {
			out.Records[id] = mergeRecord(id, empty, a.Context, rb, b.Context)
		}
	}
	return out
}

// mergeEntries joins two lists sorted by dot: a dot both hold stays; a dot
// one holds stays unless the other's context covers it (seen there, so
// overwritten there). It appends to out.
func mergeEntries[E any, P interface {
	*E
	dotOf() Dot
}](out []E, id RecordID, ea []E, ca *Context, eb []E, cb *Context) []E {
	i, j := 0, 0
	for i < len(ea) || j < len(eb) {
		var c int
		switch {
		case i == len(ea):
			c = 1
		case j == len(eb):
			c = -1
		default:
			c = P(&ea[i]).dotOf().Compare(P(&eb[j]).dotOf())
		}
		switch {
		case c == 0:
			out = append(out, ea[i])
			i++
			j++
		case c < 0:
			if !cb.covers(P(&ea[i]).dotOf(), id) {
				out = append(out, ea[i])
			}
			i++
		default:
			if !ca.covers(P(&eb[j]).dotOf(), id) {
				out = append(out, eb[j])
			}
			j++
		}
	}
	return out
}

// run returns the run of regs at i with the same name.
func run(regs []regEntry, i int) []regEntry {
	j := i + 1
	for j < len(regs) && regs[j].sameName(&regs[i]) {
		j++
	}
	return regs[i:j]
}

func mergeRecord(id RecordID, ra *Record, ca *Context, rb *Record, cb *Context) *Record {
	out := &Record{id: id}
	i, j := 0, 0
	for i < len(ra.regs) || j < len(rb.regs) {
		var c int
		switch {
		case i == len(ra.regs):
			c = 1
		case j == len(rb.regs):
			c = -1
		default:
			c = strings.Compare(ra.regs[i].fieldName(), rb.regs[j].fieldName())
		}
		switch {
		case c == 0:
			a, b := run(ra.regs, i), run(rb.regs, j)
			out.regs = mergeEntries(out.regs, id, a, ca, b, cb)
			i += len(a)
			j += len(b)
		case c < 0:
			a := run(ra.regs, i)
			out.regs = mergeEntries(out.regs, id, a, ca, nil, cb)
			i += len(a)
		default:
			b := run(rb.regs, j)
			out.regs = mergeEntries(out.regs, id, nil, ca, b, cb)
			j += len(b)
		}
	}
	xa, xb := ra.more(), rb.more()
	var sets []slot
	i, j = 0, 0
	for i < len(xa.sets) || j < len(xb.sets) {
		var c int
		switch {
		case i == len(xa.sets):
			c = 1
		case j == len(xb.sets):
			c = -1
		default:
			sb := &xb.sets[j]
			c = cmpSetKey(&xa.sets[i], sb.name, sb.elem)
		}
		var s slot
		switch {
		case c == 0:
			s = xa.sets[i]
			s.entries = mergeEntries(nil, id, xa.sets[i].entries, ca, xb.sets[j].entries, cb)
			i++
			j++
		case c < 0:
			s = xa.sets[i]
			s.entries = mergeEntries(nil, id, s.entries, ca, nil, cb)
			i++
		default:
			s = xb.sets[j]
			s.entries = mergeEntries(nil, id, nil, ca, s.entries, cb)
			j++
		}
		if len(s.entries) > 0 {
			sets = append(sets, s)
		}
	}
	dels := mergeEntries(nil, id, xa.dels, ca, xb.dels, cb)
	var notes []note
	i, j = 0, 0
	for i < len(xa.notes) || j < len(xb.notes) {
		var c int
		switch {
		case i == len(xa.notes):
			c = 1
		case j == len(xb.notes):
			c = -1
		default:
			c = xa.notes[i].id.Compare(xb.notes[j].id)
		}
		var n note
		switch {
		case c == 0:
			n = xa.notes[i]
			n.removed = n.removed || xb.notes[j].removed
			i++
			j++
		case c < 0:
			n = xa.notes[i]
			n.removed = n.removed || cb.hasPartial(n.id, id)
			i++
		default:
			n = xb.notes[j]
			n.removed = n.removed || ca.hasPartial(n.id, id)
			j++
		}
		if n.removed {
			n.text = ""
		}
		notes = append(notes, n)
	}
	if len(sets) > 0 || len(dels) > 0 || len(notes) > 0 {
		out.x = &recordExtra{sets: sets, dels: dels, notes: notes}
	}
	return out
}

// putEntry adds a register sibling. In the common case (the register has
// one sibling, which the op saw and whose change is applied) it replaces it
// in place and returns its dot, which the caller then skips.
func (r *Record) putEntry(ctx *Context, o *Op, d Dot, hlc uint64) Dot {
	lo, hi := r.findReg(o.Field)
	if hi-lo == 1 && !r.regs[lo].is(d) {
		e := &r.regs[lo]
		old := e.dotOf()
		if _, saw := slices.BinarySearchFunc(o.Seen, old, Dot.Compare); saw && ctx.hasChange(old.Replica, old.Seq) {
			key := e.key
			if old.Replica != d.Replica {
				key = ctx.key(o.Field, d.Replica)
			}
			e.set(key, d, hlc, ownValue(o.Value))
			return old
		}
	}
	i, found := findDot(r.regs[lo:hi], d)
	if found {
		return Dot{}
	}
	r.regs = insertRegAt(r.regs, lo+i, newRegEntry(ctx.key(o.Field, d.Replica), d, hlc, ownValue(o.Value)))
	return Dot{}
}

// ownValue returns a copy of an applied register value for the record to
// keep (nil stays nil, empty stays empty). Keeping the op's own bytes
// instead pinned whatever they were cut from: a decoded batch of a
// thousand changes stayed whole while one of its values was live, and a
// caller's buffer of values stayed whole once most were overwritten. A
// copy costs its size rounded to the allocator's class (64 bytes for
// W1's 57).
func ownValue(v []byte) []byte {
	if v == nil {
		return nil
	}
	return bytes.Clone(v)
}
