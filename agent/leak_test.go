package agent

import (
	"fieldsync/agent/api"
	"testing"

	"go.uber.org/goleak"

	"fieldsync/crypto"
	"fieldsync/internal/datadir"
)

// TestCloseLeavesNoGoroutine: two agents run with their API, sync over
// memberlist, a write that makes the after-commit worker wrap a key, and a
// release that queues it again; once both are stopped, no goroutine they
// started is left (go.uber.org/goleak). Badger, memberlist and the HTTP
// servers included: Run and Close wait for what they started.
func TestCloseLeavesNoGoroutine(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	omn, kaz := newTestBureau(t, "OMN"), newTestBureau(t, "KAZ")
	cfgA := newTestDevice(t, omn, "Amina", crypto.RoleOfficer, kaz)
	cfgB := newTestDevice(t, kaz, "Bolat", crypto.RoleOfficer, omn)
	ks, err := datadir.LoadKeystore(cfgA.Layout, cfgA.Unlock)
	if err != nil {
		t.Fatal(err)
	}
	cfgA.MeshKey, cfgB.MeshKey = ks.MeshKey, ks.MeshKey
	cfgA.MetricsAddr = "127.0.0.1:0" // the metrics server too
	a := startStoppable(t, cfgA)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	advPut(t, a.Agent, sp.ID, "p1", "first")
	cfgB.Join = []string{a.SyncAddr()}
	b := startStoppable(t, cfgB)
	// Releasing the space to KAZ, B's bureau, wraps A's key to B on the
	// worker; B then reads the record.
	if _, err := a.ChangeRelease(api.SpaceBureauRequest{Space: sp.ID, Bureau: "KAZ"}, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to read the record", func() bool {
		_, err := b.GetRecord(api.RecordRef{Space: sp.ID, Record: "p1"})
		return err == nil
	})
	b.stop()
	a.stop()
	goleak.VerifyNone(t, ignore)
}
