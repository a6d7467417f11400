package agent

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
	"fieldsync/internal/datadir"
	fsync "fieldsync/sync"
)

// receiptSync moves certificates and every envelope from one agent to
// another as one sync batch (the adapter's IngestBatch, which writes the
// receipts a batch owes at its end), and returns how many were added.
func receiptSync(t testing.TB, from, to *Agent) int {
	t.Helper()
	for _, c := range from.Certificates() {
		if _, err := to.AddCertificate(c); err != nil && !errors.Is(err, crypto.ErrUntrusted) {
			t.Fatalf("add certificate: %v", err)
		}
	}
	added := 0
	for _, sp := range from.SpaceIDs() {
		var envs []fsync.Envelope
		err := from.Envelopes(sp, func(env []byte) error {
			h, err := crypto.ParseHeader(env)
			if err != nil {
				return err
			}
			envs = append(envs, fsync.Envelope{Space: fsync.SpaceID(h.Space), Author: fsync.PeerID(h.Author), Seq: h.Seq, Data: bytes.Clone(env)})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range (syncAdapter{a: to}).IngestBatch(fsync.PeerID(from.dev), envs) {
			if r.Added {
				added++
			}
		}
	}
	to.com.Barrier()
	return added
}

// receiptPair is an OMN officer A (owner) and a KAZ officer K, a space of
// A's released to KAZ with the given policy, K holding its key.
func receiptPair(t testing.TB, policy string) (a, k *Agent, space string) {
	t.Helper()
	omn, kaz := newTestBureau(t, "OMN"), newTestBureau(t, "KAZ")
	a = openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer, kaz))
	k = openTestAgent(t, newTestDevice(t, kaz, "Kairat", crypto.RoleOfficer, omn))
	sp, err := a.CreateSpace("joint", []string{"KAZ"})
	if err != nil {
		t.Fatal(err)
	}
	if policy != "" {
		v, err := a.SetReceiptPolicy(api.ReceiptPolicyRequest{Space: sp.ID, Receipts: policy})
		if err != nil {
			t.Fatal(err)
		}
		if v.Receipts != policy {
			t.Fatalf("space shows receipts %q, want %q", v.Receipts, policy)
		}
	}
	receiptSync(t, k, a) // K's certificate: A wraps the key to it
	if _, err := a.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	return a, k, sp.ID
}

func receiptCount(t testing.TB, x *Agent, space string) []api.Receipt {
	t.Helper()
	rs, err := x.Receipts(api.ReceiptsRequest{Space: space})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// Per change: K opens A's three changes, signs one receipt each; they sync
// back, and A's history shows, for each change, K's device and bureau.
func TestReceiptPerChangeShownInHistory(t *testing.T) {
	a, k, space := receiptPair(t, api.ReceiptsPerChange)
	for i := range 3 {
		advPut(t, a, space, "p1", fmt.Sprintf("v%d", i))
	}
	receiptSync(t, a, k)
	if v, _ := advValue(k, space, "p1"); v != "v2" {
		t.Fatalf("K reads %q", v)
	}
	if got := receiptCount(t, k, space); len(got) != 3 {
		t.Fatalf("K holds %d receipts, want 3 (one per change): %+v", len(got), got)
	}
	receiptSync(t, k, a)
	hist, err := a.History(api.RecordRef{Space: space, Record: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 3 {
		t.Fatalf("history has %d entries", len(hist))
	}
	for _, e := range hist {
		if len(e.Receipts) != 1 {
			t.Fatalf("change %s:%d has receipts %+v, want one from K", e.Author, e.Seq, e.Receipts)
		}
		r := e.Receipts[0]
		if r.Device != k.dev.String() || r.Bureau != "KAZ" || r.Officer != "Kairat" || r.Time == "" {
			t.Fatalf("receipt %+v, want K's device, bureau KAZ, officer Kairat", r)
		}
	}
	rs, err := a.Receipts(api.ReceiptsRequest{Space: space, Record: "p1"})
	if err != nil || len(rs) != 3 {
		t.Fatalf("receipts for p1: %v %+v", err, rs)
	}
	for _, r := range rs {
		if r.Status != api.ReceiptValid || r.Author != a.dev.String() || r.FromSeq != r.ToSeq || r.Record != "p1" {
			t.Fatalf("receipt row %+v", r)
		}
	}
	// No receipt of a receipt: A applied K's receipts and owes nothing; K
	// did not receipt its own bureau's writes (none) nor A's receipts.
	receiptSync(t, a, k)
	if got := receiptCount(t, k, space); len(got) != 3 {
		t.Fatalf("after syncing back, %d receipts, want still 3", len(got))
	}
	// The owning bureau's own device writes none.
	if n := len(a.spaces[advSpaceID(t, space)].receiptDue); n != 0 {
		t.Fatalf("A owes %d receipts", n)
	}
	// Replicas agree: K's receipts are part of the space state on both.
	if da, dk := advDigest(t, a, space), advDigest(t, k, space); da.Digest != dk.Digest || da.Envelopes != dk.Envelopes {
		t.Fatalf("digests differ: %+v vs %+v", da, dk)
	}
}

// Policy off (the default): no receipts at all.
func TestReceiptPolicyOffWritesNone(t *testing.T) {
	a, k, space := receiptPair(t, "")
	for i := range 3 {
		advPut(t, a, space, "p1", fmt.Sprintf("v%d", i))
	}
	receiptSync(t, a, k)
	if v, _ := advValue(k, space, "p1"); v != "v2" {
		t.Fatalf("K reads %q", v)
	}
	if got := receiptCount(t, k, space); len(got) != 0 {
		t.Fatalf("policy off, yet %d receipts", len(got))
	}
	var kspace api.Space
	for _, s := range k.ListSpaces() {
		if s.ID == space {
			kspace = s
		}
	}
	if kspace.Receipts != api.ReceiptsOff {
		t.Fatalf("K shows policy %q", kspace.Receipts)
	}
}

// Per batch: one receipt for a batch of many changes, one range naming the
// last envelope's ID; every change of the range shows it in history.
func TestReceiptPerBatchOnePerBatch(t *testing.T) {
	a, k, space := receiptPair(t, api.ReceiptsPerBatch)
	for i := range 20 {
		advPut(t, a, space, fmt.Sprintf("r%d", i), "x")
	}
	receiptSync(t, a, k)
	rs := receiptCount(t, k, space)
	if len(rs) != 1 {
		t.Fatalf("%d receipt rows, want 1: %+v", len(rs), rs)
	}
	if rs[0].ToSeq-rs[0].FromSeq+1 < 20 || rs[0].Status != api.ReceiptValid {
		t.Fatalf("range %d..%d (%s), want at least A's 20 changes", rs[0].FromSeq, rs[0].ToSeq, rs[0].Status)
	}
	receiptSync(t, k, a)
	for i := range 20 {
		hist, err := a.History(api.RecordRef{Space: space, Record: fmt.Sprintf("r%d", i)})
		if err != nil || len(hist) != 1 || len(hist[0].Receipts) != 1 || hist[0].Receipts[0].Bureau != "KAZ" {
			t.Fatalf("history of r%d: %v %+v", i, err, hist)
		}
	}
	// A second batch gets its own receipt.
	advPut(t, a, space, "r-late", "y")
	receiptSync(t, a, k)
	if rs := receiptCount(t, k, space); len(rs) != 2 {
		t.Fatalf("%d receipts after a second batch, want 2", len(rs))
	}
}

// A forged receipt: K signs a receipt naming an envelope ID A never wrote
// for its seq (and one naming K's own change). It syncs like any envelope,
// but A shows it as invalid and history lists none. First the attack as
// the receipt format allows it: the rows exist.
func TestReceiptForgedShownInvalid(t *testing.T) {
	a, k, space := receiptPair(t, api.ReceiptsOff)
	advPut(t, a, space, "p1", "v")
	receiptSync(t, a, k)
	id := advSpaceID(t, space)
	aHead := func() uint64 {
		a.stateMu.Lock()
		defer a.stateMu.Unlock()
		return a.spaces[id].heads[a.dev].Seq
	}()
	var bogus [32]byte
	bogus[0] = 1
	forged := marshalReceipt([]receiptRange{{author: a.dev, first: 1, last: aHead, id: bogus}})
	future := marshalReceipt([]receiptRange{{author: a.dev, first: aHead + 1, last: aHead + 5, id: bogus}})
	err := k.withWrite(func(t *tx) error {
		sp := k.spaces[id]
		t.changed()
		entries, err := k.agentBodyEntries(sp, [][]byte{forged, future})
		t.put(entries...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	receiptSync(t, k, a)
	rs := receiptCount(t, a, space)
	if len(rs) != 2 {
		t.Fatalf("A holds %d receipt rows, want the 2 forged ones listed: %+v", len(rs), rs)
	}
	status := map[uint64]string{}
	for _, r := range rs {
		status[r.FromSeq] = r.Status
	}
	if status[1] != api.ReceiptInvalid || status[aHead+1] != api.ReceiptUnverified {
		t.Fatalf("statuses %v: want the wrong ID invalid, the unheld range unverified", status)
	}
	hist, err := a.History(api.RecordRef{Space: space, Record: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range hist {
		if len(e.Receipts) != 0 {
			t.Fatalf("history shows a forged receipt: %+v", e.Receipts)
		}
	}
	// A receipt naming its own author's log is a no-op everywhere.
	self := marshalReceipt([]receiptRange{{author: k.dev, first: 1, last: 1, id: bogus}})
	before := k.Status().Rejected[RejectMismatch]
	if err := k.withWrite(func(t *tx) error {
		t.changed()
		entries, err := k.agentBodyEntries(k.spaces[id], [][]byte{self})
		t.put(entries...)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if after := k.Status().Rejected[RejectMismatch]; after != before+1 {
		t.Fatalf("mismatch count %d -> %d", before, after)
	}
	if len(receiptCount(t, k, space)) != 2 {
		t.Fatal("a self-receipt was stored")
	}
}

// Only the owning bureau's officers set the policy: K's attempt is refused
// by its agent, and a policy envelope K signs anyway is a no-op on A.
func TestReceiptPolicyOwnerOnly(t *testing.T) {
	a, k, space := receiptPair(t, api.ReceiptsOff)
	advPut(t, a, space, "p1", "v")
	receiptSync(t, a, k)
	if _, err := k.SetReceiptPolicy(api.ReceiptPolicyRequest{Space: space, Receipts: api.ReceiptsPerChange}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("KAZ device set the policy of an OMN space: %v", err)
	}
	id := advSpaceID(t, space)
	if err := k.withWrite(func(t *tx) error {
		t.changed()
		entries, err := k.agentBodyEntries(k.spaces[id], [][]byte{marshalPolicy(policyPerChange)})
		t.put(entries...)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	receiptSync(t, k, a)
	for _, x := range []*Agent{a, k} {
		x.stateMu.Lock()
		mode := x.spaces[id].meta.receiptMode()
		x.stateMu.Unlock()
		if mode != policyOff {
			t.Fatalf("%s took a policy from a device of another bureau", x.dev)
		}
	}
	// A later owner's policy is taken by K, and receipts follow.
	if _, err := a.SetReceiptPolicy(api.ReceiptPolicyRequest{Space: space, Receipts: api.ReceiptsPerBatch}); err != nil {
		t.Fatal(err)
	}
	advPut(t, a, space, "p2", "v")
	receiptSync(t, a, k)
	if rs := receiptCount(t, k, space); len(rs) != 1 {
		t.Fatalf("%d receipts after the owner set per-batch, want 1", len(rs))
	}
}

func TestReceiptBodyDecodeStrict(t *testing.T) {
	var d crypto.DeviceID
	d[0] = 9
	good := marshalReceipt([]receiptRange{{author: d, first: 1, last: 3}, {author: d, first: 5, last: 5}})
	if rs, err := parseReceipt(good); err != nil || len(rs) != 2 {
		t.Fatalf("parse: %v %v", rs, err)
	}
	bad := [][]byte{
		nil, {bodyReceiptV1}, {bodyReceiptV1, 0},
		append(bytes.Clone(good), 0),
		good[:len(good)-1],
		marshalReceipt([]receiptRange{{author: d, first: 5, last: 5}, {author: d, first: 1, last: 3}}),
		marshalReceipt([]receiptRange{{author: d, first: 1, last: 3}, {author: d, first: 3, last: 4}}),
		marshalReceipt([]receiptRange{{author: d, first: 0, last: 3}}),
		marshalReceipt([]receiptRange{{author: d, first: 4, last: 3}}),
	}
	for i, b := range bad {
		if _, err := parseReceipt(b); err == nil {
			t.Errorf("case %d: accepted %x", i, b)
		}
	}
	if _, err := parsePolicy([]byte{bodyPolicyV1, 3}); err == nil {
		t.Error("unknown policy mode accepted")
	}
}

// Receipts go to other bureaus' changes only: a second OMN device opening
// A's changes writes none, while A, opening K's change, writes one (the
// policy binds every member, the owner's devices included).
func TestReceiptOnlyForOtherBureaus(t *testing.T) {
	omn, kaz := newTestBureau(t, "OMN"), newTestBureau(t, "KAZ")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer, kaz))
	b := openTestAgent(t, newTestDevice(t, omn, "Bakhyt", crypto.RoleOfficer, kaz))
	k := openTestAgent(t, newTestDevice(t, kaz, "Kairat", crypto.RoleOfficer, omn))
	sp, err := a.CreateSpace("joint", []string{"KAZ"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.SetReceiptPolicy(api.ReceiptPolicyRequest{Space: sp.ID, Receipts: api.ReceiptsPerChange}); err != nil {
		t.Fatal(err)
	}
	receiptSync(t, k, a)
	receiptSync(t, b, a)
	if _, err := a.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	advPut(t, a, sp.ID, "p1", "from A")
	receiptSync(t, a, b)
	receiptSync(t, a, k)
	if v, _ := advValue(b, sp.ID, "p1"); v != "from A" {
		t.Fatalf("B reads %q", v)
	}
	if rs := receiptCount(t, b, sp.ID); len(rs) != 0 {
		t.Fatalf("B (same bureau as A) wrote receipts: %+v", rs)
	}
	if rs := receiptCount(t, k, sp.ID); len(rs) != 1 || rs[0].Device != k.dev.String() {
		t.Fatalf("K's receipts: %+v", rs)
	}
	advPut(t, k, sp.ID, "k1", "from K")
	receiptSync(t, k, a)
	hist, err := a.History(api.RecordRef{Space: sp.ID, Record: "k1"})
	if err != nil || len(hist) != 1 {
		t.Fatalf("history of k1: %v %+v", err, hist)
	}
	if len(hist[0].Receipts) != 1 || hist[0].Receipts[0].Device != a.dev.String() || hist[0].Receipts[0].Bureau != "OMN" {
		t.Fatalf("K's change has receipts %+v, want A's", hist[0].Receipts)
	}
}

// Through a relay, over real sync on loopback, with A and K never online
// together: K's receipt reaches A, while the relay stores and forwards it
// as one more sealed change envelope — it holds no key to open it, keeps no
// receipt, and the clear header of a receipt is that of any change.
func TestReceiptThroughRelayUnreadable(t *testing.T) {
	omn, kaz := newTestBureau(t, "OMN"), newTestBureau(t, "KAZ")
	cfgA := newTestDevice(t, omn, "Amina", crypto.RoleOfficer, kaz)
	cfgK := newTestDevice(t, kaz, "Kairat", crypto.RoleOfficer, omn)
	cfgR := newTestDevice(t, omn, "relay", crypto.RoleRelay)
	ks, _ := datadir.LoadKeystore(cfgA.Layout, cfgA.Unlock)
	for _, c := range []*Config{&cfgA, &cfgK, &cfgR} {
		c.MeshKey = ks.MeshKey
	}
	R := startStoppable(t, cfgR)
	cfgA.Join = []string{R.SyncAddr()}
	cfgK.Join = []string{R.SyncAddr()}
	heldBy := func(r *runningAgent, space string, n int) func() bool {
		return func() bool {
			d, err := r.Digest(api.SpaceRef{Space: space})
			return err == nil && d.Count >= n
		}
	}
	A := startStoppable(t, cfgA)
	sp, err := A.CreateSpace("joint", []string{"KAZ"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := A.SetReceiptPolicy(api.ReceiptPolicyRequest{Space: sp.ID, Receipts: api.ReceiptsPerChange}); err != nil {
		t.Fatal(err)
	}
	advPut(t, A.Agent, sp.ID, "p1", "secret")
	waitFor(t, "the relay to hold A's log", func() bool { return A.Status().UnsyncedLocal == 0 })
	A.stop()

	K := startStoppable(t, cfgK)
	waitFor(t, "the relay to learn K's certificate", func() bool { return R.trustNow().certs[K.DeviceID()] != nil })
	K.stop()
	before := func() int { d, _ := R.Digest(api.SpaceRef{Space: sp.ID}); return d.Count }()

	A = startStoppable(t, cfgA)
	waitFor(t, "the relay to hold A's key share for K", heldBy(R, sp.ID, before+1))
	A.stop()

	K = startStoppable(t, cfgK)
	waitFor(t, "K to read A's record and receipt it", func() bool {
		v, _ := advValue(K.Agent, sp.ID, "p1")
		rs, _ := K.Receipts(api.ReceiptsRequest{Space: sp.ID})
		return v == "secret" && len(rs) == 1
	})
	waitFor(t, "the relay to hold K's receipt", func() bool { return K.Status().UnsyncedLocal == 0 })
	K.stop()

	A = startStoppable(t, cfgA)
	waitFor(t, "A's history to show K's receipt", func() bool {
		hist, err := A.History(api.RecordRef{Space: sp.ID, Record: "p1"})
		return err == nil && len(hist) == 1 && len(hist[0].Receipts) == 1 && hist[0].Receipts[0].Bureau == "KAZ"
	})
	A.stop()

	// The relay: it forwarded the receipt, and reads nothing of it.
	if rs, err := R.Receipts(api.ReceiptsRequest{Space: sp.ID}); err != nil || len(rs) != 0 {
		t.Fatalf("the relay lists receipts: %v %+v", err, rs)
	}
	id := advSpaceID(t, sp.ID)
	var kinds []string
	R.Envelopes(id, func(env []byte) error {
		h, err := crypto.ParseHeader(env)
		if err != nil || h.Author != K.DeviceID() {
			return nil
		}
		kinds = append(kinds, fmt.Sprintf("%d/%d", h.Kind, h.BodyVersion))
		if h.Kind == crypto.KindChange {
			R.stateMu.Lock()
			keys := R.spaces[id].keyring()
			R.stateMu.Unlock()
			if _, _, err := crypto.Open(env, R.trustNow().certs[h.Author].Device, keys); !errors.Is(err, crypto.ErrNoKey) {
				t.Fatalf("the relay opens K's receipt envelope? %v", err)
			}
		}
		return nil
	})
	// K's log: its profile, then the receipt — a change envelope like any.
	want := fmt.Sprintf("%d/0", crypto.KindChange)
	if len(kinds) != 2 || kinds[1] != want {
		t.Fatalf("K's envelopes on the relay (kind/body version): %v, want [profile, %s]", kinds, want)
	}
	R.stop()
}

// Forward compatibility, both ways. A build before receipts reads a receipt
// as a change of a newer version (crdt refuses it as ErrUnknownVersion) and
// keeps it waiting for an upgrade; so does this build with an agent body
// newer than it knows — and the author's later changes still apply.
func TestReceiptNewerBodyWaitsWithoutBlocking(t *testing.T) {
	if _, err := crdt.UnmarshalChange(marshalReceipt([]receiptRange{{first: 1, last: 1}})); !errors.Is(err, crdt.ErrUnknownVersion) {
		t.Fatalf("a receipt decodes as a change as: %v, want ErrUnknownVersion (older builds wait)", err)
	}
	if _, err := crdt.UnmarshalChange(marshalPolicy(policyPerBatch)); !errors.Is(err, crdt.ErrUnknownVersion) {
		t.Fatalf("a policy decodes as a change as: %v", err)
	}
	if _, err := crdt.UnmarshalChange(marshalRetention(730, 1825)); !errors.Is(err, crdt.ErrUnknownVersion) {
		t.Fatalf("a retention policy decodes as a change as: %v", err)
	}
	a, k, space := receiptPair(t, api.ReceiptsOff)
	advPut(t, a, space, "p1", "v")
	receiptSync(t, a, k)
	id := advSpaceID(t, space)
	if err := k.withWrite(func(t *tx) error {
		t.changed()
		entries, err := k.agentBodyEntries(k.spaces[id], [][]byte{{0x83, 1, 2, 3}})
		t.put(entries...)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	advPut(t, k, space, "k1", "after")
	receiptSync(t, k, a)
	if v, err := advValue(a, space, "k1"); err != nil || v != "after" {
		t.Fatalf("K's change after a newer agent body: %q %v", v, err)
	}
	waiting := 0
	a.db.scan(append([]byte{pfxPending}, id[:]...), func(k, v []byte) error {
		if len(v) == 1 && v[0] == waitUpgrade {
			waiting++
		}
		return nil
	}, nil)
	if waiting != 1 {
		t.Fatalf("%d envelopes wait for an upgrade, want the newer body", waiting)
	}
}

// Repair rebuilds the same state with receipts in the logs (their seqs are
// seen, no record changes), and receipts and the policy survive a restart.
func TestReceiptRepairSameState(t *testing.T) {
	a, k, space := receiptPair(t, api.ReceiptsPerBatch)
	for i := range 5 {
		advPut(t, a, space, fmt.Sprintf("r%d", i), "x")
	}
	receiptSync(t, a, k)
	receiptSync(t, k, a)
	if len(receiptCount(t, a, space)) != 1 {
		t.Fatal("no receipt reached A")
	}
	id := advSpaceID(t, space)
	ctxOf := func(x *Agent) []byte {
		x.stateMu.Lock()
		defer x.stateMu.Unlock()
		b, _ := x.spaces[id].ctx.MarshalBinary()
		return b
	}
	ca, ck := ctxOf(a), ctxOf(k)
	a = insRepairSame(t, a, space)
	k = insRepairSame(t, k, space)
	if !bytes.Equal(ctxOf(a), ca) || !bytes.Equal(ctxOf(k), ck) {
		t.Fatal("repair changed a causal context: receipts' seqs must count as seen")
	}
	rs := receiptCount(t, a, space)
	if len(rs) != 1 || rs[0].Status != api.ReceiptValid {
		t.Fatalf("after repair and restart, A's receipts: %+v", rs)
	}
	for _, s := range k.ListSpaces() {
		if s.ID == space && s.Receipts != api.ReceiptsPerBatch {
			t.Fatalf("after restart K shows policy %q", s.Receipts)
		}
	}
}

// A receipt owed is not lost when the agent stops before writing it: K
// applies A's changes one by one (the batch's end, which writes receipts,
// never comes), stops, and writes them after its next start. Before the
// debt was noted on disk, K wrote none.
func TestReceiptOwedSurvivesRestart(t *testing.T) {
	a, k, space := receiptPair(t, api.ReceiptsPerChange)
	for i := range 3 {
		advPut(t, a, space, fmt.Sprintf("r%d", i), "x")
	}
	for _, c := range a.Certificates() {
		if _, err := k.AddCertificate(c); err != nil && !errors.Is(err, crypto.ErrUntrusted) {
			t.Fatal(err)
		}
	}
	id := advSpaceID(t, space)
	err := a.Envelopes(id, func(env []byte) error {
		_, err := k.ingest(bytes.Clone(env), false)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	k.com.Barrier()
	if v, _ := advValue(k, space, "r2"); v != "x" {
		t.Fatalf("K reads %q", v)
	}
	if got := receiptCount(t, k, space); len(got) != 0 {
		t.Fatalf("K wrote %d receipts before the batch's end", len(got))
	}
	cfg := k.cfg
	k.Close()
	k = openTestAgent(t, cfg)
	deadline := time.Now().Add(30 * time.Second)
	for len(receiptCount(t, k, space)) < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got := receiptCount(t, k, space)
	if len(got) != 3 {
		t.Fatalf("after a restart K holds %d receipts, want the 3 it owed: %+v", len(got), got)
	}
	// Written once: the notes are gone, nothing is owed twice.
	k.stateMu.Lock()
	owed := len(k.spaces[id].receiptDue)
	k.stateMu.Unlock()
	n := 0
	if err := k.db.kv.ScanKeys([]byte{pfxOwed}, func([]byte) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if owed != 0 || n != 0 {
		t.Fatalf("after writing them K still owes %d (memory) and %d (disk)", owed, n)
	}
	cfg = k.cfg
	k.Close()
	k = openTestAgent(t, cfg)
	k.com.Barrier()
	if got := receiptCount(t, k, space); len(got) != 3 {
		t.Fatalf("after a second restart K holds %d receipts, want still 3", len(got))
	}
}
