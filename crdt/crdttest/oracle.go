package crdttest

import (
	"fmt"
	"slices"
	"strings"

	"fieldsync/crdt"
)

// Expect is what a record must show.
type Expect struct {
	Registers map[string]map[crdt.Dot]string // field -> live sibling dots -> value
	Sets      map[string]map[string]bool     // set -> live elements
	Notes     map[crdt.Dot]NoteExpect
	Deleted   bool
	Conflict  bool // deleted with a surviving concurrent edit
}

// NoteExpect is a note's expected state.
type NoteExpect struct {
	Text    string
	Removed bool
}

type wop struct {
	ev  *Event
	key Key
	op  *crdt.Op
	dot crdt.Dot
}

// Oracle computes, from the events held (known) and their authors'
// knowledge, what every record must show. It does not use crdt's merge
// code, nor the Seen dots of ops other than the user's explicit choice of
// Resolve (which siblings) and NoteRemove (which note).
func Oracle(events []*Event, known map[Key]bool) map[crdt.RecordID]*Expect {
	var ops []wop
	for _, ev := range events {
		k := Key{ev.Change.Author, ev.Change.Seq}
		if !known[k] {
			continue
		}
		for i := range ev.Change.Ops {
			ops = append(ops, wop{ev, k, &ev.Change.Ops[i], crdt.Dot{Replica: k.Author, Seq: k.Seq, Op: uint32(i)}})
		}
	}
	// killedBy reports whether op k overwrites op w (w's change is in k's
	// author's knowledge, and k is a write that overwrites w's kind).
	killedBy := func(w, k wop) bool {
		if w.op.Record != k.op.Record || !k.ev.Known[w.key] {
			return false
		}
		if k.op.Kind == crdt.OpDelete {
			return true // a delete overwrites everything of the record it saw
		}
		switch w.op.Kind {
		case crdt.OpPut, crdt.OpResolve:
			switch k.op.Kind {
			case crdt.OpPut:
				return k.op.Field == w.op.Field
			case crdt.OpResolve:
				return k.op.Field == w.op.Field && slices.Contains(k.op.Seen, w.dot)
			}
		case crdt.OpSetAdd:
			return (k.op.Kind == crdt.OpSetAdd || k.op.Kind == crdt.OpSetRemove) &&
				k.op.Field == w.op.Field && string(k.op.Value) == string(w.op.Value)
		case crdt.OpDelete:
			// Any adding edit revives: Put, SetAdd, NoteAdd (not Resolve,
			// which names exactly what it replaces).
			return k.op.Kind == crdt.OpPut || k.op.Kind == crdt.OpSetAdd || k.op.Kind == crdt.OpNoteAdd
		case crdt.OpNoteAdd:
			return k.op.Kind == crdt.OpNoteRemove && slices.Contains(k.op.Seen, w.dot)
		}
		return false
	}
	live := func(w wop) bool {
		for _, k := range ops {
			if killedBy(w, k) {
				return false
			}
		}
		return true
	}
	out := map[crdt.RecordID]*Expect{}
	get := func(id crdt.RecordID) *Expect {
		e := out[id]
		if e == nil {
			e = &Expect{Registers: map[string]map[crdt.Dot]string{}, Sets: map[string]map[string]bool{}, Notes: map[crdt.Dot]NoteExpect{}}
			out[id] = e
		}
		return e
	}
	for _, w := range ops {
		e := get(w.op.Record)
		switch w.op.Kind {
		case crdt.OpPut, crdt.OpResolve:
			if live(w) {
				if e.Registers[w.op.Field] == nil {
					e.Registers[w.op.Field] = map[crdt.Dot]string{}
				}
				e.Registers[w.op.Field][w.dot] = string(w.op.Value)
			}
		case crdt.OpSetAdd:
			if live(w) {
				if e.Sets[w.op.Field] == nil {
					e.Sets[w.op.Field] = map[string]bool{}
				}
				e.Sets[w.op.Field][string(w.op.Value)] = true
			}
		case crdt.OpDelete:
			if live(w) {
				e.Deleted = true
			}
		case crdt.OpNoteAdd:
			n := NoteExpect{Text: string(w.op.Value)}
			if !live(w) {
				n = NoteExpect{Removed: true}
			}
			e.Notes[w.dot] = n
		}
	}
	for _, e := range out {
		content := len(e.Registers) > 0 || len(e.Sets) > 0
		for _, n := range e.Notes {
			content = content || !n.Removed
		}
		e.Conflict = e.Deleted && content
	}
	return out
}

// Observe converts a record's views into an Expect.
func Observe(r *crdt.Record) *Expect {
	e := &Expect{Registers: map[string]map[crdt.Dot]string{}, Sets: map[string]map[string]bool{}, Notes: map[crdt.Dot]NoteExpect{}}
	for _, f := range r.Registers() {
		m := map[crdt.Dot]string{}
		for _, s := range f.Siblings {
			m[s.Dot] = string(s.Value)
		}
		e.Registers[f.Name] = m
	}
	for _, s := range r.Sets() {
		m := map[string]bool{}
		for _, el := range s.Elements {
			m[string(el)] = true
		}
		e.Sets[s.Name] = m
	}
	for _, n := range r.Notes() {
		e.Notes[n.ID] = NoteExpect{Text: n.Text, Removed: n.Removed}
	}
	e.Deleted, e.Conflict = r.Deleted()
	return e
}

// String renders an Expect canonically, for comparisons and messages.
func (e *Expect) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "deleted=%v conflict=%v", e.Deleted, e.Conflict)
	for _, f := range sortedKeys(e.Registers) {
		fmt.Fprintf(&b, " reg %s=[", f)
		var vs []string
		for d, v := range e.Registers[f] {
			vs = append(vs, fmt.Sprintf("%d:%d.%d=%q", d.Replica[0], d.Seq, d.Op, v))
		}
		slices.Sort(vs)
		b.WriteString(strings.Join(vs, " ") + "]")
	}
	for _, f := range sortedKeys(e.Sets) {
		fmt.Fprintf(&b, " set %s=%v", f, sortedKeys(e.Sets[f]))
	}
	var ns []string
	for d, n := range e.Notes {
		ns = append(ns, fmt.Sprintf("%d:%d.%d=%q/%v", d.Replica[0], d.Seq, d.Op, n.Text, n.Removed))
	}
	slices.Sort(ns)
	fmt.Fprintf(&b, " notes=%v", ns)
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// CheckOracle compares replica i's state with the oracle. Only meaningful
// when Closed(i).
func (s *Sim) CheckOracle(i int) error {
	r := s.Replicas[i]
	want := Oracle(s.History, r.Known)
	if len(want) != len(r.Space.Records) {
		return fmt.Errorf("replica %d: %d records, oracle %d", i, len(r.Space.Records), len(want))
	}
	for id, w := range want {
		rec := r.Space.Records[id]
		if rec == nil {
			return fmt.Errorf("replica %d: record %q missing", i, id)
		}
		if got := Observe(rec); got.String() != w.String() {
			return fmt.Errorf("replica %d record %q (known %v):\n got  %s\n want %s", i, id, Keys(r.Known), got, w)
		}
	}
	return nil
}
