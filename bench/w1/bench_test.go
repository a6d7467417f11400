package w1

import (
	"fmt"
	"runtime"
	"testing"

	"fieldsync/crdt"
)

// BenchmarkW1CRDT runs W1-S on the crdt layer once per iteration and
// reports BENCH.md's figures as metrics.
func BenchmarkW1CRDT(b *testing.B) {
	for i := 0; i < b.N; i++ {
		r, err := RunCRDTWith(SizeS, Options{Compress: compressBench})
		if err != nil {
			b.Fatal(err)
		}
		if !r.Converged || !r.ConflictsMatch {
			b.Fatalf("W1 failed: %+v", r)
		}
		b.ReportMetric(r.UpdatesPerS, "updates/s")
		b.ReportMetric(r.InitSyncMS, "init-ms")
		b.ReportMetric(r.DeltaSyncMS, "delta-ms")
		b.ReportMetric(float64(r.StateBytes), "state-bytes")
	}
}

var compressBench = true

// BenchmarkInitialSync measures step 3 alone (encode, decode, apply of
// W1-S's 10,000 creating changes, and the sender's decoding of its
// encoded log), plain and compressed.
func BenchmarkInitialSync(b *testing.B) {
	w := Generate(SizeS)
	a := &side{id: replica(0xa), space: crdt.NewSpace(), phys: startWall}
	for r := range w.Initial {
		ops := make([]crdt.Op, len(Fields))
		for f, name := range Fields {
			ops[f] = crdt.NewPut(crdt.RecordID(RecordID(r)), name, []byte(w.Initial[r][f]))
		}
		seq, hlc := a.next()
		if err := a.commit(&crdt.Change{Author: a.id, Seq: seq, HLC: hlc, Ops: ops}); err != nil {
			b.Fatal(err)
		}
	}
	for _, compress := range []bool{false, true} {
		b.Run(fmt.Sprintf("compress=%v", compress), func(b *testing.B) {
			var n int64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dst := &side{id: replica(0xb), space: crdt.NewSpace()}
				runtime.GC()
				b.StartTimer()
				var err error
				if n, err = sync(a, dst, Options{Compress: compress}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n), "bytes")
		})
	}
}
