package crdttest

import (
	"bytes"
	"fmt"
	"slices"

	"fieldsync/crdt"

	"pgregory.net/rapid"
)

// Key identifies a change.
type Key struct {
	Author crdt.ReplicaID
	Seq    uint64
}

// Event is one change of the history with its author's knowledge.
type Event struct {
	Change *crdt.Change
	Known  map[Key]bool // changes the author had applied when writing it
}

// Replica is one simulated replica.
type Replica struct {
	ID         crdt.ReplicaID
	Space      *crdt.Space
	Clock      crdt.Clock
	Seq        uint64
	Known      map[Key]bool
	PhysOffset int64 // ms added to the simulated physical time
	// Skewed lists the (author, drift) reports of Clock.Observe.
	Skewed map[crdt.ReplicaID]int64
}

// Config parameterises a Sim.
type Config struct {
	Replicas    int
	Records     []crdt.RecordID
	Fields      []string
	Elems       []string
	PhysOffsets []int64 // per replica, ms; missing = 0
	MaxDrift    int64   // Clock.MaxDriftMillis
	Values      []string
}

// DefaultConfig has a small universe so that races are frequent.
func DefaultConfig(replicas int) Config {
	return Config{
		Replicas: replicas,
		Records:  []crdt.RecordID{"r1", "سجل٢"},
		Fields:   []string{"name", "village"},
		Elems:    []string{"e1", "هاتف", "тел"},
		Values:   []string{"أمينة", "Иван Петров", "Amina حلب market", "x", ""},
	}
}

// Counts are the interesting situations a history produced.
type Counts struct {
	ConcurrentWrites int // pairs of concurrent register writes to one field
	DeleteVsEdit     int // pairs (delete, edit) of one record, concurrent
	AddRemoveRace    int // pairs (set add, set remove) of one element, concurrent
	Resolves         int // resolve ops
	Merges           int // whole-state merges performed
	Changes          int
}

// Sim simulates replicas.
type Sim struct {
	Cfg      Config
	Replicas []*Replica
	History  []*Event
	byKey    map[Key]*Event
	Now      int64 // simulated physical time, ms
	merges   int
}

// NewSim returns a simulator with cfg.Replicas empty replicas. Replica i
// has the ID with first byte i+1.
func NewSim(cfg Config) *Sim {
	s := &Sim{Cfg: cfg, byKey: map[Key]*Event{}, Now: 1_780_000_000_000}
	for i := 0; i < cfg.Replicas; i++ {
		var id crdt.ReplicaID
		id[0] = byte(i + 1)
		id[15] = 0xa5
		r := &Replica{ID: id, Space: crdt.NewSpace(), Known: map[Key]bool{}, Skewed: map[crdt.ReplicaID]int64{}}
		r.Clock.MaxDriftMillis = cfg.MaxDrift
		if i < len(cfg.PhysOffsets) {
			r.PhysOffset = cfg.PhysOffsets[i]
		}
		s.Replicas = append(s.Replicas, r)
	}
	return s
}

// Step performs one random action: a write, a delivery (possibly a
// duplicate, possibly out of order), a whole-state merge, or an
// encode/decode round trip of one replica's state.
func (s *Sim) Step(t *rapid.T) {
	s.Now += rapid.Int64Range(0, 5).Draw(t, "tick")
	i := rapid.IntRange(0, len(s.Replicas)-1).Draw(t, "replica")
	switch a := rapid.IntRange(0, 19).Draw(t, "action"); {
	case a < 8 || len(s.History) == 0:
		s.Write(t, i)
	case a < 17:
		ev := s.History[rapid.IntRange(0, len(s.History)-1).Draw(t, "event")]
		if err := s.Deliver(i, ev.Change); err != nil {
			t.Fatalf("deliver: %v", err)
		}
	case a < 19:
		j := rapid.IntRange(0, len(s.Replicas)-1).Draw(t, "peer")
		s.MergeFrom(i, j)
	default:
		if err := s.RoundTrip(i); err != nil {
			t.Fatalf("round trip: %v", err)
		}
	}
}

func (s *Sim) phys(r *Replica) int64 { return s.Now + r.PhysOffset }

// Deliver applies a change to replica i (through the encoded form).
func (s *Sim) Deliver(i int, ch *crdt.Change) error {
	r := s.Replicas[i]
	b, err := ch.MarshalBinary()
	if err != nil {
		return err
	}
	dec, err := crdt.UnmarshalChange(b)
	if err != nil {
		return err
	}
	if ch.Author != r.ID {
		if drift, skewed := r.Clock.Observe(dec.HLC, s.phys(r)); skewed {
			r.Skewed[ch.Author] = drift
		}
	}
	// Alternate between the agent's path and the in-memory one.
	if ch.Seq%2 == 0 {
		recs, err := crdt.ApplyChange(r.Space.Context, func(id crdt.RecordID) (*crdt.Record, error) {
			rec := r.Space.Records[id]
			if rec == nil {
				return nil, nil
			}
			b, _ := rec.MarshalBinary()
			return crdt.UnmarshalRecord(b)
		}, dec)
		if err != nil {
			return err
		}
		for id, rec := range recs {
			r.Space.Records[id] = rec
		}
	} else if err := r.Space.Apply(dec); err != nil {
		return err
	}
	r.Known[Key{ch.Author, ch.Seq}] = true
	return nil
}

// MergeFrom replaces replica i's state by Merge(i, j).
func (s *Sim) MergeFrom(i, j int) {
	a, b := s.Replicas[i], s.Replicas[j]
	a.Space = crdt.Merge(a.Space, b.Space)
	for k := range b.Known {
		a.Known[k] = true
	}
	s.merges++
}

// RoundTrip encodes and decodes replica i's state, checking stability.
func (s *Sim) RoundTrip(i int) error {
	r := s.Replicas[i]
	b, err := r.Space.MarshalBinary()
	if err != nil {
		return err
	}
	sp, err := crdt.UnmarshalSpace(b)
	if err != nil {
		return err
	}
	b2, err := sp.MarshalBinary()
	if err != nil {
		return err
	}
	if !bytes.Equal(b, b2) {
		return fmt.Errorf("state encoding not stable")
	}
	r.Space = sp
	return nil
}

// Write makes replica i write a change of 1–3 random ops, built with the
// crdt builders from its current state, and applies it locally.
func (s *Sim) Write(t *rapid.T, i int) {
	r := s.Replicas[i]
	cfg := s.Cfg
	n := rapid.IntRange(1, 3).Draw(t, "nops")
	used := map[string]bool{}
	var ops []crdt.Op
	for k := 0; k < n; k++ {
		rid := cfg.Records[rapid.IntRange(0, len(cfg.Records)-1).Draw(t, "record")]
		rec := r.Space.Records[rid]
		if used["del/"+string(rid)] {
			continue
		}
		field := cfg.Fields[rapid.IntRange(0, len(cfg.Fields)-1).Draw(t, "field")]
		elem := cfg.Elems[rapid.IntRange(0, len(cfg.Elems)-1).Draw(t, "elem")]
		val := cfg.Values[rapid.IntRange(0, len(cfg.Values)-1).Draw(t, "value")]
		val = fmt.Sprintf("%s·%d.%d", val, i, r.Seq+1)
		var op crdt.Op
		var key string
		switch kind := rapid.IntRange(0, 9).Draw(t, "kind"); kind {
		case 0, 1, 2:
			key = "reg/" + string(rid) + "/" + field
			if rec == nil {
				op = crdt.NewPut(rid, field, []byte(val))
			} else {
				op = rec.Put(field, []byte(val))
			}
		case 3:
			key = "set/" + string(rid) + "/" + field + "/" + elem
			if rec == nil {
				op = crdt.Op{Kind: crdt.OpSetAdd, Record: rid, Field: field, Value: []byte(elem)}
			} else {
				op = rec.SetAdd(field, []byte(elem))
			}
		case 4:
			if rec == nil {
				continue
			}
			key = "set/" + string(rid) + "/" + field + "/" + elem
			op = rec.SetRemove(field, []byte(elem))
		case 5:
			key = "note/" + val
			if rec == nil {
				op = crdt.NoteAdd(rid, val)
			} else {
				op = rec.AddNote(val)
			}
		case 6:
			if rec == nil {
				continue
			}
			notes := rec.Notes()
			if len(notes) == 0 {
				continue
			}
			nv := notes[rapid.IntRange(0, len(notes)-1).Draw(t, "note")]
			var err error
			if op, err = rec.NoteRemove(nv.ID); err != nil {
				t.Fatalf("NoteRemove: %v", err)
			}
			key = "noterm/" + nv.ID.String()
		case 7:
			if rec == nil {
				continue
			}
			key = "del/" + string(rid)
			if used["any/"+string(rid)] {
				continue
			}
			op = rec.Delete()
		default: // resolve, if some field is in conflict
			if rec == nil {
				continue
			}
			cs := rec.Conflicts()
			var fv *crdt.FieldView
			for ci := range cs {
				if !cs[ci].Delete {
					fv = &cs[ci]
					break
				}
			}
			if fv == nil {
				continue
			}
			key = "reg/" + string(rid) + "/" + fv.Name
			var dots []crdt.Dot
			for _, sib := range fv.Siblings {
				if rapid.Bool().Draw(t, "pick") {
					dots = append(dots, sib.Dot)
				}
			}
			if len(dots) == 0 {
				dots = append(dots, fv.Siblings[0].Dot)
			}
			var err error
			op, err = rec.Resolve(fv.Name, dots, []byte(val), "reason "+val)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
		}
		if used[key] {
			continue
		}
		used[key] = true
		used["any/"+string(rid)] = true
		ops = append(ops, op)
	}
	if len(ops) == 0 { // every draw was skipped: write a plain Put
		rid := cfg.Records[0]
		val := []byte(fmt.Sprintf("fallback·%d.%d", i, r.Seq+1))
		if rec := r.Space.Records[rid]; rec != nil {
			ops = append(ops, rec.Put(cfg.Fields[0], val))
		} else {
			ops = append(ops, crdt.NewPut(rid, cfg.Fields[0], val))
		}
	}
	r.Seq++
	ch := &crdt.Change{Author: r.ID, Seq: r.Seq, HLC: r.Clock.Now(s.phys(r)), Ops: ops}
	known := make(map[Key]bool, len(r.Known))
	for k := range r.Known {
		known[k] = true
	}
	ev := &Event{Change: ch, Known: known}
	s.History = append(s.History, ev)
	s.byKey[Key{r.ID, r.Seq}] = ev
	if err := s.Deliver(i, ch); err != nil {
		t.Fatalf("apply own change: %v", err)
	}
}

// DeliverAll delivers every change to every replica in a random order
// (with some duplicates).
func (s *Sim) DeliverAll(t *rapid.T) {
	for i := range s.Replicas {
		order := rapid.Permutation(s.History).Draw(t, "order")
		for k, ev := range order {
			if err := s.Deliver(i, ev.Change); err != nil {
				t.Fatalf("deliver: %v", err)
			}
			if k%3 == 0 {
				if err := s.Deliver(i, ev.Change); err != nil {
					t.Fatalf("deliver duplicate: %v", err)
				}
			}
		}
	}
}

// Closed reports whether replica i's held changes are closed under the
// knowledge of their authors (the oracle applies to such states).
func (s *Sim) Closed(i int) bool {
	known := s.Replicas[i].Known
	for k := range known {
		for k2 := range s.byKey[k].Known {
			if !known[k2] {
				return false
			}
		}
	}
	return true
}

func concurrent(a, b *Event) bool {
	ka := Key{a.Change.Author, a.Change.Seq}
	kb := Key{b.Change.Author, b.Change.Seq}
	return ka != kb && !a.Known[kb] && !b.Known[ka]
}

func isEdit(k crdt.OpKind) bool {
	return k == crdt.OpPut || k == crdt.OpSetAdd || k == crdt.OpNoteAdd || k == crdt.OpResolve
}

// Counts returns what the history produced.
func (s *Sim) Counts() Counts {
	c := Counts{Merges: s.merges, Changes: len(s.History)}
	type opRef struct {
		ev *Event
		op *crdt.Op
	}
	var all []opRef
	for _, ev := range s.History {
		for k := range ev.Change.Ops {
			all = append(all, opRef{ev, &ev.Change.Ops[k]})
			if ev.Change.Ops[k].Kind == crdt.OpResolve {
				c.Resolves++
			}
		}
	}
	for x := 0; x < len(all); x++ {
		for y := x + 1; y < len(all); y++ {
			a, b := all[x], all[y]
			if a.op.Record != b.op.Record || !concurrent(a.ev, b.ev) {
				continue
			}
			ka, kb := a.op.Kind, b.op.Kind
			reg := func(k crdt.OpKind) bool { return k == crdt.OpPut || k == crdt.OpResolve }
			switch {
			case reg(ka) && reg(kb) && a.op.Field == b.op.Field:
				c.ConcurrentWrites++
			case ka == crdt.OpDelete && isEdit(kb) || kb == crdt.OpDelete && isEdit(ka):
				c.DeleteVsEdit++
			case (ka == crdt.OpSetAdd && kb == crdt.OpSetRemove || ka == crdt.OpSetRemove && kb == crdt.OpSetAdd) &&
				a.op.Field == b.op.Field && bytes.Equal(a.op.Value, b.op.Value):
				c.AddRemoveRace++
			}
		}
	}
	return c
}

// Keys returns the keys of a known set, sorted (for messages).
func Keys(m map[Key]bool) []string {
	var out []string
	for k := range m {
		out = append(out, fmt.Sprintf("%d:%d", k.Author[0], k.Seq))
	}
	slices.Sort(out)
	return out
}
