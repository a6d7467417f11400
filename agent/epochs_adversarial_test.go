package agent

// Adversarial tests of epoch ordering and key wrapping (issue 12, items 3
// and 8): a member must not be able to push another device's clock with a
// key share dated far ahead, and a bureau a space is released to must not
// be cut off silently when a member that cannot judge its devices rotates.
// Real agents on Badger; every envelope moves through Ingest, as sync or a
// bundle would.

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
	"fieldsync/internal/datadir"
	fsync "fieldsync/sync"
)

// epochLongCert re-enrolls a test device with a certificate valid for
// years (an attacker's laptop enrolled for a long mission).
func epochLongCert(t *testing.T, tb *testBureau, cfg Config, officer string, years int) {
	t.Helper()
	ks, err := datadir.LoadKeystore(cfg.Layout, cfg.Unlock)
	if err != nil {
		t.Fatal(err)
	}
	req := crypto.NewRequest(ks.Identity, crypto.NameCommitment(officer, ks.NameSalt))
	now := time.Now()
	cert, err := tb.b.Issue(req, crypto.RoleOfficer, now.Add(-time.Hour), now.AddDate(years, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.Layout.Cert(), cert.Marshal(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// epochForge signs the next envelope of the author's log in the space with
// the given HLC (not the author's clock), without storing it.
func epochForge(t *testing.T, author *Agent, space crypto.SpaceID, kind crypto.Kind, body []byte, hlc crdt.Timestamp) []byte {
	t.Helper()
	author.stateMu.Lock()
	defer author.stateMu.Unlock()
	hd := author.spaces[space].heads[author.dev]
	h := crypto.Header{Kind: kind, Space: space, Seq: hd.Seq + 1, HLC: hlc.Pack(), Prev: hd.Hash}
	env, err := crypto.Seal(h, body, nil, author.id, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func epochClock(a *Agent) crdt.Timestamp {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	return a.clock.Last
}

// A trusted member (its certificate valid for five more years) signs a key
// share of a fresh epoch dated just before its certificate expires. The
// receiver must take it (it is valid), yet its clock must stay within
// physical time plus the drift limit through its next rotation and write,
// so that its writes stay acceptable to every peer; and that rotation must
// still become the current epoch on every replica.
func TestAdvClockPushedByFutureShare(t *testing.T) {
	omn, kaz := newTestBureau(t, "OMN"), newTestBureau(t, "KAZ")
	mcfg := newTestDevice(t, omn, "Mallory", crypto.RoleOfficer, kaz)
	epochLongCert(t, omn, mcfg, "Mallory", 5)
	m := openTestAgent(t, mcfg)
	b := openTestAgent(t, newTestDevice(t, omn, "Bravo", crypto.RoleOfficer, kaz))
	c := openTestAgent(t, newTestDevice(t, omn, "Charlie", crypto.RoleOfficer, kaz))
	sp, err := b.CreateSpace("pushed", []string{"KAZ"})
	if err != nil {
		t.Fatal(err)
	}
	id := advSpaceID(t, sp.ID)
	advPut(t, b, sp.ID, "b0", "before")
	advSettle(t, b, m, c)

	// Mallory wraps a fresh key to Bravo, dated a minute before its own
	// certificate expires: validly signed and within its validity.
	fresh, err := crypto.NewSpaceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	share, err := crypto.WrapKey(fresh, id, certOf(t, m, b.dev).Device, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	future := crdt.Timestamp{Wall: m.cert.NotAfter.Add(-time.Minute).UnixMilli()}
	env := epochForge(t, m, id, crypto.KindKeyShare, share, future)
	advAccept(t, env, m, b, c)

	// Bravo's next rotation (a withdrawal) and write.
	if _, err := b.ChangeRelease(api.SpaceBureauRequest{Space: sp.ID, Bureau: "KAZ"}, false); err != nil {
		t.Fatal(err)
	}
	rot := advStateOf(t, b, id).current
	advPut(t, b, sp.ID, "b1", "after the rotation")
	// Charlie takes every one of Bravo's envelopes and reads its write.
	before := c.Status().Rejected[RejectExpired]
	advMove(t, b, c)
	if n := c.Status().Rejected[RejectExpired] - before; n != 0 {
		t.Fatalf("Charlie refused %d of Bravo's envelopes as expired (Bravo's clock is at %v)", n, epochClock(b))
	}
	if v, err := advValue(c, sp.ID, "b1"); err != nil || v != "after the rotation" {
		t.Fatalf("Charlie reads b1: %q, %v", v, err)
	}
	limit := time.Now().Add(b.cfg.MaxDrift)
	if got := epochClock(b); got.Wall > limit.UnixMilli() {
		t.Fatalf("Bravo's clock was pushed to %v (physical time + drift is %v)", got, limit.UTC())
	}
	for _, h := range advHeaders(t, b, id, b.dev) {
		if w := crdt.UnpackTimestamp(h.HLC).Wall; w > limit.UnixMilli() {
			t.Fatalf("Bravo signed seq %d (%v) at %v, beyond physical time + drift", h.Seq, h.Kind, crdt.UnpackTimestamp(h.HLC))
		}
	}
	advSettle(t, b, m, c)
	for _, x := range []*Agent{b, m, c} {
		if got := advStateOf(t, x, id).current; got != rot {
			t.Fatalf("%s: current epoch %s, want Bravo's rotation %s (Mallory's fresh key %s)", x.dev, got, rot, fresh.ID())
		}
	}
	// And the clock stays put across a restart.
	b = advReopen(t, b)
	if got := epochClock(b); got.Wall > time.Now().Add(b.cfg.MaxDrift).UnixMilli() {
		t.Fatalf("after restart Bravo's clock is %v", got)
	}
}

// A space released to KAZ: Bravo (OMN) trusts KAZ and knows KAZ's device
// K; Alpha (OMN) has no trust entry for KAZ. Alpha cannot judge K, which
// holds the current epoch, so its first write rotates and wraps the new
// key to OMN devices only. Bravo, holding that key once it arrives, must
// wrap it on to K by itself (nobody calls ShareKeys here); until it does,
// K's status shows what it holds and cannot open, and from whom.
func TestAdvReleasedBureauNotCutOff(t *testing.T) {
	omn, kaz := newTestBureau(t, "OMN"), newTestBureau(t, "KAZ")
	a := openTestAgent(t, newTestDevice(t, omn, "Alpha", crypto.RoleOfficer))
	b := openTestAgent(t, newTestDevice(t, omn, "Bravo", crypto.RoleOfficer, kaz))
	k := openTestAgent(t, newTestDevice(t, kaz, "Kilo", crypto.RoleOfficer, omn))
	sp, err := b.CreateSpace("released to KAZ", []string{"KAZ"})
	if err != nil {
		t.Fatal(err)
	}
	id := advSpaceID(t, sp.ID)
	advPut(t, b, sp.ID, "b0", "bravo's")
	// Setup: Bravo meets Alpha and K and wraps the first epoch to both.
	advCerts(t, b, a, k)
	advCerts(t, k, a, b)
	advCerts(t, a, b)
	if _, err := b.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	epochSyncMove(t, b, a)
	epochSyncMove(t, b, k)
	e1 := advStateOf(t, b, id).current
	if v, err := advValue(k, sp.ID, "b0"); err != nil || v != "bravo's" {
		t.Fatalf("setup: K reads b0: %q, %v", v, err)
	}
	epochCheckUnreadable(t, k, sp.ID, a.dev, false)
	// Alpha writes: it rotates (it cannot judge K, which holds e1).
	advPut(t, a, sp.ID, "a1", "alpha's")
	e2 := advLastChangeEpoch(t, a, id, a.dev)
	if e2 == e1 {
		t.Fatalf("setup: Alpha wrote under the first epoch")
	}
	// K gets Alpha's envelopes (through a relay, say) before Bravo wraps anything.
	epochSyncMove(t, a, k)
	if _, err := advValue(k, sp.ID, "a1"); err == nil {
		t.Fatalf("setup: K reads a1 without a key")
	}
	epochCheckUnreadable(t, k, sp.ID, a.dev, true)
	// Bravo syncs with Alpha, then K with Bravo: nothing else happens.
	bravoBefore := len(advLog(t, b, id, b.dev))
	epochSyncMove(t, a, b)
	epochSyncMove(t, b, k)
	if !slices.Contains(advStateOf(t, k, id).keys, e2) {
		t.Fatalf("K never got Alpha's epoch %s (Bravo holds it: %v)", e2, slices.Contains(advStateOf(t, b, id).keys, e2))
	}
	for _, rec := range []string{"b0", "a1"} {
		if _, err := advValue(k, sp.ID, rec); err != nil {
			t.Fatalf("K cannot read %s: %v", rec, err)
		}
	}
	// Bravo wrapped once, to K only (Alpha had wrapped to Bravo itself).
	var to []crypto.DeviceID
	for _, env := range advLog(t, b, id, b.dev)[bravoBefore:] {
		if h, _ := crypto.ParseHeader(env); h.Kind == crypto.KindKeyShare {
			ks, err := crypto.ParseKeyShare(env[crypto.HeaderSize : crypto.HeaderSize+int(h.BodyLen)])
			if err != nil {
				t.Fatal(err)
			}
			if ks.Epoch != e2 || len(ks.Replaces) == 0 {
				t.Fatalf("Bravo wrapped epoch %s replacing %v, want %s (which replaces %s)", ks.Epoch, ks.Replaces, e2, e1)
			}
			to = append(to, ks.Recipient)
		}
	}
	if !slices.Equal(to, []crypto.DeviceID{k.dev}) {
		t.Fatalf("Bravo wrapped Alpha's epoch to %v, want K (%s) only", to, k.dev)
	}
	epochCheckUnreadable(t, k, sp.ID, a.dev, false)
}

// epochCheckUnreadable checks what status, space list and the metrics say
// about the envelopes of a space held that cannot be opened: some, all of
// them by author (want), or none.
func epochCheckUnreadable(t *testing.T, a *Agent, space string, author crypto.DeviceID, want bool) {
	t.Helper()
	st := a.Status()
	var spaces []api.Space
	for _, s := range a.ListSpaces() {
		if s.ID == space {
			spaces = append(spaces, s)
		}
	}
	if len(spaces) != 1 {
		t.Fatalf("space list: %d entries for %s", len(spaces), space)
	}
	sl := spaces[0]
	metrics := scrapeMetrics(t, a)
	if !want {
		if len(st.Unreadable) != 0 || sl.Unreadable != 0 || len(sl.UnreadableAuthors) != 0 {
			t.Fatalf("nothing is unreadable, yet status says %+v and space list %+v", st.Unreadable, sl)
		}
		if !strings.Contains(metrics, "\nfieldsync_unreadable_envelopes 0\n") {
			t.Fatalf("metrics: %s", grepLines(metrics, "unreadable"))
		}
		return
	}
	if len(st.Unreadable) != 1 || st.Unreadable[0].Space != space || st.Unreadable[0].Envelopes == 0 ||
		!slices.Equal(st.Unreadable[0].Authors, []string{author.String()}) {
		t.Fatalf("status.unreadable %+v, want envelopes of %s in %s", st.Unreadable, author, space)
	}
	if sl.Unreadable != st.Unreadable[0].Envelopes || !slices.Equal(sl.UnreadableAuthors, []string{author.String()}) {
		t.Fatalf("space list %+v, status %+v", sl, st.Unreadable)
	}
	if !strings.Contains(metrics, fmt.Sprintf("\nfieldsync_unreadable_envelopes %d\n", sl.Unreadable)) ||
		!strings.Contains(metrics, "\nfieldsync_unreadable_spaces 1\n") {
		t.Fatalf("metrics: %s", grepLines(metrics, "unreadable"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// epochSyncMove hands every envelope `from` holds to `to` the way a sync
// stream does: in (author, seq) order, as batches through the sync
// adapter's IngestBatch (certificates are not moved: the caller does).
func epochSyncMove(t *testing.T, from, to *Agent) {
	t.Helper()
	for _, space := range from.SpaceIDs() {
		var envs []fsync.Envelope
		err := from.Envelopes(space, func(env []byte) error {
			h, err := crypto.ParseHeader(env)
			if err != nil {
				return err
			}
			envs = append(envs, fsync.Envelope{Space: fsync.SpaceID(h.Space), Author: fsync.PeerID(h.Author), Seq: h.Seq, Data: env})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range (syncAdapter{to}).IngestBatch(fsync.PeerID(from.dev), envs) {
			var re *fsync.RejectError
			if r.Err != nil && !errors.As(r.Err, &re) {
				t.Fatalf("ingest batch on %s: %v", to.dev, r.Err)
			}
		}
		// What the batch handed to the group committer is on disk after a
		// barrier (as at the end of a sync stream or a bundle import).
		to.com.Barrier()
	}
}

func scrapeMetrics(t *testing.T, a *Agent) string {
	t.Helper()
	text, err := a.MetricsText()
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// TestEpochPickRules: the current epoch from the keys held and the lists of
// the shares (docs/crdt.md, "Epochs"), in both directions where it orders,
// and the same whatever order the shares came in.
func TestEpochPickRules(t *testing.T) {
	const omn, kaz, tjk = "omn-fp", "kaz-fp", "tjk-fp"
	keys := make([]*crypto.SpaceKey, 6)
	for i := range keys {
		k, err := crypto.NewSpaceKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
	}
	id := func(i int) crypto.KeyID { return keys[i].ID() }
	larger := func(i, j int) int {
		a, b := id(i), id(j)
		if string(a[:]) > string(b[:]) {
			return i
		}
		return j
	}
	type share struct {
		epoch    int
		bureau   string
		replaces []int
	}
	pick := func(held []int, shares []share) crypto.KeyID {
		t.Helper()
		var got crypto.KeyID
		for round := range 8 { // shares in varied orders: one answer
			sp := &spaceState{keys: map[crypto.KeyID]*crypto.SpaceKey{}, meta: spaceMeta{ReleaseFP: []string{kaz, omn}}}
			order := slices.Clone(shares)
			if round%2 == 1 {
				slices.Reverse(order)
			}
			for _, s := range order {
				ks := crypto.KeyShare{Epoch: id(s.epoch)}
				for _, r := range s.replaces {
					ks.Replaces = append(ks.Replaces, id(r))
				}
				sp.noteShare(ks, s.bureau)
			}
			for _, h := range held {
				sp.adoptEpoch(keys[h], 0)
			}
			if sp.current == nil {
				t.Fatal("no current epoch")
			}
			if round > 0 && sp.current.ID() != got {
				t.Fatalf("order changed the answer: %s, then %s", got, sp.current.ID())
			}
			got = sp.current.ID()
		}
		return got
	}
	// A chain: 1 replaces 0, 2 replaces 1 — whichever key ID is larger.
	chain := []share{{0, omn, nil}, {1, omn, []int{0}}, {2, kaz, []int{1}}}
	if got := pick([]int{0, 1, 2}, chain); got != id(2) {
		t.Fatalf("chain: %s, want the last rotation %s", got, id(2))
	}
	if got := pick([]int{0, 1}, chain); got != id(1) {
		t.Fatalf("chain without the last key: %s, want %s", got, id(1))
	}
	// Concurrent rotations of the same epoch: the larger key ID, everywhere.
	conc := []share{{0, omn, nil}, {1, omn, []int{0}}, {2, omn, []int{0}}}
	if got, want := pick([]int{0, 1, 2}, conc), id(larger(1, 2)); got != want {
		t.Fatalf("concurrent: %s, want %s", got, want)
	}
	// Deeper wins over a larger key ID: 3 replaced 2 (which replaced 0);
	// 1 is a concurrent head of depth 2.
	deep := []share{{0, omn, nil}, {1, omn, []int{0}}, {2, omn, []int{0}}, {3, omn, []int{2}}}
	if got := pick([]int{0, 1, 3}, deep); got != id(3) {
		t.Fatalf("deeper: %s, want %s", got, id(3))
	}
	// A bureau the space is not released to cannot retire epochs, and its
	// epochs are never current while an entitled one is held.
	hostile := []share{{0, omn, nil}, {1, omn, []int{0}}, {4, tjk, []int{0, 1}}, {5, tjk, []int{4, 1}}}
	if got := pick([]int{0, 1, 4, 5}, hostile); got != id(1) {
		t.Fatalf("non-entitled lists: %s, want %s", got, id(1))
	}
	// A hostile cycle (each lists the other): still one answer, one of them.
	cycle := []share{{0, omn, []int{1}}, {1, omn, []int{0}}}
	if got := pick([]int{0, 1}, cycle); got != id(0) && got != id(1) {
		t.Fatalf("cycle: %s", got)
	}
	// Only keys no entitled device wrapped: the largest key ID held.
	if got, want := pick([]int{4, 5}, []share{{4, tjk, nil}, {5, tjk, nil}}), id(larger(4, 5)); got != want {
		t.Fatalf("unbacked only: %s, want %s", got, want)
	}
}

// A store whose clock was pushed years ahead (by an agent before this fix)
// opens with the clock back at physical time, and its next write is one
// peers accept.
func TestAdvPushedClockRestartsAtOpen(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Alpha", crypto.RoleOfficer))
	b := openTestAgent(t, newTestDevice(t, omn, "Bravo", crypto.RoleOfficer))
	sp, err := a.CreateSpace("pushed before", nil)
	if err != nil {
		t.Fatal(err)
	}
	advSettle(t, a, b)
	future := crdt.Timestamp{Wall: time.Now().AddDate(3, 0, 0).UnixMilli()}
	a.stateMu.Lock()
	err = a.db.kv.CommitGroups([][]kvEntry{{a.db.entry(metaKey("hlc"), be64(future.Pack()))}})[0]
	a.stateMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	a = advReopen(t, a)
	if got := epochClock(a); got.Wall > time.Now().Add(a.cfg.MaxDrift).UnixMilli() {
		t.Fatalf("after open the clock is %v", got)
	}
	advPut(t, a, sp.ID, "a1", "after the restart")
	advSettle(t, a, b)
	if v, err := advValue(b, sp.ID, "a1"); err != nil || v != "after the restart" {
		t.Fatalf("Bravo reads a1: %q, %v (rejected %v)", v, err, b.Status().Rejected)
	}
}

// A store written before epochs were ordered causally (no lists in its
// metadata) is migrated at open: the lists are rebuilt from the key shares
// in the log and the current epoch is the same as before.
func TestEpochsMigratedAtOpen(t *testing.T) {
	omn, kaz := newTestBureau(t, "OMN"), newTestBureau(t, "KAZ")
	a := openTestAgent(t, newTestDevice(t, omn, "Alpha", crypto.RoleOfficer, kaz))
	b := openTestAgent(t, newTestDevice(t, omn, "Bravo", crypto.RoleOfficer, kaz))
	sp, err := a.CreateSpace("migrated", []string{"KAZ"})
	if err != nil {
		t.Fatal(err)
	}
	id := advSpaceID(t, sp.ID)
	advSettle(t, a, b)
	if _, err := b.ChangeRelease(api.SpaceBureauRequest{Space: sp.ID, Bureau: "KAZ"}, false); err != nil {
		t.Fatal(err)
	}
	advSettle(t, a, b)
	before := advStateOf(t, a, id)
	a.stateMu.Lock()
	m := a.spaces[id].meta
	m.Epochs, m.EpochStarts = nil, map[string]uint64{before.current.String(): 1}
	err = a.db.kv.CommitGroups([][]kvEntry{{a.db.entry(spaceKey(id), m.marshal())}})[0]
	a.stateMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	a = advReopen(t, a)
	if st := advStateOf(t, a, id); st.current != before.current || !slices.Equal(st.keys, before.keys) {
		t.Fatalf("after migration %+v, before %+v", st, before)
	}
	a.stateMu.Lock()
	migrated := a.spaces[id].meta
	a.stateMu.Unlock()
	if migrated.EpochStarts != nil || len(migrated.Epochs) != len(before.keys) {
		t.Fatalf("migrated metadata: starts %v, %d epochs known", migrated.EpochStarts, len(migrated.Epochs))
	}
}

// A device whose own clock ran hours ahead wrote at that time, then its
// clock was set back and the agent restarted: the clock restarted from
// physical time, below the device's own last envelope, and its next
// envelope's HLC came before the previous one in its own log (the chaos
// test's seed 7). It now restarts no lower than its own last envelope.
func TestOwnLogHLCMonotonicAfterClockSetBack(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	var offset atomic.Int64
	cfg := newTestDevice(t, omn, "Alpha", crypto.RoleOfficer)
	cfg.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	a := openTestAgent(t, cfg)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	offset.Store(int64(10 * time.Hour))
	advPut(t, a, sp.ID, "r", "ahead")
	offset.Store(0)
	a = advReopen(t, a)
	advPut(t, a, sp.ID, "r", "after the clock was set back")
	id := advSpaceID(t, sp.ID)
	var last uint64
	a.Envelopes(id, func(env []byte) error {
		h, err := crypto.ParseHeader(env)
		if err != nil {
			t.Fatal(err)
		}
		if h.HLC <= last {
			t.Fatalf("seq %d has HLC %s, not after the previous envelope's %s", h.Seq, crdt.UnpackTimestamp(h.HLC), crdt.UnpackTimestamp(last))
		}
		last = h.HLC
		return nil
	})
}
