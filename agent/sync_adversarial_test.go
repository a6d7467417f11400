package agent

import (
	"context"
	"fmt"
	"testing"

	"fieldsync/crypto"
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
	ks, err := LoadKeystore(cfgA.Layout, cfgA.Unlock)
	if err != nil {
		t.Fatal(err)
	}
	cfgA.MeshKey = ks.MeshKey
	a := startSyncAgent(t, cfgA)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	put := func(rec string) {
		t.Helper()
		if _, err := a.PutFields(RecordPutRequest{Space: sp.ID, Record: rec, Fields: []FieldValue{{Name: "n", Value: rec}}}); err != nil {
			t.Fatal(err)
		}
	}
	put("before")
	b := openTestAgent(t, cfgB) // not run: its engine is the liar's own
	spaceID, err := crypto.ParseSpaceID(sp.ID)
	if err != nil {
		t.Fatal(err)
	}
	liar, err := fsync.New(fsync.Config{
		Store: lyingHeads{syncAdapter{b}, fsync.SpaceID(spaceID), fsync.PeerID(a.DeviceID())},
		Auth:  entitledToAll{syncAdapter{b}}, Profile: fsync.ProfileLocal, BindAddr: "127.0.0.1:0",
		MeshKeys: [][]byte{ks.MeshKey}, SyncInterval: -1, DisableHints: true,
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
	for i := 0; i < 5; i++ {
		put(fmt.Sprintf("after %d", i))
	}
	got := a.Status().UnsyncedLocal
	t.Logf("after a peer claimed seq 10^9 of A's log and A wrote 5 records: unsynced_local = %d", got)
	if got < 5 {
		t.Fatalf("unsynced_local %d: a peer's claim of seq 10^9 made A's 5 later writes look held elsewhere", got)
	}
}
