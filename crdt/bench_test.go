package crdt_test

import (
	"fmt"
	"testing"

	"fieldsync/crdt"
)

var benchFields = []string{"given_name", "family_name", "village", "district", "landmark", "contact", "status_note", "visit_note"}

func benchSpace(b *testing.B, records int) (*crdt.Space, []crdt.RecordID, crdt.ReplicaID) {
	var a crdt.ReplicaID
	a[0] = 0xa
	s := crdt.NewSpace()
	ids := make([]crdt.RecordID, records)
	val := []byte("أمينة market حلب clinic market حلب clinic #0042")
	for i := range ids {
		ids[i] = crdt.RecordID(fmt.Sprintf("r%06d", i))
		ops := make([]crdt.Op, len(benchFields))
		for f, name := range benchFields {
			ops[f] = crdt.NewPut(ids[i], name, val)
		}
		if err := s.Apply(&crdt.Change{Author: a, Seq: uint64(i + 1), HLC: crdt.Timestamp{Wall: int64(i)}, Ops: ops}); err != nil {
			b.Fatal(err)
		}
	}
	return s, ids, a
}

// BenchmarkLocalPut: one local update = build a Put from the record, wrap
// it in its own change, apply it (W1's offline phase).
func BenchmarkLocalPut(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) { benchLocalPut(b, n) })
	}
}

func benchLocalPut(b *testing.B, records int) {
	s, ids, a := benchSpace(b, records)
	var clock crdt.Clock
	seq := uint64(len(ids))
	val := []byte("Иван Петров market حلب clinic market حلب #0042")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := ids[(i*7919)%len(ids)]
		op := s.Records[id].Put(benchFields[i%8], val)
		seq++
		ch := &crdt.Change{Author: a, Seq: seq, HLC: clock.Now(int64(i)), Ops: []crdt.Op{op}}
		if err := s.Apply(ch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
}

// BenchmarkSyncBatch: encode, decode and apply a batch of 1,000 one-op
// changes from another replica.
func BenchmarkSyncBatch(b *testing.B) {
	for _, compress := range []bool{false, true} {
		b.Run(fmt.Sprintf("compress=%v", compress), func(b *testing.B) {
			src, ids, _ := benchSpace(b, 10_000)
			var r crdt.ReplicaID
			r[0] = 0xb
			chs := make([]*crdt.Change, 1000)
			val := []byte("Иван Петров market حلب clinic market حلب #0042")
			for i := range chs {
				op := src.Records[ids[(i*7919)%len(ids)]].Put(benchFields[i%8], val)
				chs[i] = &crdt.Change{Author: r, Seq: uint64(i + 1), HLC: crdt.Timestamp{Wall: int64(i)}, Ops: []crdt.Op{op}}
			}
			b.ReportAllocs()
			b.ResetTimer()
			var n int
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dst := src.Clone()
				b.StartTimer()
				enc, err := crdt.EncodeChanges(chs, compress)
				if err != nil {
					b.Fatal(err)
				}
				n = len(enc)
				dec, err := crdt.DecodeChanges(enc)
				if err != nil {
					b.Fatal(err)
				}
				for _, ch := range dec {
					if err := dst.Apply(ch); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(n)/1000, "bytes/change")
			b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "changes/s")
		})
	}
}

func BenchmarkMarshalSpace(b *testing.B) {
	s, _, _ := benchSpace(b, 10_000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.MarshalBinary(); err != nil {
			b.Fatal(err)
		}
	}
}
