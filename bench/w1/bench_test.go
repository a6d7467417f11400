package w1

import "testing"

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
