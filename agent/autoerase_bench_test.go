package agent

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkAutoErasePass: one automatic erasure pass over a space whose
// every record is due (a retention policy set on an old space), with
// other records that stay. Each record erasure rebuilds the space's state
// (recerase.go), so the cost per record grows with the space; the figure
// to watch is ms per record erased. The erase markers a device may have
// held are capped at maxRecordErasuresPerAuthor (4,096): a backlog larger
// than that is refused past it.
func BenchmarkAutoErasePass(b *testing.B) {
	for _, n := range []struct{ due, kept int }{{50, 450}, {200, 1800}} {
		b.Run(fmt.Sprintf("due=%d/records=%d", n.due, n.due+n.kept), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				a, k, space, skipA, skipK := retentionClocks(b)
				if _, err := a.SetRetentionPolicy(retentionReq(space)); err != nil {
					b.Fatal(err)
				}
				for i := range n.due {
					advPut(b, a, space, fmt.Sprintf("old-%04d", i), "due")
				}
				skipA(3 * day)
				skipK(3 * day)
				for i := range n.kept {
					advPut(b, a, space, fmt.Sprintf("new-%04d", i), "stays")
				}
				advPut(b, k, space, "kz", "k")
				receiptSync(b, k, a)
				b.StartTimer()
				start := time.Now()
				res, err := a.autoErasePass()
				elapsed := time.Since(start)
				b.StopTimer()
				if err != nil || res.Erased != n.due {
					b.Fatalf("pass: %+v %v", res, err)
				}
				b.ReportMetric(float64(elapsed.Milliseconds())/float64(n.due), "ms/record")
				a.Close()
				k.Close()
				b.StartTimer()
			}
		})
	}
}
