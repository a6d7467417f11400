package agent

import (
	"bytes"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crdt"
)

// Automatic erasure under a retention policy (autoerase.go). The attack
// first: a laptop whose clock runs days ahead would erase every record of
// the space mesh-wide on its own; it erases nothing until another device's
// writes date the erase-after period as passed too. Then the records due
// are lapsed and erased, their values cut from every envelope, while a
// record reviewed (extended) since, and one written since, stay. A partner
// bureau's device, which may not erase, erases nothing.
func TestRetentionAutoErase(t *testing.T) {
	const canary = "CANARYauto16"
	a, k, space, skipA, skipK := retentionClocks(t)
	reviewDayEraseTwo(t, a, space)
	advPut(t, a, space, "old", canary)
	advPut(t, a, space, "ext", "kept by review")
	advPut(t, k, space, "kz", "k1")
	receiptSync(t, k, a)
	receiptSync(t, a, k)

	// A's clock alone runs 3 days ahead: everything looks due to it.
	skipA(2*day + 12*time.Hour)
	if _, err := a.ReviewExtend(api.ReviewActionRequest{Space: space, Record: "ext", Reason: "case still open"}); err != nil {
		t.Fatal(err)
	}
	skipA(12 * time.Hour)
	res, err := a.autoErasePass()
	if err != nil {
		t.Fatal(err)
	}
	// old held by the clocks; kz, which K wrote, left to a person; ext was
	// reviewed half a day ago.
	if res.Erased != 0 || res.Held != 1 || res.Foreign != 1 {
		t.Fatalf("a lone clock 3 days ahead: %+v, want nothing erased, 1 held, 1 foreign", res)
	}
	if v, _ := advValue(a, space, "old"); v != canary {
		t.Fatalf("old erased on a lone clock's word: %q", v)
	}
	if st := a.Status().Retention; st == nil || !st.AutoErase || st.Held != 1 || st.Foreign != 1 || st.Erased != 0 || st.LastPass == "" {
		t.Fatalf("status.retention after the held pass: %+v", st)
	}

	// K's clock agrees (K writes 3 days on): A erases what is due by both.
	skipK(3 * day)
	advPut(t, k, space, "kz", "k2") // kz's review clock restarts with its only live value
	receiptSync(t, k, a)
	if res, err = k.autoErasePass(); err != nil || res != (autoEraseResult{}) {
		t.Fatalf("the partner's pass: %+v %v, want nothing (it may not erase)", res, err)
	}
	if res, err = a.autoErasePass(); err != nil {
		t.Fatal(err)
	}
	if res.Erased != 1 || res.Held != 0 || res.Failed != 0 {
		t.Fatalf("corroborated pass: %+v, want old erased", res)
	}
	var others crdt.Timestamp
	a.withRead(func() error { others = a.othersHLC; return nil })
	if b, err := a.db.get(metaKey("hlc-others")); err != nil || others.Wall == 0 || crdt.UnpackTimestamp(beUint64(b)) != others {
		t.Fatalf("the others' clock is not stored as held (%v): a restart would forget it", err)
	}
	if r, err := a.GetRecord(api.RecordRef{Space: space, Record: "old"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old after the pass: %+v %v, want it gone (erased)", r, err)
	}
	for rec, want := range map[string]string{"ext": "kept by review", "kz": "k2"} {
		if v, _ := advValue(a, space, rec); v != want {
			t.Errorf("%s after the pass: %q, want %q", rec, v, want)
		}
	}
	hist, err := a.History(api.RecordRef{Space: space, Record: "old"})
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) == 0 || hist[len(hist)-1].Outcome != api.OutcomeErased {
		t.Fatalf("old's history does not end with its erasure: %+v", hist)
	}
	receiptSync(t, a, k)
	for _, m := range a.recordErasureBlobs() {
		if _, err := k.AddErasure(m); err != nil {
			t.Fatal(err)
		}
	}
	for _, x := range []*Agent{a, k} {
		assertValueGone(t, x, space, canary)
	}
	// Nothing more is due: a second pass does nothing.
	if res, err = a.autoErasePass(); err != nil || res != (autoEraseResult{}) {
		t.Fatalf("second pass: %+v %v", res, err)
	}
	if st := a.Status().Retention; st == nil || st.Held != 0 || st.Erased != 1 {
		t.Fatalf("status.retention at the end: %+v", st)
	}
}

// An agent with NoAutoErase erases nothing, though a record is due by both
// clocks, and status says it is off; turned back on, the same pass erases
// it (the setup would have).
func TestRetentionAutoEraseOff(t *testing.T) {
	a, k, space, skipA, skipK := retentionClocks(t)
	reviewDayEraseTwo(t, a, space)
	advPut(t, a, space, "old", "v")
	receiptSync(t, a, k)
	skipA(3 * day)
	skipK(3 * day)
	advPut(t, k, space, "kz", "k")
	receiptSync(t, k, a)
	a.cfg.NoAutoErase = true
	if res, err := a.autoErasePass(); err != nil || res != (autoEraseResult{}) {
		t.Fatalf("NoAutoErase: %+v %v", res, err)
	}
	if v, _ := advValue(a, space, "old"); v != "v" {
		t.Fatalf("old with NoAutoErase: %q", v)
	}
	if st := a.Status().Retention; st == nil || st.AutoErase || st.LastPass != "" {
		t.Fatalf("status.retention with NoAutoErase: %+v", st)
	}
	a.cfg.NoAutoErase = false
	if res, err := a.autoErasePass(); err != nil || res.Erased != 1 {
		t.Fatalf("the same pass turned on: %+v %v, want old erased", res, err)
	}
}

// The attack (found in review): a record's review clock is the oldest HLC
// among its live values, and the HLC is the author's word. A partner-bureau device, which
// may not erase, adds one field dated three days back to an owning-bureau
// record written today (a modified client; or a device whose clock and HLC
// were reset); its other writes are dated now, so the corroboration sees a
// current clock. The owning bureau's device then erases the record on its
// own, by its correct clock: an auto-erase a hostile peer triggers. Now
// the record is left to a person (foreign).
func TestAutoEraseBackdatedPartnerWrite(t *testing.T) {
	a, k, space, _, skipK := retentionClocks(t)
	reviewDayEraseTwo(t, a, space)
	advPut(t, a, space, "victim", "written today")
	receiptSync(t, a, k)

	// K backdates one write into A's record.
	skipK(-3 * day)
	k.stateMu.Lock()
	k.clock.Last = crdt.Timestamp{}
	k.stateMu.Unlock()
	if _, err := k.PutFields(api.RecordPutRequest{Space: space, Record: "victim", Fields: []api.FieldValue{{Name: "x", Value: "backdated"}}}); err != nil {
		t.Fatal(err)
	}
	skipK(3 * day)
	advPut(t, k, space, "kz", "written now")
	receiptSync(t, k, a)

	res, err := a.autoErasePass()
	if err != nil {
		t.Fatal(err)
	}
	if v, err := advValue(a, space, "victim"); err != nil || v != "written today" || res.Erased != 0 {
		t.Fatalf("a record written minutes ago was auto-erased after a partner's backdated write: %+v, value %q %v", res, v, err)
	}
	if res.Foreign != 1 {
		t.Fatalf("pass %+v: want victim left to a person (foreign)", res)
	}
	due, err := a.Review(api.ReviewRequest{Space: space})
	if err != nil || len(due) != 1 || due[0].Record != "victim" || !due[0].EraseDue {
		t.Fatalf("review lists %+v %v: want victim erase due, for a person", due, err)
	}
}

// The attack (found in review): the corroborating time was the newest HLC
// of any other device's live write, so one write from a device whose clock ran ten days
// ahead (beyond the drift allowed, applied all the same) corroborates
// this device's clock for ever after: a laptop whose clock jumps 3 days
// ahead then erases a record written today on its own word.
func TestAutoEraseSkewedPeerCorroboratesNothing(t *testing.T) {
	a, k, space, skipA, skipK := retentionClocks(t)
	reviewDayEraseTwo(t, a, space)
	skipK(10 * day) // K's clock is ten days ahead when it writes once
	advPut(t, k, space, "kz", "from the future")
	skipK(-10 * day)
	receiptSync(t, k, a)
	advPut(t, a, space, "today", "written today")

	skipA(3 * day) // A's clock alone jumps ahead
	res, err := a.autoErasePass()
	if err != nil {
		t.Fatal(err)
	}
	if v, err := advValue(a, space, "today"); err != nil || v != "written today" || res.Erased != 0 {
		t.Fatalf("a lone clock 3 days ahead erased a record, corroborated by a skewed author's write: %+v, value %q %v", res, v, err)
	}
}

// Found in review: an automatic pass judges every record first (reviewInputs)
// and then lapses and erases them one by one (ReviewLapse, which does not
// judge again). An officer who extends the review of a record while the
// pass works on the records before it (here: while the pass's first write
// is signed) has the record erased all the same, moments after saying the
// case is still open.
func TestAutoEraseExtendDuringPass(t *testing.T) {
	a, k, space, skipA, skipK := retentionClocks(t)
	reviewDayEraseTwo(t, a, space)
	advPut(t, a, space, "a1", "due")
	advPut(t, a, space, "b2", "still open")
	skipA(3 * day)
	skipK(3 * day)
	advPut(t, k, space, "kz", "k")
	receiptSync(t, k, a)

	q := a.writeQueueFor(advSpaceID(t, space))
	var first atomic.Bool
	extended := make(chan error, 1)
	a.stateMu.Lock()
	a.signHook = func(seq uint64) error {
		if !first.CompareAndSwap(false, true) {
			return nil
		}
		// The pass's first write (a1's lapse mark) is being signed: the
		// officer extends b2 now; the request queues before the pass's
		// next write.
		go func() {
			_, err := a.ReviewExtend(api.ReviewActionRequest{Space: space, Record: "b2", Reason: "case still open"})
			extended <- err
		}()
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
			q.mu.Lock()
			n := len(q.pending)
			q.mu.Unlock()
			if n > 0 {
				break
			}
		}
		return nil
	}
	a.stateMu.Unlock()
	res, err := a.autoErasePass()
	if err != nil {
		t.Fatal(err)
	}
	if err := <-extended; err != nil {
		t.Fatalf("extend b2: %v", err)
	}
	if v, err := advValue(a, space, "b2"); err != nil || v != "still open" {
		t.Fatalf("b2, extended during the pass, was erased by it: %+v, value %q %v", res, v, err)
	}
}

// A record the pass lapsed but could not erase (the erasure failed, or the
// agent stopped between the two) is erased by the next pass, though it is
// deleted by then and deleted records are not judged: the erasure was
// noted as owed before the lapse.
func TestAutoEraseRetriesOwedErasure(t *testing.T) {
	const canary = "CANARYowed16"
	a, k, space, skipA, skipK := retentionClocks(t)
	reviewDayEraseTwo(t, a, space)
	advPut(t, a, space, "old", canary)
	receiptSync(t, a, k)
	skipA(3 * day)
	skipK(3 * day)
	advPut(t, k, space, "kz", "k")
	receiptSync(t, k, a)

	autoEraseBeforeErase = func() error { return errors.New("injected: the agent stopped") }
	t.Cleanup(func() { autoEraseBeforeErase = nil })
	res, err := a.autoErasePass()
	if err != nil || res.Erased != 0 || res.Failed != 1 {
		t.Fatalf("the pass whose erasure fails: %+v %v", res, err)
	}
	owed := a.owedEraseKey(advSpaceID(t, space), "old")
	if bytes.Contains(owed, []byte("old")) {
		t.Fatalf("the owed note's key names the record: %q", owed)
	}
	if _, err := a.db.get(owed); err != nil {
		t.Fatalf("no owed erasure noted: %v", err)
	}
	if r, err := a.GetRecord(api.RecordRef{Space: space, Record: "old"}); err != nil || !r.Deleted {
		t.Fatalf("old after the failed pass: %+v %v, want lapsed (deleted)", r, err)
	}

	autoEraseBeforeErase = nil
	if res, err = a.autoErasePass(); err != nil || res.Erased != 1 || res.Failed != 0 {
		t.Fatalf("the next pass: %+v %v, want the owed erasure done", res, err)
	}
	assertValueGone(t, a, space, canary)
	if _, err := a.db.get(owed); !errors.Is(err, errKVNotFound) {
		t.Fatalf("owed note left after the erasure: %v", err)
	}
	if res, err = a.autoErasePass(); err != nil || res != (autoEraseResult{}) {
		t.Fatalf("a third pass: %+v %v, want nothing", res, err)
	}
}

// reviewDayEraseTwo sets space's retention policy on a, its owner: review
// after 1 day, erase after 2.
func reviewDayEraseTwo(t *testing.T, a *Agent, space string) {
	t.Helper()
	if _, err := a.SetRetentionPolicy(retentionReq(space)); err != nil {
		t.Fatal(err)
	}
}

func retentionReq(space string) api.RetentionPolicyRequest {
	return api.RetentionPolicyRequest{Space: space, ReviewAfterDays: 1, EraseAfterDays: 2}
}

// A device that holds as many record-erase markers as every replica takes
// from one device does not lapse a record due: every replica would refuse
// its marker, and the record would be deleted but never erased.
func TestAutoEraseAtMarkerCapKeepsRecord(t *testing.T) {
	a, k, space, skipA, skipK := retentionClocks(t)
	reviewDayEraseTwo(t, a, space)
	advPut(t, a, space, "old", "v")
	skipA(3 * day)
	skipK(3 * day)
	advPut(t, k, space, "kz", "k")
	receiptSync(t, k, a)
	a.recErMu.Lock()
	a.recErasedLocked().byAuthor[a.dev] = markerLoad{markers: maxRecordErasuresPerAuthor}
	a.recErMu.Unlock()
	res, err := a.autoErasePass()
	if err != nil || res.Erased != 0 || res.Failed != 1 {
		t.Fatalf("pass at the cap: %+v %v", res, err)
	}
	if r, err := a.GetRecord(api.RecordRef{Space: space, Record: "old"}); err != nil || r.Deleted || r.Fields["v"].Value != "v" {
		t.Fatalf("old at the marker cap: %+v %v, want it live, untouched", r, err)
	}
}

// A pass erases every due record of a space and rebuilds the space once:
// the erasures are staged one after another, each cutting envelopes as the
// ones before left them (two due records written in one change lose both
// values), then purged together. The partner that takes the markers is cut
// the same way.
func TestAutoEraseManyRecordsOnePurge(t *testing.T) {
	a, k, space, skipA, skipK := retentionClocks(t)
	reviewDayEraseTwo(t, a, space)
	id := advSpaceID(t, space)
	combinedChange(t, a, id, [2]string{"p1", "CANARYone16"}, [2]string{"p2", "CANARYtwo16"})
	advPut(t, a, space, "p3", "CANARYthree16")
	receiptSync(t, a, k)
	skipA(3 * day)
	skipK(3 * day)
	advPut(t, a, space, "new", "stays")
	advPut(t, k, space, "kz", "k")
	receiptSync(t, k, a)

	reloads := a.reloads.Load()
	res, err := a.autoErasePass()
	if err != nil || res.Erased != 3 || res.Failed != 0 {
		t.Fatalf("pass: %+v %v, want p1, p2 and p3 erased", res, err)
	}
	if n := a.reloads.Load() - reloads; n != 1 {
		t.Fatalf("the pass rebuilt the state %d times for one space, want once", n)
	}
	if v, _ := advValue(a, space, "new"); v != "stays" {
		t.Fatalf("new after the pass: %q", v)
	}
	receiptSync(t, a, k)
	for _, m := range a.recordErasureBlobs() {
		if _, err := k.AddErasure(m); err != nil {
			t.Fatal(err)
		}
	}
	for _, x := range []*Agent{a, k} {
		for _, c := range []string{"CANARYone16", "CANARYtwo16", "CANARYthree16"} {
			assertValueGone(t, x, space, c)
		}
	}
	for _, rec := range []string{"p1", "p2", "p3"} {
		hist, err := a.History(api.RecordRef{Space: space, Record: rec})
		if err != nil || len(hist) == 0 || hist[len(hist)-1].Outcome != api.OutcomeErased {
			t.Fatalf("%s's history does not end with its erasure: %+v %v", rec, hist, err)
		}
	}
}

// Two due records holding the same file (same chunks): the pass erases
// both, and with them the chunks no other record names, though the first
// erasure is only staged when the second's marker is built.
func TestAutoEraseSharedAttachment(t *testing.T) {
	a, k, space, skipA, skipK := retentionClocks(t)
	reviewDayEraseTwo(t, a, space)
	sp := api.Space{ID: space}
	one := sortedRefs(attachFile(t, a, sp, "p1", "photo", 256<<10, 91))
	if two := sortedRefs(attachFile(t, a, sp, "p2", "photo", 256<<10, 91)); !slices.Equal(one, two) {
		t.Fatal("the same file under other refs: the test proves nothing")
	}
	skipA(3 * day)
	skipK(3 * day)
	advPut(t, k, space, "kz", "k")
	receiptSync(t, k, a)
	res, err := a.autoErasePass()
	if err != nil || res.Erased != 2 {
		t.Fatalf("pass: %+v %v", res, err)
	}
	if held := heldChunks(t, a, sp); len(held) != 0 {
		t.Fatalf("%d chunks of the erased records' file still held", len(held))
	}
}
