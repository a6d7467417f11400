package crdt

import (
	"slices"
	"sort"
	"strings"
	"unique"
	"unsafe"
)

type slotKind uint8

const (
	kindRegister slotKind = 1
	kindSet      slotKind = 2
)

// entry is one live dot of a set element, or a delete marker. hlc is the
// packed HLC of the dot's change.
type entry struct {
	dot Dot
	hlc uint64
}

func (e *entry) dotOf() Dot { return e.dot }

// regEntry is one live sibling of a register, with the register's name.
// A record keeps its registers as one slice of these, sorted by (name,
// dot): a register with k siblings is a run of k adjacent entries, and a
// register with one sibling (nearly all of them) costs one element and no
// allocation of its own.
//
// It is laid out compactly (40 bytes, was 80): a record holds one per
// field, and a space holds every record. The register's name and the
// dot's replica are one interned handle (8 bytes, shared by every entry of
// every record with that name and author: a space has a few fields and a
// few authors), and the value is a pointer and a 32-bit length (values are
// at most MaxValueBytes) rather than a slice header with a capacity. See
// docs/crdt.md, "Memory layout".
type regEntry struct {
	key  unique.Handle[regKey]
	seq  uint64
	hlc  uint64
	val  *byte // nil for a nil value; the record's own copy
	op   uint32
	vlen uint32
}

// regKey is what a sibling shares with others: its register's name and
// its author.
type regKey struct {
	name string
	rep  ReplicaID
}

func newRegEntry(key unique.Handle[regKey], d Dot, hlc uint64, value []byte) regEntry {
	var e regEntry
	e.set(key, d, hlc, value)
	return e
}

// set replaces the sibling's key, dot, HLC and value. key must name
// d.Replica.
func (e *regEntry) set(key unique.Handle[regKey], d Dot, hlc uint64, value []byte) {
	e.key, e.seq, e.op, e.hlc = key, d.Seq, d.Op, hlc
	e.val, e.vlen = unsafe.SliceData(value), uint32(len(value))
}

func (e *regEntry) dotOf() Dot { return Dot{Replica: e.key.Value().rep, Seq: e.seq, Op: e.op} }

// is reports whether the sibling's dot is d.
func (e *regEntry) is(d Dot) bool {
	return e.seq == d.Seq && e.op == d.Op && e.key.Value().rep == d.Replica
}

// sameName reports whether two siblings belong to one register.
func (e *regEntry) sameName(o *regEntry) bool {
	return e.key == o.key || e.key.Value().name == o.key.Value().name
}

// fieldName returns the register's name.
func (e *regEntry) fieldName() string { return e.key.Value().name }

// value returns the sibling's value (nil if it was written nil).
func (e *regEntry) value() []byte { return unsafe.Slice(e.val, e.vlen) }

// slot holds the live entries of one element of a set.
type slot struct {
	name    string
	elem    string
	entries []entry // sorted by dot, never empty in a stored record
}

type note struct {
	id      Dot
	hlc     uint64
	text    string
	removed bool
}

// Record is the materialized state of one record: its registers, sets,
// notes and delete markers, each as live dots. The zero value is not
// usable: call NewRecord.
//
// Registers are what nearly every record holds; sets, delete markers and
// notes are rare, so they live behind one pointer (nil while the record
// has none), which keeps a record's header at 48 bytes.
type Record struct {
	id   RecordID
	regs []regEntry   // sorted by (name, dot)
	x    *recordExtra // nil while there is no set element, delete marker or note
}

// recordExtra holds a record's rarer contents.
type recordExtra struct {
	sets  []slot  // sorted by (name, elem)
	dels  []entry // live delete markers, sorted by dot
	notes []note  // sorted by id
}

var emptyExtra recordExtra

// more returns the record's sets, delete markers and notes for reading
// (an empty, shared value if it has none: do not modify it).
func (r *Record) more() *recordExtra {
	if r.x == nil {
		return &emptyExtra
	}
	return r.x
}

// ext returns the record's sets, delete markers and notes for writing.
func (r *Record) ext() *recordExtra {
	if r.x == nil {
		r.x = &recordExtra{}
	}
	return r.x
}

// tidy drops the extra part once it holds nothing.
func (r *Record) tidy() {
	if x := r.x; x != nil && len(x.sets) == 0 && len(x.dels) == 0 && len(x.notes) == 0 {
		r.x = nil
	}
}

// makeKey interns a register name with an author.
func makeKey(name string, r ReplicaID) unique.Handle[regKey] {
	return unique.Make(regKey{name: name, rep: r})
}

// NewRecord returns an empty record.
func NewRecord(id RecordID) *Record { return &Record{id: id} }

// ID returns the record's ID.
func (r *Record) ID() RecordID { return r.id }

// findReg returns the run regs[lo:hi] of register name's siblings; if the
// register has none, lo == hi is where they would go.
func (r *Record) findReg(name string) (lo, hi int) {
	s := r.regs
	// Most records are small: a linear scan beats binary search, and an
	// equality pass is cheaper than ordering comparisons.
	if len(s) <= 16 {
		for i := range s {
			if s[i].fieldName() == name {
				hi = i + 1
				for hi < len(s) && s[hi].fieldName() == name {
					hi++
				}
				return i, hi
			}
		}
		i := 0
		for i < len(s) && s[i].fieldName() < name {
			i++
		}
		return i, i
	}
	lo = sort.Search(len(s), func(i int) bool { return s[i].fieldName() >= name })
	hi = lo
	for hi < len(s) && s[hi].fieldName() == name {
		hi++
	}
	return lo, hi
}

func cmpSetKey(s *slot, name, elem string) int {
	if c := strings.Compare(s.name, name); c != 0 {
		return c
	}
	return strings.Compare(s.elem, elem)
}

func (r *Record) findSet(name, elem string) (int, bool) {
	sets := r.more().sets
	i := sort.Search(len(sets), func(i int) bool { return cmpSetKey(&sets[i], name, elem) >= 0 })
	return i, i < len(sets) && cmpSetKey(&sets[i], name, elem) == 0
}

// findDot finds d in a list sorted by dot.
func findDot[E any, P interface {
	*E
	dotOf() Dot
}](es []E, d Dot) (int, bool) {
	if len(es) <= 8 {
		for i := range es {
			c := P(&es[i]).dotOf().Compare(d)
			if c == 0 {
				return i, true
			}
			if c > 0 {
				return i, false
			}
		}
		return len(es), false
	}
	return slices.BinarySearchFunc(es, d, func(e E, d Dot) int { return P(&e).dotOf().Compare(d) })
}

func findEntry(es []entry, d Dot) (int, bool) { return findDot(es, d) }

func insertEntry(es []entry, e entry) []entry {
	i, found := findEntry(es, e.dot)
	if found {
		return es
	}
	if i == len(es) {
		return append(es, e)
	}
	return slices.Insert(es, i, e)
}

// insertRegAt inserts e at i. A full slice grows by an eighth (at least
// one), not twice as append would: a record's registers gain a sibling
// rarely (a conflict), and most records never do.
func insertRegAt(regs []regEntry, i int, e regEntry) []regEntry {
	if len(regs) == cap(regs) {
		n := make([]regEntry, len(regs), len(regs)+1+len(regs)/8)
		copy(n, regs)
		regs = n
	}
	return slices.Insert(regs, i, e)
}

func (r *Record) addSetEntry(name, elem string, e entry) {
	i, found := r.findSet(name, elem)
	x := r.ext()
	if !found {
		x.sets = slices.Insert(x.sets, i, slot{name: name, elem: elem, entries: []entry{e}})
		return
	}
	x.sets[i].entries = insertEntry(x.sets[i].entries, e)
}

// removeFromSet removes dot d from set slot i, dropping the slot if it
// empties.
func (r *Record) removeFromSet(i int, d Dot) bool {
	x := r.x
	es := x.sets[i].entries
	j, found := findEntry(es, d)
	if !found {
		return false
	}
	if len(es) == 1 {
		x.sets = slices.Delete(x.sets, i, i+1)
		r.tidy()
		return true
	}
	x.sets[i].entries = slices.Delete(es, j, j+1)
	return true
}

// removeFromReg removes sibling d from register name.
func (r *Record) removeFromReg(name string, d Dot) bool {
	lo, hi := r.findReg(name)
	j, found := findDot(r.regs[lo:hi], d)
	if !found {
		return false
	}
	r.regs = slices.Delete(r.regs, lo+j, lo+j+1)
	return true
}

// removeDot removes the live dot d wherever it is in the record: a register
// sibling, a set element's dot, a delete marker, or a note (tombstoned).
// The op that saw d gives a hint where to look first.
func (r *Record) removeDot(d Dot, hint *Op) {
	switch hint.Kind {
	case OpPut, OpResolve:
		if r.removeFromReg(hint.Field, d) {
			return
		}
	case OpSetAdd, OpSetRemove:
		if i, ok := r.findSet(hint.Field, string(hint.Value)); ok && r.removeFromSet(i, d) {
			return
		}
	}
	if j, found := findEntry(r.more().dels, d); found {
		r.x.dels = slices.Delete(r.x.dels, j, j+1)
		r.tidy()
		return
	}
	if r.tombstone(d) {
		return
	}
	for i := range r.regs {
		if r.regs[i].is(d) {
			r.regs = slices.Delete(r.regs, i, i+1)
			return
		}
	}
	for i := range r.more().sets {
		if r.removeFromSet(i, d) {
			return
		}
	}
}

func (r *Record) findNote(id Dot) (int, bool) {
	return slices.BinarySearchFunc(r.more().notes, id, func(n note, d Dot) int { return n.id.Compare(d) })
}

func (r *Record) tombstone(id Dot) bool {
	i, found := r.findNote(id)
	if !found {
		return false
	}
	r.x.notes[i].removed = true
	r.x.notes[i].text = ""
	return true
}

func (r *Record) addNote(n note) {
	i, found := r.findNote(n.id)
	if found {
		return
	}
	if n.removed {
		n.text = ""
	}
	x := r.ext()
	x.notes = slices.Insert(x.notes, i, n)
}

// Clone returns a deep copy of r (values are shared: they are immutable).
func (r *Record) Clone() *Record {
	c := &Record{id: r.id, regs: slices.Clone(r.regs)}
	if r.x != nil {
		x := &recordExtra{dels: slices.Clone(r.x.dels), notes: slices.Clone(r.x.notes)}
		if len(r.x.sets) > 0 {
			x.sets = make([]slot, len(r.x.sets))
			for i, s := range r.x.sets {
				s.entries = slices.Clone(s.entries)
				x.sets[i] = s
			}
		}
		c.x = x
		c.tidy()
	}
	return c
}

// ---- building ops ----

func (r *Record) registerDots(field string) []regEntry {
	if r == nil {
		return nil
	}
	lo, hi := r.findReg(field)
	return r.regs[lo:hi]
}

func (r *Record) recordID() RecordID {
	if r == nil {
		return ""
	}
	return r.id
}

func (r *Record) delEntries() []entry {
	if r == nil {
		return nil
	}
	return r.more().dels
}

func seenOf[E any, P interface {
	*E
	dotOf() Dot
}](a []E, b []entry) []Dot {
	if len(a)+len(b) == 0 {
		return nil
	}
	out := make([]Dot, 0, len(a)+len(b))
	for i := range a {
		out = append(out, P(&a[i]).dotOf())
	}
	for i := range b {
		out = append(out, b[i].dot)
	}
	if len(a) > 0 && len(b) > 0 {
		out = sortDots(out)
	}
	return out
}

// Put builds an op writing value to the register field. It overwrites every
// sibling the author holds and the record's live delete markers, so a Put
// on a record that this replica sees deleted revives it (with only the
// fields written since). r may be nil for a record not held: then the
// returned op has an empty Record and the caller sets it (or use NewPut).
func (r *Record) Put(field string, value []byte) Op {
	return Op{Kind: OpPut, Record: r.recordID(), Field: field, Value: value,
		Seen: seenOf(r.registerDots(field), r.delEntries())}
}

// Delete builds an op deleting the record: it overwrites every live dot the
// author holds (register siblings, set elements, notes, older delete
// markers) and adds a delete marker. Edits it did not see survive, and the
// record then shows as deleted with a conflict.
func (r *Record) Delete() Op {
	var seen []Dot
	for i := range r.regs {
		seen = append(seen, r.regs[i].dotOf())
	}
	x := r.more()
	for _, s := range x.sets {
		for _, e := range s.entries {
			seen = append(seen, e.dot)
		}
	}
	for _, e := range x.dels {
		seen = append(seen, e.dot)
	}
	for _, n := range x.notes {
		if !n.removed {
			seen = append(seen, n.id)
		}
	}
	return Op{Kind: OpDelete, Record: r.id, Seen: sortDots(seen)}
}

func (r *Record) setDots(field string, elem []byte) []entry {
	if r == nil {
		return nil
	}
	if i, ok := r.findSet(field, string(elem)); ok {
		return r.x.sets[i].entries
	}
	return nil
}

// SetAdd builds an op adding elem to the set field (add wins over a
// concurrent remove). Like Put, it revives a deleted record.
func (r *Record) SetAdd(field string, elem []byte) Op {
	return Op{Kind: OpSetAdd, Record: r.recordID(), Field: field, Value: elem,
		Seen: seenOf(r.setDots(field, elem), r.delEntries())}
}

// SetRemove builds an op removing elem from the set field: it removes the
// adds the author has seen; a concurrent add survives.
func (r *Record) SetRemove(field string, elem []byte) Op {
	return Op{Kind: OpSetRemove, Record: r.recordID(), Field: field, Value: elem,
		Seen: seenOf[entry](r.setDots(field, elem), nil)}
}

// AddNote builds a NoteAdd that also overwrites the record's delete
// markers, reviving a deleted record (NoteAdd, which needs no record, does
// not).
func (r *Record) AddNote(text string) Op {
	o := NoteAdd(r.recordID(), text)
	o.Seen = seenOf[entry](r.delEntries(), nil)
	return o
}

// NoteRemove builds an op tombstoning a note: its text is dropped, its ID,
// author and time are kept. ErrNotSibling if the record has no such note.
func (r *Record) NoteRemove(id NoteID) (Op, error) {
	if _, ok := r.findNote(id); !ok {
		return Op{}, ErrNotSibling
	}
	return Op{Kind: OpNoteRemove, Record: r.id, Seen: []Dot{id}}, nil
}

// Resolve builds an op that replaces exactly the named siblings of register
// field with value, recording reason. Siblings not named (for example one
// that arrived after the user looked) stay, and the field stays in
// conflict. ErrNotSibling if a named dot is not a live sibling of field.
func (r *Record) Resolve(field string, dots []Dot, value []byte, reason string) (Op, error) {
	if len(dots) == 0 {
		return Op{}, ErrNotSibling
	}
	live := r.registerDots(field)
	for _, d := range dots {
		if _, ok := findDot(live, d); !ok {
			return Op{}, ErrNotSibling
		}
	}
	return Op{Kind: OpResolve, Record: r.id, Field: field, Value: value,
		Seen: sortDots(slices.Clone(dots)), Reason: reason}, nil
}

// ---- reading ----

// Sibling is one live value of a register. Its author is Dot.Replica.
// Value is shared with the record: do not modify it.
type Sibling struct {
	Value []byte
	Dot   Dot
	HLC   Timestamp
}

// FieldView is a register with its live siblings, ordered HLC descending,
// then replica bytes descending (then seq, op index descending): index 0 is
// the display winner. In Conflicts, the delete-vs-edit conflict is a
// FieldView with Delete true, Name "" and the live delete markers as
// siblings (nil values).
type FieldView struct {
	Name     string
	Siblings []Sibling
	Conflict bool
	Delete   bool
}

// Value returns the display winner's value (nil if there is none).
func (f FieldView) Value() []byte {
	if len(f.Siblings) == 0 {
		return nil
	}
	return f.Siblings[0].Value
}

// SetView is a set with its live elements, sorted by bytes.
type SetView struct {
	Name     string
	Elements [][]byte
}

// NoteView is one note. A removed note has no text.
type NoteView struct {
	ID      NoteID
	Author  ReplicaID
	HLC     Timestamp
	Text    string
	Removed bool
}

func siblings(es []entry) []Sibling {
	out := make([]Sibling, len(es))
	for i, e := range es {
		out[i] = Sibling{Dot: e.dot, HLC: UnpackTimestamp(e.hlc)}
	}
	return sortSiblings(out)
}

func regSiblings(es []regEntry) []Sibling {
	out := make([]Sibling, len(es))
	for i := range es {
		e := &es[i]
		out[i] = Sibling{Value: e.value(), Dot: e.dotOf(), HLC: UnpackTimestamp(e.hlc)}
	}
	return sortSiblings(out)
}

func sortSiblings(out []Sibling) []Sibling {
	if len(out) < 2 {
		return out
	}
	slices.SortFunc(out, func(a, b Sibling) int {
		if c := b.HLC.Compare(a.HLC); c != 0 {
			return c
		}
		return b.Dot.Compare(a.Dot)
	})
	return out
}

// Register returns one register's view; ok is false if it has no live value.
func (r *Record) Register(name string) (FieldView, bool) {
	lo, hi := r.findReg(name)
	if lo == hi {
		return FieldView{}, false
	}
	return FieldView{Name: name, Siblings: regSiblings(r.regs[lo:hi]), Conflict: hi-lo > 1}, true
}

// regRuns calls fn for each register's run of siblings, in name order.
func (r *Record) regRuns(fn func(run []regEntry)) {
	for lo := 0; lo < len(r.regs); {
		hi := lo + 1
		for hi < len(r.regs) && r.regs[hi].sameName(&r.regs[lo]) {
			hi++
		}
		fn(r.regs[lo:hi])
		lo = hi
	}
}

// Registers returns the registers with a live value, sorted by name.
func (r *Record) Registers() []FieldView {
	var out []FieldView
	r.regRuns(func(run []regEntry) {
		out = append(out, FieldView{Name: run[0].fieldName(), Siblings: regSiblings(run), Conflict: len(run) > 1})
	})
	return out
}

// Sets returns the sets with at least one element, sorted by name.
func (r *Record) Sets() []SetView {
	var out []SetView
	for _, s := range r.more().sets {
		if len(out) == 0 || out[len(out)-1].Name != s.name {
			out = append(out, SetView{Name: s.name})
		}
		v := &out[len(out)-1]
		v.Elements = append(v.Elements, []byte(s.elem))
	}
	return out
}

// Notes returns the notes (removed ones as tombstones) in (HLC, ID) order.
func (r *Record) Notes() []NoteView {
	notes := r.more().notes
	out := make([]NoteView, 0, len(notes))
	for _, n := range notes {
		out = append(out, NoteView{ID: n.id, Author: n.id.Replica, HLC: UnpackTimestamp(n.hlc), Text: n.text, Removed: n.removed})
	}
	slices.SortFunc(out, func(a, b NoteView) int {
		if c := a.HLC.Compare(b.HLC); c != 0 {
			return c
		}
		return a.ID.Compare(b.ID)
	})
	return out
}

// hasContent reports whether any register, set element or unremoved note
// is live.
func (r *Record) hasContent() bool {
	x := r.more()
	if len(r.regs) > 0 || len(x.sets) > 0 {
		return true
	}
	for _, n := range x.notes {
		if !n.removed {
			return true
		}
	}
	return false
}

// Deleted reports whether the record is deleted (a delete marker is live)
// and whether that delete is in conflict: some edit that no live delete saw
// survives alongside it.
func (r *Record) Deleted() (deleted bool, conflict bool) {
	if len(r.more().dels) == 0 {
		return false, false
	}
	return true, r.hasContent()
}

// Empty reports whether the record holds nothing live: no register, set
// element, note (live or tombstone) or delete marker.
func (r *Record) Empty() bool {
	x := r.more()
	return len(r.regs) == 0 && len(x.sets) == 0 && len(x.dels) == 0 && len(x.notes) == 0
}

// Conflicts returns the conflicted registers, sorted by name, preceded, if
// the record is deleted with a conflict, by the delete pseudo-field (Delete
// true, Name "", siblings = the live delete markers). Resolve a delete
// conflict with a Put (revives) or a new Delete (deletes what it saw).
func (r *Record) Conflicts() []FieldView {
	var out []FieldView
	if del, conflict := r.Deleted(); del && conflict {
		out = append(out, FieldView{Delete: true, Siblings: siblings(r.x.dels), Conflict: true})
	}
	r.regRuns(func(run []regEntry) {
		if len(run) > 1 {
			out = append(out, FieldView{Name: run[0].fieldName(), Siblings: regSiblings(run), Conflict: true})
		}
	})
	return out
}

// HoldsValue reports whether the record still holds a value the op with
// dot d wrote: a live register sibling (a put or resolve) or a note not
// removed. An op whose value it does not hold is dead for good: only an op
// that saw its dot removes it, and no later op brings a dot back, so every
// state that contains the remover lacks it too. The agent prunes such
// values (docs/design.md §7, "Bounded storage").
func (r *Record) HoldsValue(d Dot) bool {
	for i := range r.regs {
		if r.regs[i].is(d) {
			return true
		}
	}
	for _, n := range r.more().notes {
		if n.id == d {
			return !n.removed
		}
	}
	return false
}

// FillValue gives the op with dot d its value back in a record that applied
// it without one (the copy of its change it applied had the values cut,
// docs/crdt.md "Values apart"): the register sibling with dot d, or the
// note d if not removed, takes value, as if the whole op had been applied.
// It changes nothing when the record does not hold d (the value is dead:
// nothing to give back) or already holds a value for it, and reports
// whether it changed the record.
func (r *Record) FillValue(d Dot, value []byte) bool {
	if len(value) == 0 {
		return false
	}
	for i := range r.regs {
		if e := &r.regs[i]; e.is(d) {
			if e.vlen != 0 {
				return false
			}
			e.set(e.key, d, e.hlc, ownValue(value))
			return true
		}
	}
	if r.x == nil {
		return false
	}
	for i := range r.x.notes {
		if n := &r.x.notes[i]; n.id == d {
			if n.removed || n.text != "" {
				return false
			}
			n.text = string(value)
			return true
		}
	}
	return false
}
