package agent

import (
	"context"
	"fmt"
	"testing"

	"fieldsync/agent/api"
	"fieldsync/crypto"
	"fieldsync/internal/datadir"
	fsync "fieldsync/sync"
)

// lyingHeads is a compromised officer laptop's store: it claims to hold a
// billion envelopes of the victim's own log in a space.
type lyingHeads struct {
	syncAdapter
	space  fsync.SpaceID
	victim fsync.PeerID
}

func (l lyingHeads) Spaces() ([]fsync.SpaceID, error) { return []fsync.SpaceID{l.space}, nil }

func (l lyingHeads) Heads(sp fsync.SpaceID) (fsync.Vector, error) {
	v, err := l.syncAdapter.Heads(sp)
	if sp == l.space {
		v[l.victim] = 1_000_000_000
	}
	return v, err
}

// entitledToAll lists every space for its peer (the liar sends its claim
// whatever its own policy says).
type entitledToAll struct{ syncAdapter }

func (entitledToAll) Entitled(fsync.Peer, fsync.SpaceID) bool { return true }

// TestUnsyncedLocalIgnoresImpossibleClaims: a member in good standing claims,
// in a real sync round, to hold seq 10^9 of A's own log. A's status must
// still count A's later writes as held nowhere else (old behaviour: the
// claim made status report every local write as safe elsewhere, for ever).
func TestUnsyncedLocalIgnoresImpossibleClaims(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfgA := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	cfgB := newTestDevice(t, omn, "Boris", crypto.RoleOfficer)
	ks, err := datadir.LoadKeystore(cfgA.Layout, cfgA.Unlock)
	if err != nil {
		t.Fatal(err)
	}
	ksB, err := datadir.LoadKeystore(cfgB.Layout, cfgB.Unlock)
	if err != nil {
		t.Fatal(err)
	}
	if fsync.PeerID(ksB.Identity.ID()).Compare(fsync.PeerID(ks.Identity.ID())) < 0 {
		// The liar's ID must be above A's (below): swap the two devices.
		cfgA, cfgB, ks = cfgB, cfgA, ksB
	}
	cfgA.MeshKey = ks.MeshKey
	a := startSyncAgent(t, cfgA)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	put := func(rec string) {
		t.Helper()
		if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: rec, Fields: []api.FieldValue{{Name: "n", Value: rec}}}); err != nil {
			t.Fatal(err)
		}
	}
	put("before")
	// The liar's engine is not the agent's own (b is not run). Its ID is
	// above A's, so that after the round A, not the liar, would start the
	// join round (and fails to reach the address the liar advertised):
	// the one round below is the only one, and the writes after it race
	// with no other claim.
	b := openTestAgent(t, cfgB)
	if fsync.PeerID(b.DeviceID()).Compare(fsync.PeerID(a.DeviceID())) < 0 {
		t.Fatal("the liar's device ID is below A's")
	}
	spaceID, err := crypto.ParseSpaceID(sp.ID)
	if err != nil {
		t.Fatal(err)
	}
	liar, err := fsync.New(fsync.Config{
		Store: lyingHeads{syncAdapter{b}, fsync.SpaceID(spaceID), fsync.PeerID(a.DeviceID())},
		Auth:  entitledToAll{syncAdapter{b}}, Profile: fsync.ProfileLocal, BindAddr: "127.0.0.1:0",
		Advertise: "127.0.0.1:1", // where nothing listens: A cannot dial it back
		MeshKeys:  [][]byte{ks.MeshKey}, SyncInterval: -1, DisableHints: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := liar.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = liar.Close() })
	if _, err := liar.SyncWithAddr(context.Background(), fsync.PeerID(a.DeviceID()), a.SyncAddr()); err != nil {
		t.Fatalf("round with the liar: %v", err)
	}
	a.stateMu.Lock()
	ownThen := a.spaces[spaceID].heads[a.dev].Seq
	a.stateMu.Unlock()
	if held := a.peerHeldSeq(spaceID); held > ownThen {
		t.Errorf("after the round A believes a peer holds seq %d of its log, which has %d", held, ownThen)
	}
	for i := 0; i < 5; i++ {
		put(fmt.Sprintf("after %d", i))
	}
	got := a.Status().UnsyncedLocal
	t.Logf("after a peer claimed seq 10^9 of A's log and A wrote 5 records: unsynced_local = %d", got)
	if got < 5 {
		t.Fatalf("unsynced_local %d: a peer's claim of seq 10^9 made A's 5 later writes look held elsewhere", got)
	}
}
