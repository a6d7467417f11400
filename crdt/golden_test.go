package crdt_test

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"math/rand/v2"
	"slices"
	"testing"

	"fieldsync/crdt"
)

// goldenHistory plays a fixed pseudo-random history on three replicas
// (every op kind, conflicts, deletes, notes, sets, out-of-order delivery
// and merges) and hashes every encoding it can make of the result, with
// the views the replicas show. The hash was taken with the layout before
// the compact one (docs/crdt.md, "Memory layout"): a change of in-memory
// layout must leave every byte and every view as it was.
func goldenHistory(t *testing.T) (string, []*crdt.Change) {
	t.Helper()
	rng := rand.New(rand.NewPCG(15, 3))
	type replica struct {
		id    crdt.ReplicaID
		space *crdt.Space
		clock crdt.Clock
		seq   uint64
		phys  int64
	}
	reps := make([]*replica, 3)
	for i := range reps {
		reps[i] = &replica{space: crdt.NewSpace(), phys: 1_780_000_000_000 + int64(i)*7}
		reps[i].id[0], reps[i].id[15] = byte(0x10*(i+1)), byte(i)
	}
	fields := []string{"given_name", "village", "status_note", "x"}
	var history []*crdt.Change
	h := sha256.New()
	for step := 0; step < 3000; step++ {
		r := reps[rng.IntN(len(reps))]
		switch rng.IntN(10) {
		case 0, 1: // receive some changes, in any order, duplicates too
			for k := rng.IntN(8); k > 0 && len(history) > 0; k-- {
				ch := history[rng.IntN(len(history))]
				if err := r.space.Apply(ch); err != nil {
					t.Fatal(err)
				}
			}
			continue
		case 2: // merge another replica's state
			if rng.IntN(4) == 0 {
				o := reps[rng.IntN(len(reps))]
				r.space = crdt.Merge(r.space, o.space)
			}
			continue
		}
		id := crdt.RecordID(fmt.Sprintf("r%03d", rng.IntN(40)))
		rec := r.space.Record(id)
		field := fields[rng.IntN(len(fields))]
		val := []byte(fmt.Sprintf("v%d-%d", step, rng.IntN(1000)))
		if rng.IntN(20) == 0 {
			val = nil
		}
		var ops []crdt.Op
		switch k := rng.IntN(12); {
		case rec == nil || k < 5:
			op := rec.Put(field, val)
			op.Record = id
			ops = append(ops, op)
			if rng.IntN(3) == 0 {
				f2 := fields[(rng.IntN(len(fields)-1)+1+indexOf(fields, field))%len(fields)]
				op2 := rec.Put(f2, []byte("second"))
				op2.Record = id
				ops = append(ops, op2)
			}
		case k == 5:
			ops = append(ops, rec.SetAdd("tags", []byte(fmt.Sprint(rng.IntN(4)))))
		case k == 6:
			ops = append(ops, rec.SetRemove("tags", []byte(fmt.Sprint(rng.IntN(4)))))
		case k == 7:
			ops = append(ops, rec.AddNote(fmt.Sprintf("note %d", step)))
		case k == 8:
			notes := rec.Notes()
			if len(notes) == 0 || notes[0].Removed {
				continue
			}
			op, err := rec.NoteRemove(notes[rng.IntN(len(notes))].ID)
			if err != nil {
				continue
			}
			ops = append(ops, op)
		case k == 9:
			ops = append(ops, rec.Delete())
		default:
			cs := rec.Conflicts()
			if len(cs) == 0 || cs[0].Delete {
				continue
			}
			var dots []crdt.Dot
			for _, s := range cs[0].Siblings {
				dots = append(dots, s.Dot)
			}
			op, err := rec.Resolve(cs[0].Name, dots, []byte("resolved"), "golden")
			if err != nil {
				t.Fatal(err)
			}
			ops = append(ops, op)
		}
		r.seq++
		r.phys += int64(rng.IntN(3))
		ch := &crdt.Change{Author: r.id, Seq: r.seq, HLC: r.clock.Now(r.phys), Ops: ops}
		if err := r.space.Apply(ch); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		history = append(history, ch)
	}
	for _, r := range reps {
		hashSpace(t, h, r.space)
	}
	m := crdt.Merge(crdt.Merge(reps[0].space, reps[1].space), reps[2].space)
	hashSpace(t, h, m)
	all := crdt.NewSpace()
	for _, ch := range history {
		b, err := ch.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
		if err := all.Apply(ch); err != nil {
			t.Fatal(err)
		}
	}
	batch, err := crdt.EncodeChanges(history, false)
	if err != nil {
		t.Fatal(err)
	}
	h.Write(batch)
	hashSpace(t, h, all)
	// The history must reach every kind of content, or the hash checks
	// less than it claims.
	var conflicts, delConflicts, sets, notes, removed int
	for _, id := range all.IDs() {
		r := all.Record(id)
		for _, f := range r.Conflicts() {
			if f.Delete {
				delConflicts++
			} else {
				conflicts++
			}
		}
		sets += len(r.Sets())
		for _, n := range r.Notes() {
			notes++
			if n.Removed {
				removed++
			}
		}
	}
	if conflicts == 0 || delConflicts == 0 || sets == 0 || notes == 0 || removed == 0 {
		t.Fatalf("history too plain: %d conflicts, %d delete conflicts, %d sets, %d notes (%d removed)", conflicts, delConflicts, sets, notes, removed)
	}
	return hex.EncodeToString(h.Sum(nil)), history
}

func indexOf(s []string, v string) int {
	for i := range s {
		if s[i] == v {
			return i
		}
	}
	return -1
}

// hashSpace writes the space, its context, each record (also decoded and
// re-encoded) and each record's views into h.
func hashSpace(t *testing.T, h hash.Hash, s *crdt.Space) {
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	h.Write(b)
	cb, _ := s.Context.MarshalBinary()
	h.Write(cb)
	for _, id := range s.IDs() {
		r := s.Record(id)
		rb, _ := r.MarshalBinary()
		h.Write(rb)
		d, err := crdt.UnmarshalRecord(rb)
		if err != nil {
			t.Fatal(err)
		}
		db, _ := d.MarshalBinary()
		if string(db) != string(rb) {
			t.Fatalf("record %s: re-encoding differs", id)
		}
		del, conflict := r.Deleted()
		fmt.Fprintf(h, "%v %v %v|", del, conflict, r.Empty())
		for _, f := range r.Registers() {
			fmt.Fprintf(h, "%s %v|", f.Name, f.Conflict)
			for _, sib := range f.Siblings {
				fmt.Fprintf(h, "%q %v %s %v|", sib.Value, sib.Value == nil, sib.Dot, sib.HLC)
			}
		}
		for _, f := range r.Conflicts() {
			fmt.Fprintf(h, "c %s %v %d|", f.Name, f.Delete, len(f.Siblings))
		}
		for _, sv := range r.Sets() {
			fmt.Fprintf(h, "s %s %q|", sv.Name, sv.Elements)
		}
		for _, n := range r.Notes() {
			fmt.Fprintf(h, "n %s %v %q %v|", n.ID, n.HLC, n.Text, n.Removed)
		}
	}
}

// TestGoldenHistory checks that encodings and views are byte for byte
// those of the layout before the compact one.
func TestGoldenHistory(t *testing.T) {
	const want = "8b1299e5a8db58dc45ab794f18b09c4b10348b40e4b94a7c41db1b5d8977265c"
	if got, _ := goldenHistory(t); got != want {
		t.Fatalf("history hash %s, want %s", got, want)
	}
}

// TestTranscodeChanges checks that a batch transcoded from encoded changes
// is byte for byte the batch encoded from the changes, at every level and
// for batches of every size, and that it refuses what EncodeChangesLevel
// refuses.
func TestTranscodeChanges(t *testing.T) {
	_, history := goldenHistory(t)
	encs := make([][]byte, len(history))
	for i, ch := range history {
		b, err := ch.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		encs[i] = b
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, level := range []int{crdt.NoCompression, flate.HuffmanOnly, flate.BestSpeed, flate.BestCompression} {
		for lo := 0; lo < len(history); {
			hi := min(len(history), lo+1+rng.IntN(300))
			want, err := crdt.EncodeChangesLevel(history[lo:hi], level)
			if err != nil {
				t.Fatal(err)
			}
			got, err := crdt.TranscodeChanges(encs[lo:hi], level)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("level %d, changes %d..%d: transcoded batch differs", level, lo, hi)
			}
			lo = hi
		}
	}
	if got, err := crdt.TranscodeChanges(nil, crdt.NoCompression); err != nil {
		t.Fatal(err)
	} else if want, _ := crdt.EncodeChanges(nil, false); !bytes.Equal(got, want) {
		t.Fatal("empty batch differs")
	}
	// A change with dependencies goes in no batch; garbage is refused.
	dep := *history[0]
	dep.Ops = []crdt.Op{crdt.NewPut("r1", "f", []byte("v"))}
	var other crdt.ReplicaID
	other[0] = 0x77
	dep.Ops[0].Seen = []crdt.Dot{{Replica: other, Seq: 1}}
	dep.Deps = []crdt.Dep{{Replica: other, Seq: 1}}
	b, err := dep.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := crdt.EncodeChangesLevel([]*crdt.Change{&dep}, crdt.NoCompression); err == nil {
		t.Fatal("EncodeChangesLevel took a change with dependencies")
	}
	if _, err := crdt.TranscodeChanges([][]byte{b}, crdt.NoCompression); err == nil {
		t.Fatal("TranscodeChanges took a change with dependencies")
	}
	if _, err := crdt.TranscodeChanges([][]byte{encs[0], encs[1][:len(encs[1])-1]}, crdt.NoCompression); err == nil {
		t.Fatal("TranscodeChanges took a truncated change")
	}
	if _, err := crdt.TranscodeChanges(encs[:1], 42); err == nil {
		t.Fatal("TranscodeChanges took level 42")
	}
}

// TestDecodeChangesFunc checks that the streaming decoder hands out
// exactly the changes DecodeChanges returns, and on a damaged batch fails
// exactly when DecodeChanges does, without handing out any change.
func TestDecodeChangesFunc(t *testing.T) {
	_, history := goldenHistory(t)
	rng := rand.New(rand.NewPCG(4, 5))
	collect := func(b []byte) ([][]byte, error) {
		var out [][]byte
		err := crdt.DecodeChangesFunc(b, func(c *crdt.Change) error {
			enc, err := c.MarshalBinary()
			out = append(out, enc)
			return err
		})
		return out, err
	}
	for lo := 0; lo < len(history); {
		hi := min(len(history), lo+1+rng.IntN(200))
		compress := rng.IntN(2) == 0
		batch, err := crdt.EncodeChanges(history[lo:hi], compress)
		if err != nil {
			t.Fatal(err)
		}
		got, err := collect(batch)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != hi-lo {
			t.Fatalf("%d changes, want %d", len(got), hi-lo)
		}
		for i, enc := range got {
			want, _ := history[lo+i].MarshalBinary()
			if !bytes.Equal(enc, want) {
				t.Fatalf("change %d differs", lo+i)
			}
		}
		// Damage: flip, drop or add bytes; both decoders must agree.
		for k := 0; k < 40; k++ {
			bad := slices.Clone(batch)
			switch rng.IntN(3) {
			case 0:
				bad[rng.IntN(len(bad))] ^= byte(1 + rng.IntN(255))
			case 1:
				bad = bad[:rng.IntN(len(bad))]
			default:
				bad = append(bad, byte(rng.IntN(256)))
			}
			_, wantErr := crdt.DecodeChanges(bad)
			calls := 0
			err := crdt.DecodeChangesFunc(bad, func(*crdt.Change) error { calls++; return nil })
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("damaged batch: DecodeChangesFunc error %v, DecodeChanges error %v", err, wantErr)
			}
			if err != nil && calls > 0 {
				t.Fatalf("damaged batch: %d changes handed out before the error %v", calls, err)
			}
		}
		lo = hi
	}
	// fn's error stops the decoding.
	batch, _ := crdt.EncodeChanges(history[:10], false)
	stop := fmt.Errorf("stop")
	calls := 0
	if err := crdt.DecodeChangesFunc(batch, func(*crdt.Change) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("error %v after %d calls, want stop after 1", err, calls)
	}
}
