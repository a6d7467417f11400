package agent

import (
	"fmt"
	"os"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
	"fieldsync/internal/datadir"
)

// BenchmarkRekeyAfterRevocation measures what a revocation costs the agent
// that receives it in a space of 10,000 records shared with 20 officer
// devices: storing and applying the revocation, then the next write, which
// starts a new epoch key and wraps it to every remaining device (issue 7).
// Only keys are rotated; no envelope is re-encrypted, so the cost does not
// grow with the records. Run: go test ./agent -run '^$' -bench Rekey -benchtime 10x
func BenchmarkRekeyAfterRevocation(b *testing.B) {
	const records, devices = 10_000, 20
	omn := newTestBureau(b, "OMN")
	a := openTestAgent(b, newTestDevice(b, omn, "Amina", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		b.Fatal(err)
	}
	id, _ := crypto.ParseSpaceID(sp.ID)
	for i := 0; i < records; i += 500 {
		_, _, err := a.writeOps(a.spaces[id], func(func(crdt.RecordID) (*crdt.Record, error)) ([]crdt.Op, error) {
			var ops []crdt.Op
			for j := i; j < i+500; j++ {
				ops = append(ops, crdt.NewPut(crdt.RecordID(fmt.Sprintf("r%05d", j)), "name", []byte(fmt.Sprintf("person %d", j))))
			}
			return ops, nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	var ids []crypto.DeviceID
	for i := range devices + b.N {
		cfg := newTestDevice(b, omn, fmt.Sprintf("officer %d", i), crypto.RoleOfficer)
		c := countersignedCert(b, cfg)
		if _, err := a.AddCertificate(c.MarshalBinary()); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, c.Device.ID())
	}
	if _, err := a.ShareKeys(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var revokeTime, rekeyTime time.Duration
	for i := range b.N {
		rev, err := omn.b.Revoke(ids[i], nil, 0, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if _, err := a.AddRevocation(rev.Marshal()); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if !a.needsRotation(a.spaces[id]) {
			b.Fatal("no rotation due after revoking a device that holds the key")
		}
		if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "r00000", Fields: []api.FieldValue{{Name: "name", Value: fmt.Sprint(i)}}}); err != nil {
			b.Fatal(err)
		}
		revokeTime += t1.Sub(t0)
		rekeyTime += time.Since(t1)
	}
	b.ReportMetric(float64(revokeTime.Microseconds())/float64(b.N)/1000, "ms-revocation/op")
	b.ReportMetric(float64(rekeyTime.Microseconds())/float64(b.N)/1000, "ms-rekey-write/op")
}

// countersignedCert is a test device's certificate as the device itself
// sends it (version 2: countersigned at its first start).
func countersignedCert(tb testing.TB, cfg Config) *crypto.Certificate {
	tb.Helper()
	blob, err := os.ReadFile(cfg.Layout.Cert())
	if err != nil {
		tb.Fatal(err)
	}
	c, err := crypto.ParseCertificate(blob)
	if err != nil {
		tb.Fatal(err)
	}
	ks, err := datadir.LoadKeystore(cfg.Layout, cfg.Unlock)
	if err != nil {
		tb.Fatal(err)
	}
	if c, err = c.Countersign(ks.Identity); err != nil {
		tb.Fatal(err)
	}
	return c
}
