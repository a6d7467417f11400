package crdt

import (
	"slices"
	"unicode/utf8"
)

// OpKind is the kind of an operation.
type OpKind uint8

// The operation kinds. Their numeric values are part of the binary format.
const (
	OpPut        OpKind = 1 // write a register value
	OpSetAdd     OpKind = 2 // add an element to a set
	OpSetRemove  OpKind = 3 // remove the observed element from a set
	OpNoteAdd    OpKind = 4 // append a note
	OpNoteRemove OpKind = 5 // tombstone the notes named in Seen
	OpDelete     OpKind = 6 // delete the record (everything it saw)
	OpResolve    OpKind = 7 // resolve exactly the sibling dots named in Seen
)

var opNames = [...]string{"", "put", "set-add", "set-remove", "note-add", "note-remove", "delete", "resolve"}

// String returns the kind's name as history shows it ("put", "set-add"...).
func (k OpKind) String() string {
	if int(k) < len(opNames) && k != 0 {
		return opNames[k]
	}
	return "unknown"
}

// Op is one operation of a change. Build ops with the Record methods (Put,
// SetAdd, Delete, Resolve, ...) and NoteAdd: they fill Seen with the dots
// the author saw, which is what the op overwrites (docs/crdt.md).
type Op struct {
	Kind   OpKind
	Record RecordID
	// Field is the register or set name (Put, Resolve, SetAdd, SetRemove).
	Field string
	// Value is the register value (Put, Resolve), the set element (SetAdd,
	// SetRemove) or the note text (NoteAdd). Applying copies what it keeps
	// (docs/crdt.md, "Memory layout"): the caller may reuse it afterwards.
	Value []byte
	// Seen lists the dots this op overwrites, sorted by Dot.Compare, unique.
	// For NoteRemove these are the note IDs; for Resolve the resolved
	// siblings.
	Seen []Dot
	// Reason is the optional reason of a Resolve.
	Reason string
}

// Change is a batch of operations by one author in one space, identified by
// (Author, Seq) and stamped with HLC. Op i of the change has the dot
// (Author, Seq, i). Rules (checked by Validate and ApplyChange): at most one
// register op (Put or Resolve) per (record, field); at most one set op per
// (record, set, element); a Delete is the only op on its record; no seen dot
// from the author's own seq or later.
type Change struct {
	Author ReplicaID
	Seq    uint64
	HLC    Timestamp
	Ops    []Op
	// Deps is the author's causal context for the other replicas its ops
	// name: for each replica of a seen dot other than the author, the
	// newest envelope of that replica's log the author held when it wrote
	// the change (seq and envelope ID, opaque here). It is sealed and
	// signed with the change, so a replica can check that every seen dot
	// lies within what the author really held (CheckDeps) and wait until
	// it holds the same (docs/crdt.md, "Causal dependencies"). Sorted by
	// replica, unique; each replica must appear among the seen dots.
	Deps []Dep
	// OpIndex, if set, gives each op its index in the change as written:
	// op i has the dot (Author, Seq, OpIndex[i]). It is set when a change is
	// applied without some of its ops — a record erased from the change's
	// envelope (docs/design.md §6, "Erasing one record") — so that the ops
	// left keep the dots every other replica gave them. Strictly increasing;
	// nil means op i is index i. A change with OpIndex has no encoding of
	// its own (MarshalBinary refuses it).
	OpIndex []uint32
}

// opDot returns the dot of op i.
func (c *Change) opDot(i int) Dot {
	if c.OpIndex != nil {
		return Dot{Replica: c.Author, Seq: c.Seq, Op: c.OpIndex[i]}
	}
	return Dot{Replica: c.Author, Seq: c.Seq, Op: uint32(i)}
}

// Dep is one entry of a change's causal context: the author held replica
// Replica's log up to Seq, whose envelope has ID Hash.
type Dep struct {
	Replica ReplicaID
	Seq     uint64
	Hash    [32]byte
}

// MaxDeps bounds the dependencies of one change (one per other replica
// named in its seen dots).
const MaxDeps = 1 << 16

// CheckDeps reports whether the change's seen dots lie within its causal
// context: every seen dot of another replica must have a dependency on that
// replica at or above its seq. A change that fails names dots its author
// cannot have seen (a hostile or buggy writer); the agent applies it as a
// no-op on every replica.
func (c *Change) CheckDeps() error {
	for i := range c.Ops {
		for _, d := range c.Ops[i].Seen {
			if d.Replica == c.Author {
				continue
			}
			j, ok := slices.BinarySearchFunc(c.Deps, d.Replica, func(x Dep, r ReplicaID) int { return x.Replica.Compare(r) })
			if !ok {
				return invalid("op %d: seen dot of %s with no dependency on it", i, d.Replica)
			}
			if d.Seq > c.Deps[j].Seq {
				return invalid("op %d: seen dot %s:%d above its dependency %d", i, d.Replica, d.Seq, c.Deps[j].Seq)
			}
		}
	}
	return nil
}

// MaxOpsPerChange bounds the number of operations in one change.
const MaxOpsPerChange = 1 << 20

// Dot returns the change-level dot (Author, Seq, 0).
func (c *Change) Dot() Dot { return Dot{Replica: c.Author, Seq: c.Seq} }

// Records returns the records the change touches, sorted and unique.
func (c *Change) Records() []RecordID {
	out := make([]RecordID, 0, 1)
	for i := range c.Ops {
		out = append(out, c.Ops[i].Record)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func validName(s string) bool {
	return len(s) > 0 && len(s) <= MaxNameBytes && utf8.ValidString(s)
}

// Validate checks the rules of a change (see Change).
func (c *Change) Validate() error {
	if c.Author.IsZero() {
		return invalid("zero author")
	}
	if c.Seq == 0 {
		return invalid("seq 0")
	}
	if len(c.Ops) > MaxOpsPerChange {
		return invalid("%d ops > %d", len(c.Ops), MaxOpsPerChange)
	}
	if c.OpIndex != nil {
		if len(c.OpIndex) != len(c.Ops) {
			return invalid("%d op indexes for %d ops", len(c.OpIndex), len(c.Ops))
		}
		for i := 1; i < len(c.OpIndex); i++ {
			if c.OpIndex[i] <= c.OpIndex[i-1] {
				return invalid("op indexes not increasing")
			}
		}
		if len(c.OpIndex) > 0 && c.OpIndex[len(c.OpIndex)-1] >= MaxOpsPerChange {
			return invalid("op index above %d", MaxOpsPerChange)
		}
	}
	var prevRec RecordID
	var prevField string
	for i := range c.Ops {
		o := &c.Ops[i]
		// Ops of a change mostly share their record and reuse field
		// names: check each distinct string once.
		recOK := i > 0 && o.Record == prevRec
		fieldOK := i > 0 && o.Field == prevField && o.Field != ""
		if err := c.validOp(o, recOK, fieldOK); err != nil {
			return invalid("op %d: %v", i, err)
		}
		prevRec, prevField = o.Record, o.Field
	}
	if err := c.validDeps(); err != nil {
		return err
	}
	if len(c.Ops) > 1 {
		return c.checkUnique()
	}
	return nil
}

// validDeps checks that the dependencies are sorted, unique, name other
// replicas than the author, and only replicas the seen dots name (so the
// encoding's replica table covers them).
func (c *Change) validDeps() error {
	if len(c.Deps) == 0 {
		return nil
	}
	if len(c.Deps) > MaxDeps {
		return invalid("%d dependencies > %d", len(c.Deps), MaxDeps)
	}
	named := map[ReplicaID]bool{}
	for i := range c.Ops {
		for _, d := range c.Ops[i].Seen {
			named[d.Replica] = true
		}
	}
	for i, d := range c.Deps {
		switch {
		case d.Replica == c.Author:
			return invalid("dependency on the author itself")
		case d.Seq == 0:
			return invalid("dependency with seq 0")
		case i > 0 && c.Deps[i-1].Replica.Compare(d.Replica) >= 0:
			return invalid("dependencies not sorted and unique")
		case !named[d.Replica]:
			return invalid("dependency on %s, which no seen dot names", d.Replica)
		}
	}
	return nil
}

type opError string

func (e opError) Error() string { return string(e) }

func (c *Change) validOp(o *Op, recOK, fieldOK bool) error {
	if !recOK && !validName(string(o.Record)) {
		return opError("bad record id")
	}
	if len(o.Value) > MaxValueBytes {
		return opError("value too large")
	}
	switch o.Kind {
	case OpPut, OpResolve, OpSetAdd, OpSetRemove:
		if !fieldOK && !validName(o.Field) {
			return opError("bad field name")
		}
	case OpNoteAdd, OpNoteRemove, OpDelete:
		if o.Field != "" {
			return opError("field on a " + o.Kind.String())
		}
	default:
		return opError("unknown kind")
	}
	switch o.Kind {
	case OpNoteAdd:
		if !utf8.Valid(o.Value) {
			return opError("note text is not UTF-8")
		}
	case OpNoteRemove, OpDelete:
		if len(o.Value) != 0 {
			return opError("value on a " + o.Kind.String())
		}
	}
	if o.Reason != "" && (o.Kind != OpResolve || len(o.Reason) > MaxNameBytes || !utf8.ValidString(o.Reason)) {
		return opError("bad reason")
	}
	if (o.Kind == OpResolve || o.Kind == OpNoteRemove) && len(o.Seen) == 0 {
		return opError(o.Kind.String() + " names nothing")
	}
	for j, d := range o.Seen {
		if d.Seq == 0 {
			return opError("seen dot with seq 0")
		}
		if d.Replica == c.Author && d.Seq >= c.Seq {
			return opError("seen dot from the author's own future")
		}
		if j > 0 && o.Seen[j-1].Compare(d) >= 0 {
			return opError("seen dots not sorted and unique")
		}
	}
	return nil
}

type opKey struct {
	rec   RecordID
	class uint8 // 1 register, 2 set, 3 delete/record
	field string
	elem  string
}

// opClass: 1 register ops, 2 set ops, 0 others.
func opClass(k OpKind) uint8 {
	switch k {
	case OpPut, OpResolve:
		return 1
	case OpSetAdd, OpSetRemove:
		return 2
	}
	return 0
}

func (c *Change) checkUnique() error {
	if len(c.Ops) <= 16 {
		// Small changes: pairwise, without maps.
		for i := range c.Ops {
			a := &c.Ops[i]
			for j := 0; j < i; j++ {
				b := &c.Ops[j]
				if a.Record != b.Record {
					continue
				}
				if a.Kind == OpDelete || b.Kind == OpDelete {
					return invalid("op %d: a delete must be the only op on its record", i)
				}
				ca := opClass(a.Kind)
				if ca == 0 || ca != opClass(b.Kind) || a.Field != b.Field ||
					ca == 2 && string(a.Value) != string(b.Value) {
					continue
				}
				return invalid("ops %d and %d write the same field", j, i)
			}
		}
		return nil
	}
	seen := make(map[opKey]int, len(c.Ops))
	deleted := make(map[RecordID]bool)
	touched := make(map[RecordID]bool, 1)
	for i := range c.Ops {
		o := &c.Ops[i]
		var k opKey
		switch o.Kind {
		case OpPut, OpResolve:
			k = opKey{o.Record, 1, o.Field, ""}
		case OpSetAdd, OpSetRemove:
			k = opKey{o.Record, 2, o.Field, string(o.Value)}
		case OpDelete:
			if deleted[o.Record] || touched[o.Record] {
				return invalid("op %d: a delete must be the only op on its record", i)
			}
			deleted[o.Record] = true
		}
		if o.Kind != OpDelete {
			if deleted[o.Record] {
				return invalid("op %d: a delete must be the only op on its record", i)
			}
			touched[o.Record] = true
		}
		if k.class != 0 {
			if j, dup := seen[k]; dup {
				return invalid("ops %d and %d write the same field", j, i)
			}
			seen[k] = i
		}
	}
	return nil
}

// OpView describes an operation for `history`.
type OpView struct {
	Kind   string   `json:"kind"`
	Record RecordID `json:"record"`
	Field  string   `json:"field,omitempty"`
	Value  []byte   `json:"value,omitempty"`
	Seen   []Dot    `json:"seen,omitempty"`
	Reason string   `json:"reason,omitempty"`
}

// Describe returns a view of the op for display.
func (o Op) Describe() OpView {
	return OpView{Kind: o.Kind.String(), Record: o.Record, Field: o.Field, Value: o.Value, Seen: o.Seen, Reason: o.Reason}
}

// NoteAdd builds an op that appends a note to a record. It carries no seen
// dots, so it does not revive a deleted record; use (*Record).AddNote when
// the record is at hand.
func NoteAdd(record RecordID, text string) Op {
	return Op{Kind: OpNoteAdd, Record: record, Value: []byte(text)}
}

// NewPut builds a Put on a record the author does not hold (no seen dots).
func NewPut(record RecordID, field string, value []byte) Op {
	return Op{Kind: OpPut, Record: record, Field: field, Value: value}
}

func sortDots(d []Dot) []Dot {
	slices.SortFunc(d, Dot.Compare)
	return slices.CompactFunc(d, func(a, b Dot) bool { return a == b })
}

// EncodedSizeHint returns an upper bound of the size of the change's
// encoding, cheaply (to cut batches into frames).
func (c *Change) EncodedSizeHint() int {
	n := 1 + 16 + 10 + 8 + 1 + 10
	for i := range c.Ops {
		o := &c.Ops[i]
		n += 1 + 10 + len(o.Record) + 10 + len(o.Field) + 10 + len(o.Value) + 10 + len(o.Reason) + 10 + len(o.Seen)*(16+10+10+5)
	}
	return n
}
