package crdt

import (
	"slices"
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
	var arena []entry // entries for the new slots of a new record
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
			if r.slots == nil && k > 1 {
				r.slots = make([]slot, 0, k)
				arena = make([]entry, k)
			} else if len(r.slots) == 0 && cap(r.arena) > 0 {
				arena, r.arena = r.arena, nil
			}
		}
		d := Dot{Replica: ch.Author, Seq: ch.Seq, Op: uint32(i)}
		// A partial dot for this op in this record means a change already
		// applied overwrote it: the op arrives dead.
		dead := ctx.hasPartial(d, o.Record)
		skip := Dot{}
		switch o.Kind {
		case OpPut, OpResolve:
			if !dead {
				skip = r.putEntry(ctx, o, entry{dot: d, hlc: hlc, value: o.Value}, &arena)
			}
		case OpSetAdd:
			if !dead {
				r.addEntry(kindSet, o.Field, string(o.Value), entry{dot: d, hlc: hlc})
			}
		case OpDelete:
			if !dead {
				r.dels = insertEntry(r.dels, entry{dot: d, hlc: hlc})
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
// is about to get k slots is allocated with them and their entries in one
// block, so that reading it later touches adjacent memory.
func (s *Space) record(id RecordID, k int) *Record {
	r := s.Records[id]
	if r == nil {
		r = newRecordBlock(id, k)
		s.Records[id] = r
	}
	return r
}

type recordBlock4 struct {
	r Record
	s [4]slot
	e [4]entry
}

type recordBlock8 struct {
	r Record
	s [8]slot
	e [8]entry
}

func newRecordBlock(id RecordID, k int) *Record {
	switch {
	case k >= 2 && k <= 4:
		b := &recordBlock4{}
		b.r = Record{id: id, slots: b.s[:0:k], arena: b.e[:k]}
		return &b.r
	case k >= 5 && k <= 8:
		b := &recordBlock8{}
		b.r = Record{id: id, slots: b.s[:0:k], arena: b.e[:k]}
		return &b.r
	}
	return NewRecord(id)
}

// Apply applies a change (see ApplyChange). It keeps references to the
// change's values.
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

// mergeEntries joins two sorted entry lists: a dot both hold stays; a dot
// one holds stays unless the other's context covers it (seen there, so
// overwritten there).
func mergeEntries(id RecordID, ea []entry, ca *Context, eb []entry, cb *Context) []entry {
	var out []entry
	i, j := 0, 0
	for i < len(ea) || j < len(eb) {
		var c int
		switch {
		case i == len(ea):
			c = 1
		case j == len(eb):
			c = -1
		default:
			c = ea[i].dot.Compare(eb[j].dot)
		}
		switch {
		case c == 0:
			out = append(out, ea[i])
			i++
			j++
		case c < 0:
			if !cb.covers(ea[i].dot, id) {
				out = append(out, ea[i])
			}
			i++
		default:
			if !ca.covers(eb[j].dot, id) {
				out = append(out, eb[j])
			}
			j++
		}
	}
	return out
}

func mergeRecord(id RecordID, ra *Record, ca *Context, rb *Record, cb *Context) *Record {
	out := &Record{id: id}
	i, j := 0, 0
	for i < len(ra.slots) || j < len(rb.slots) {
		var c int
		switch {
		case i == len(ra.slots):
			c = 1
		case j == len(rb.slots):
			c = -1
		default:
			sb := &rb.slots[j]
			c = cmpSlotKey(&ra.slots[i], sb.kind, sb.name, sb.elem)
		}
		var s slot
		switch {
		case c == 0:
			s = ra.slots[i]
			s.entries = mergeEntries(id, ra.slots[i].entries, ca, rb.slots[j].entries, cb)
			i++
			j++
		case c < 0:
			s = ra.slots[i]
			s.entries = mergeEntries(id, s.entries, ca, nil, cb)
			i++
		default:
			s = rb.slots[j]
			s.entries = mergeEntries(id, nil, ca, s.entries, cb)
			j++
		}
		if len(s.entries) > 0 {
			out.slots = append(out.slots, s)
		}
	}
	out.dels = mergeEntries(id, ra.dels, ca, rb.dels, cb)
	i, j = 0, 0
	for i < len(ra.notes) || j < len(rb.notes) {
		var c int
		switch {
		case i == len(ra.notes):
			c = 1
		case j == len(rb.notes):
			c = -1
		default:
			c = ra.notes[i].id.Compare(rb.notes[j].id)
		}
		var n note
		switch {
		case c == 0:
			n = ra.notes[i]
			n.removed = n.removed || rb.notes[j].removed
			i++
			j++
		case c < 0:
			n = ra.notes[i]
			n.removed = n.removed || cb.hasPartial(n.id, id)
			i++
		default:
			n = rb.notes[j]
			n.removed = n.removed || ca.hasPartial(n.id, id)
			j++
		}
		if n.removed {
			n.text = ""
		}
		out.notes = append(out.notes, n)
	}
	return out
}

// putEntry adds a register sibling. In the common case (the register has
// one sibling, which the op saw and whose change is applied) it replaces it
// in place and returns its dot, which the caller then skips.
func (r *Record) putEntry(ctx *Context, o *Op, e entry, arena *[]entry) Dot {
	i, found := r.findSlot(kindRegister, o.Field, "")
	if found {
		es := r.slots[i].entries
		if len(es) == 1 && es[0].dot != e.dot {
			old := es[0].dot
			if _, saw := slices.BinarySearchFunc(o.Seen, old, Dot.Compare); saw && ctx.hasChange(old.Replica, old.Seq) {
				es[0] = e
				return old
			}
		}
		r.slots[i].entries = insertEntry(es, e)
		return Dot{}
	}
	var es []entry
	if a := *arena; len(a) > 0 {
		es, *arena = a[:1:1], a[1:]
		es[0] = e
	} else {
		es = []entry{e}
	}
	if i == len(r.slots) {
		r.slots = append(r.slots, slot{kind: kindRegister, name: o.Field, entries: es})
	} else {
		r.slots = slices.Insert(r.slots, i, slot{kind: kindRegister, name: o.Field, entries: es})
	}
	return Dot{}
}
