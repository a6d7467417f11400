package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	"fieldsync/crypto"
)

// waitFor polls cond until it holds or the (generous) bound passes; the
// bound only stops a broken test, it asserts nothing about speed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func startSyncAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	a := openTestAgent(t, cfg)
	runAgent(t, a)
	waitFor(t, "sync to start", func() bool { return a.SyncAddr() != "" })
	return a
}

// TestTwoAgentsSync: writes on each appear on the other, over real
// memberlist and sync streams on 127.0.0.1; the second officer gets the
// space key by itself once the first learns its certificate.
func TestTwoAgentsSync(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfgA := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	cfgB := newTestDevice(t, omn, "Boris", crypto.RoleOfficer)
	// One mesh key for both.
	ks, _ := LoadKeystore(cfgA.Layout, cfgA.Unlock)
	cfgA.MeshKey, cfgB.MeshKey = ks.MeshKey, ks.MeshKey
	a := startSyncAgent(t, cfgA)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.PutFields(RecordPutRequest{Space: sp.ID, Record: "p1", Fields: []FieldValue{{Name: "name", Value: "أمينة"}}}); err != nil {
		t.Fatal(err)
	}
	cfgB.Join = []string{a.SyncAddr()}
	b := startSyncAgent(t, cfgB)
	waitFor(t, "b to get the record", func() bool {
		r, err := b.GetRecord(RecordRef{Space: sp.ID, Record: "p1"})
		return err == nil && r.Fields["name"].Value == "أمينة"
	})
	if _, err := b.PutFields(RecordPutRequest{Space: sp.ID, Record: "p2", Fields: []FieldValue{{Name: "plate", Value: "KZ 1"}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a to get b's record", func() bool {
		r, err := a.GetRecord(RecordRef{Space: sp.ID, Record: "p2"})
		return err == nil && r.Fields["plate"].Value == "KZ 1" && r.Fields["plate"].Siblings[0].Officer == "Boris"
	})
	waitFor(t, "digests to match", func() bool {
		da, _ := a.Digest(SpaceRef{Space: sp.ID})
		db, _ := b.Digest(SpaceRef{Space: sp.ID})
		return da == db
	})
	st := a.Status()
	if len(st.Peers) != 1 || st.Peers[0].ID != b.DeviceID().String() {
		t.Fatalf("a's peers: %+v", st.Peers)
	}
	waitFor(t, "a's writes to count as held by b", func() bool { return a.Status().UnsyncedLocal == 0 })
	_ = context.Background
	_ = fmt.Sprint
}
