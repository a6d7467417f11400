package agent

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crypto"
)

// BenchmarkWriteSpaces is the write path bound by CPU rather than by the
// disk: 32 writers, each on a space of its own (so every write is a change,
// a signature and an envelope of its own: nothing is combined), without the
// API. Run it on a tmpfs and at -cpu 1,2 to see what signing outside the
// write lock gives: with one core nothing overlaps; with more, signatures run
// in parallel with each other and with the next write's build under the
// lock (docs/design.md §7, "Signing outside the write lock"). It reports
// writes/s and writes per commit.
func BenchmarkWriteSpaces(b *testing.B) {
	omn := newTestBureau(b, "OMN")
	a := openTestAgent(b, newTestDevice(b, omn, "Amina", crypto.RoleOfficer))
	const writers = 32
	spaces := make([]string, writers)
	for i := range spaces {
		sp, err := a.CreateSpace(fmt.Sprintf("bench %d", i), nil)
		if err != nil {
			b.Fatal(err)
		}
		spaces[i] = sp.ID
		if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "r0", Fields: []api.FieldValue{{Name: "visit_note", Value: "x"}}}); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	commits0, writes0 := a.com.Commits(), a.com.Writes()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; next.Add(1) <= int64(b.N); i++ {
				req := api.RecordPutRequest{Space: spaces[w], Record: fmt.Sprintf("r%d", i%50), Fields: []api.FieldValue{{Name: "visit_note", Value: "أمينة market حلب clinic #0042"}}}
				if _, err := a.PutFields(req); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	b.StopTimer()
	commits := a.com.Commits() - commits0
	b.ReportMetric(float64(b.N)/took.Seconds(), "writes/s")
	if commits > 0 {
		b.ReportMetric(float64(a.com.Writes()-writes0)/float64(commits), "writes/commit")
	}
}
