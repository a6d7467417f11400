package agent

import (
	"errors"
	"testing"
	"time"

	"fieldsync/agent/api"
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
	if _, err := a.SetRetentionPolicy(api.RetentionPolicyRequest{Space: space, ReviewAfterDays: 1, EraseAfterDays: 2}); err != nil {
		t.Fatal(err)
	}
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
	if res.Erased != 0 || res.Held != 2 { // old and kz; ext was reviewed half a day ago
		t.Fatalf("a lone clock 3 days ahead: %+v, want nothing erased and 2 held", res)
	}
	if v, _ := advValue(a, space, "old"); v != canary {
		t.Fatalf("old erased on a lone clock's word: %q", v)
	}
	if st := a.Status().Retention; st == nil || !st.AutoErase || st.Held != 2 || st.Erased != 0 || st.LastPass == "" {
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
	if _, err := a.SetRetentionPolicy(api.RetentionPolicyRequest{Space: space, ReviewAfterDays: 1, EraseAfterDays: 2}); err != nil {
		t.Fatal(err)
	}
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
