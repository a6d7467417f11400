package agent

import (
	"fmt"
	"testing"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
)

// BenchmarkColdServe is what cold envelopes cost a peer's reads: a log of
// W1-like changes (16 records of 8 fields each per change, overwritten in
// 4 rounds) compacted whole or cold, then read whole as sync serves it
// (readLog). It prints a table row and a JSON line per form.
func BenchmarkColdServe(b *testing.B) {
	fields := []string{"name", "dob", "nationality", "passport", "address", "phone", "vehicle", "notes"}
	for _, form := range []string{"whole", "cold"} {
		b.Run(form, func(b *testing.B) {
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
				for c := range 16 {
					var builds []opBuilder
					for r := range 16 {
						rec := crdt.RecordID(fmt.Sprintf("rec-%03d-%02d", c, r))
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
			c, err := a.Compact(api.CompactRequest{Space: sp.ID, MinAgeSeconds: &zero, NoCold: form == "whole"})
			if err != nil {
				b.Fatal(err)
			}
			cs := c.Spaces[0]
			if cs.Envelopes != 48 || (form == "cold") != (cs.Frozen == 48) {
				b.Fatalf("compaction: %+v", cs)
			}
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
			fmt.Printf("| %-5s | %4d envelopes | %8d bytes served | stored %8d | %8.0f ns/envelope |\n", form, n, bytes, cs.BytesAfter, per)
			fmt.Printf(`{"bench":"cold-serve","form":%q,"envelopes":%d,"served_bytes":%d,"stored_bytes":%d,"ns_per_envelope":%.0f}`+"\n", form, n, bytes, cs.BytesAfter, per)
		})
	}
}
