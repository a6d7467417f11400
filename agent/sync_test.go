package agent

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crypto"
	"fieldsync/internal/datadir"
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

// omnOfficers is bureau OMN with two officer devices, Amina and Boris,
// sharing one mesh key: the setup of most two-device sync tests.
func omnOfficers(t *testing.T) (omn *testBureau, cfgA, cfgB Config) {
	t.Helper()
	omn = newTestBureau(t, "OMN")
	cfgA = newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	cfgB = newTestDevice(t, omn, "Boris", crypto.RoleOfficer)
	ks, err := datadir.LoadKeystore(cfgA.Layout, cfgA.Unlock)
	if err != nil {
		t.Fatal(err)
	}
	cfgA.MeshKey, cfgB.MeshKey = ks.MeshKey, ks.MeshKey
	return omn, cfgA, cfgB
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
	_, cfgA, cfgB := omnOfficers(t)
	a := startSyncAgent(t, cfgA)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "p1", Fields: []api.FieldValue{{Name: "name", Value: "أمينة"}}}); err != nil {
		t.Fatal(err)
	}
	cfgB.Join = []string{a.SyncAddr()}
	b := startSyncAgent(t, cfgB)
	waitFor(t, "b to get the record", func() bool {
		r, err := b.GetRecord(api.RecordRef{Space: sp.ID, Record: "p1"})
		return err == nil && r.Fields["name"].Value == "أمينة"
	})
	if _, err := b.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "p2", Fields: []api.FieldValue{{Name: "plate", Value: "KZ 1"}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a to get b's record", func() bool {
		r, err := a.GetRecord(api.RecordRef{Space: sp.ID, Record: "p2"})
		return err == nil && r.Fields["plate"].Value == "KZ 1" && r.Fields["plate"].Siblings[0].Officer == "Boris"
	})
	waitFor(t, "digests to match", func() bool {
		da, _ := a.Digest(api.SpaceRef{Space: sp.ID})
		db, _ := b.Digest(api.SpaceRef{Space: sp.ID})
		return da == db
	})
	st := a.Status()
	if len(st.Peers) != 1 || st.Peers[0].ID != b.DeviceID().String() {
		t.Fatalf("a's peers: %+v", st.Peers)
	}
	waitFor(t, "a's writes to count as held by b", func() bool { return a.Status().UnsyncedLocal == 0 })
}

// partition is a fsync.Faults that cuts traffic between groups of nodes.
type partition struct {
	mu    sync.Mutex
	group map[string]int // node name -> group; absent = connected to all
}

func (p *partition) split(groups ...[]*Agent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.group = map[string]int{}
	for i, g := range groups {
		for _, a := range g {
			p.group[a.DeviceID().String()] = i + 1
		}
	}
}

func (p *partition) heal() {
	p.mu.Lock()
	p.group = nil
	p.mu.Unlock()
}

func (p *partition) Drop(from, to string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	gf, okf := p.group[from]
	gt, okt := p.group[to]
	return okf && okt && gf != gt
}

func (p *partition) WrapSync(from, to string, c net.Conn) net.Conn { return c }

// TestPartitionHealConverges: five agents (four officers and a relay)
// split 3|2 with both sides writing, including concurrent edits of the same
// field; after healing every officer has the same digest and conflicts, and
// the relay holds the same envelope set.
func TestPartitionHealConverges(t *testing.T) {
	for _, hints := range []bool{true, false} {
		t.Run(fmt.Sprintf("hints=%v", hints), func(t *testing.T) { partitionHeal(t, hints) })
	}
}

func partitionHeal(t *testing.T, hints bool) {
	omn := newTestBureau(t, "OMN")
	faults := &partition{}
	var agents []*Agent
	var mesh []byte
	var first string
	mk := func(name string, role crypto.Role) *Agent {
		cfg := newTestDevice(t, omn, name, role)
		if mesh == nil {
			ks, _ := datadir.LoadKeystore(cfg.Layout, cfg.Unlock)
			mesh = ks.MeshKey
		}
		cfg.MeshKey = mesh
		cfg.Faults = faults
		cfg.DisableHints = !hints
		if first != "" {
			cfg.Join = []string{first}
		}
		a := startSyncAgent(t, cfg)
		if first == "" {
			first = a.SyncAddr()
		}
		agents = append(agents, a)
		return a
	}
	A := mk("Amina", crypto.RoleOfficer)
	sp, err := A.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	B := mk("Boris", crypto.RoleOfficer)
	R := mk("relay", crypto.RoleRelay)
	C := mk("Chen", crypto.RoleOfficer)
	D := mk("Dana", crypto.RoleOfficer)
	officers := []*Agent{A, B, C, D}
	put := func(a *Agent, rec, field, val string) {
		t.Helper()
		if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: rec, Fields: []api.FieldValue{{Name: field, Value: val}}}); err != nil {
			t.Fatal(err)
		}
	}
	// Everyone gets the key and a first record.
	put(A, "p1", "name", "أمينة")
	for _, o := range officers {
		waitFor(t, o.ks.Officer+" to read p1", func() bool {
			r, err := o.GetRecord(api.RecordRef{Space: sp.ID, Record: "p1"})
			return err == nil && r.Fields["name"].Value == "أمينة"
		})
	}
	faults.split([]*Agent{A, B, R}, []*Agent{C, D})
	put(A, "p1", "name", "Amina (side 1)")
	put(C, "p1", "name", "Амина (side 2)")
	put(B, "p2", "plate", "KZ 1")
	put(D, "p3", "phone", "+7 700 000")
	faults.heal()
	converged := func() bool {
		d0, err := A.Digest(api.SpaceRef{Space: sp.ID})
		if err != nil {
			return false
		}
		for _, a := range agents[1:] {
			d, err := a.Digest(api.SpaceRef{Space: sp.ID})
			if err != nil || d.Envelopes != d0.Envelopes || (a != R && d.Digest != d0.Digest) {
				return false
			}
		}
		return true
	}
	waitFor(t, "all five to converge", converged)
	var want []api.Conflict
	for i, o := range officers {
		c, err := o.ConflictsList(api.ConflictsListRequest{Space: sp.ID})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			want = c
			if len(c) != 1 || c[0].Record != "p1" || len(c[0].Siblings) != 2 {
				t.Fatalf("conflicts = %+v", c)
			}
			continue
		}
		if !sameJSON(t, c, want) {
			t.Fatalf("%s's conflicts differ: %+v", o.ks.Officer, c)
		}
	}
	// The relay holds every envelope but no key, and no share was wrapped to it.
	rd, _ := R.Digest(api.SpaceRef{Space: sp.ID})
	if rd.Digest != "" {
		t.Fatalf("relay computed a state digest: it holds a key")
	}
	if _, err := R.GetRecord(api.RecordRef{Space: sp.ID, Record: "p1"}); err == nil {
		t.Fatal("relay can read a record")
	}
	assertNoShareTo(t, A, sp.ID, R.DeviceID())
}

// assertNoShareTo fails if any key share in the space is addressed to dev.
func assertNoShareTo(t *testing.T, a *Agent, space string, dev crypto.DeviceID) {
	t.Helper()
	id, _ := crypto.ParseSpaceID(space)
	shares := 0
	a.Envelopes(id, func(env []byte) error {
		h, err := crypto.ParseHeader(env)
		if err != nil || h.Kind != crypto.KindKeyShare {
			return nil
		}
		shares++
		_, body, _ := crypto.Verify(env, a.trustNow().certs[h.Author].Device)
		ks, err := crypto.ParseKeyShare(body)
		if err != nil {
			t.Fatal(err)
		}
		if ks.Recipient == dev {
			t.Fatalf("a key share is addressed to %s", dev)
		}
		return nil
	})
	if shares == 0 {
		t.Fatal("no key shares at all: the check proves nothing")
	}
}

// runningAgent is an agent serving until stop is called.
type runningAgent struct {
	*Agent
	cancel context.CancelFunc
	done   chan error
}

func startStoppable(t *testing.T, cfg Config) *runningAgent {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{Agent: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(r.stop)
	waitFor(t, "sync to start", func() bool { return a.SyncAddr() != "" })
	return r
}

func (r *runningAgent) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel = nil
	}
}

// TestRelayBetweenOfficersNeverOnlineTogether: A and B are never online at
// the same time; everything goes through the bureau relay, both ways. The
// relay's disk holds no plaintext and no key share is addressed to it.
func TestRelayBetweenOfficersNeverOnlineTogether(t *testing.T) {
	const canary = "CANARYrelay51"
	omn := newTestBureau(t, "OMN")
	cfgA := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	cfgB := newTestDevice(t, omn, "Boris", crypto.RoleOfficer)
	cfgR := newTestDevice(t, omn, "relay", crypto.RoleRelay)
	ks, _ := datadir.LoadKeystore(cfgA.Layout, cfgA.Unlock)
	for _, c := range []*Config{&cfgA, &cfgB, &cfgR} {
		c.MeshKey = ks.MeshKey
	}
	R := startStoppable(t, cfgR)
	cfgA.Join = []string{R.SyncAddr()}
	cfgB.Join = []string{R.SyncAddr()}
	heldBy := func(r *runningAgent, space string, n int) func() bool {
		return func() bool {
			d, err := r.Digest(api.SpaceRef{Space: space})
			return err == nil && d.Count >= n
		}
	}

	A := startStoppable(t, cfgA)
	sp, err := A.CreateSpace("case "+canary, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := A.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "p-" + canary, Fields: []api.FieldValue{{Name: "note", Value: "secret " + canary}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the relay to hold A's envelopes", heldBy(R, sp.ID, 3))
	A.stop()

	// B comes online: its certificate reaches the relay; it gets envelopes
	// it cannot open yet.
	B := startStoppable(t, cfgB)
	waitFor(t, "B to hold the space's envelopes", heldBy(B, sp.ID, 3))
	waitFor(t, "the relay to learn B's certificate", func() bool {
		return R.trustNow().certs[B.DeviceID()] != nil
	})
	B.stop()

	// A comes back, learns B from the relay and wraps the key to B.
	A = startStoppable(t, cfgA)
	waitFor(t, "the relay to hold A's key share for B", heldBy(R, sp.ID, 4))
	A.stop()

	B = startStoppable(t, cfgB)
	waitFor(t, "B to read A's record", func() bool {
		r, err := B.GetRecord(api.RecordRef{Space: sp.ID, Record: "p-" + canary})
		return err == nil && r.Fields["note"].Value == "secret "+canary
	})
	if _, err := B.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "p-" + canary, Fields: []api.FieldValue{{Name: "reply", Value: "seen " + canary}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the relay to hold B's reply", func() bool {
		st := B.Status()
		return st.UnsyncedLocal == 0
	})
	B.stop()

	A = startStoppable(t, cfgA)
	waitFor(t, "A to read B's reply", func() bool {
		r, err := A.GetRecord(api.RecordRef{Space: sp.ID, Record: "p-" + canary})
		return err == nil && r.Fields["reply"].Value == "seen "+canary
	})
	assertNoShareTo(t, A.Agent, sp.ID, R.DeviceID())
	A.stop()
	R.stop()
	scanForCanary(t, cfgR.Layout.Dir, []byte(canary))
}

// TestCatchUpManyChanges: a new officer joins after thousands of changes;
// it receives them, and the key share that arrives after them, and applies
// them in bounded batches (one unbounded write would exceed a store
// transaction). It also covers a large value travelling in bounded frames.
func TestCatchUpManyChanges(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 1500
	}
	_, cfgA, cfgB := omnOfficers(t)
	a := startSyncAgent(t, cfgA)
	sp, _ := a.CreateSpace("case", nil)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: fmt.Sprintf("r%05d", i), Fields: []api.FieldValue{{Name: "f", Value: fmt.Sprint(i)}}}); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 20<<20)
	for i := range big {
		big[i] = byte('a' + i%26)
	}
	if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "big", Fields: []api.FieldValue{{Name: "scan", Value: string(big)}}}); err != nil {
		t.Fatal(err)
	}
	cfgB.Join = []string{a.SyncAddr()}
	b := startSyncAgent(t, cfgB)
	waitFor(t, "b to catch up", func() bool {
		da, _ := a.Digest(api.SpaceRef{Space: sp.ID})
		db, _ := b.Digest(api.SpaceRef{Space: sp.ID})
		return da.Digest != "" && da == db
	})
	r, err := b.GetRecord(api.RecordRef{Space: sp.ID, Record: fmt.Sprintf("r%05d", n-1)})
	if err != nil || r.Fields["f"].Value != fmt.Sprint(n-1) {
		t.Fatalf("b's copy: %v %+v", err, r.Fields)
	}
	r, err = b.GetRecord(api.RecordRef{Space: sp.ID, Record: "big"})
	if err != nil || r.Fields["scan"].Value != string(big) {
		t.Fatalf("20 MiB value did not arrive intact: %v", err)
	}
	st := b.Status()
	if st.Sync == nil || st.Sync.EnvelopesAdded == 0 {
		t.Fatalf("sync counters: %+v", st.Sync)
	}
	waitFor(t, "a's broadcast queue to empty", func() bool { return a.Status().Sync.BroadcastQueue == 0 })
}

// TestLostEnvelopeFetchedAgain: an envelope the store acknowledged and then
// lost (here deleted behind the agent's back, as bit rot or a truncated
// log would) is reported at open and fetched again from a peer.
func TestLostEnvelopeFetchedAgain(t *testing.T) {
	_, cfgA, cfgB := omnOfficers(t)
	a := openTestAgent(t, cfgA)
	sp, _ := a.CreateSpace("case", nil)
	for i := 0; i < 5; i++ {
		a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: fmt.Sprint("r", i), Fields: []api.FieldValue{{Name: "f", Value: "v"}}})
	}
	b := openTestAgent(t, cfgB)
	transfer(t, b, a)
	a.ShareKeys()
	transfer(t, a, b)
	id, _ := crypto.ParseSpaceID(sp.ID)
	lost := envKey(id, a.dev, 4)
	if errs := a.db.kv.CommitGroups([][]kvEntry{{{Key: lost, Del: true}}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	want, _ := b.Digest(api.SpaceRef{Space: sp.ID})
	a.Close()
	b.Close()

	a = startSyncAgent(t, cfgA)
	if st := a.Status(); len(st.Missing) != 1 || st.Missing[0].From != 4 || st.Missing[0].To != 4 {
		t.Fatalf("missing at open: %+v", st.Missing)
	}
	cfgB.Join = []string{a.SyncAddr()}
	startSyncAgent(t, cfgB)
	waitFor(t, "the lost envelope to come back", func() bool { return len(a.Status().Missing) == 0 })
	got, _ := a.Digest(api.SpaceRef{Space: sp.ID})
	if got.Envelopes != want.Envelopes {
		t.Fatalf("envelopes differ after restore: %+v vs %+v", got, want)
	}
}
