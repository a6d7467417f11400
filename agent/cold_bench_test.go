package agent

import (
	"fmt"
	"testing"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
)

// BenchmarkColdServe is what cold envelopes cost a peer's reads and save
// on disk: a log of W1-like changes (16 records of 8 fields each per
// change as write combining makes them, or one record per change),
// overwritten in 4 rounds, compacted whole or cold, then read whole as sync
// serves it (readLog). It prints a table row and a JSON line per case:
// stored_bytes is the envelopes as stored, cut_bytes the part of it in
// the envelopes compaction cut.
func BenchmarkColdServe(b *testing.B) {
	fields := []string{"name", "dob", "nationality", "passport", "address", "phone", "vehicle", "notes"}
	for _, c := range []struct {
		form    string
		records int // per change
		changes int // per round
	}{{"whole", 16, 16}, {"cold", 16, 16}, {"whole", 1, 64}, {"cold", 1, 64}} {
		form := c.form
		b.Run(fmt.Sprintf("%s-%d-records-per-change", c.form, c.records), func(b *testing.B) {
			omn := newTestBureau(b, "OMN")
			a := openTestAgent(b, newTestDevice(b, omn, "Amina", crypto.RoleOfficer))
			sp, err := a.CreateSpace("case", nil)
			if err != nil {
				b.Fatal(err)
			}
			id := bundleSpaceID(b, sp.ID)
			a.stateMu.Lock()
			st := a.spaces[id]
			a.stateMu.Unlock()
			for round := range 4 {
				for ch := range c.changes {
					var builds []opBuilder
					for r := range c.records {
						rec := crdt.RecordID(fmt.Sprintf("rec-%03d-%02d", ch, r))
						builds = append(builds, func(load func(crdt.RecordID) (*crdt.Record, error)) ([]crdt.Op, error) {
							x, err := load(rec)
							if err != nil {
								return nil, err
							}
							if x == nil {
								x = crdt.NewRecord(rec)
							}
							var ops []crdt.Op
							for _, f := range fields {
								ops = append(ops, x.Put(f, fmt.Appendf(nil, "%s of %s, round %d", f, rec, round)))
							}
							return ops, nil
						})
					}
					if _, _, _, err := a.writeOpsMulti(st, builds, nil); err != nil {
						b.Fatal(err)
					}
				}
			}
			zero := int64(0)
			cp, err := a.Compact(api.CompactRequest{Space: sp.ID, MinAgeSeconds: &zero, NoCold: form == "whole"})
			if err != nil {
				b.Fatal(err)
			}
			cs := cp.Spaces[0]
			if cs.Envelopes != 3*c.changes || (form == "cold") != (cs.Frozen == 3*c.changes) {
				b.Fatalf("compaction: %+v", cs)
			}
			cut := 0 // bytes as stored of the envelopes cut
			a.db.kv.Scan(envSpacePrefix(id), func(k, sealed []byte) error {
				if pt, err := a.db.openRaw(k, sealed); err == nil && (crypto.IsCold(pt) || anyCut(pt)) {
					cut += len(pt)
				}
				return nil
			})
			a.stateMu.Lock()
			head := a.spaces[id].heads[a.dev].Seq
			a.stateMu.Unlock()
			n, bytes := 0, 0
			b.ResetTimer()
			for b.Loop() {
				n, bytes = 0, 0
				corrupt, err := a.readLog(id, a.dev, 1, head, func(env []byte) error { n++; bytes += len(env); return nil })
				if err != nil || corrupt {
					b.Fatal(err, corrupt)
				}
			}
			per := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(n)
			b.ReportMetric(per, "ns/envelope")
			fmt.Printf("| %-5s | %2d records/change | %4d envelopes | %8d bytes served | stored %8d | cut %8d (%4.0f per cut record-write) | %8.0f ns/envelope |\n",
				form, c.records, n, bytes, cs.BytesAfter, cut, float64(cut)/float64(3*c.changes*c.records), per)
			fmt.Printf(`{"bench":"cold-serve","form":%q,"records_per_change":%d,"envelopes":%d,"served_bytes":%d,"stored_bytes":%d,"cut_bytes":%d,"ns_per_envelope":%.0f}`+"\n",
				form, c.records, n, bytes, cs.BytesAfter, cut, per)
		})
	}
}
