package agent

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crypto"
)

// retentionPair is receiptPair with a clock for A that the test moves on:
// an OMN officer A (owner), a KAZ officer K, a space of A's released to
// KAZ, K holding its key.
func retentionPair(t testing.TB) (a, k *Agent, space string, skip func(time.Duration)) {
	a, k, space, skip, _ = retentionClocks(t)
	return a, k, space, skip
}

// retentionClocks is retentionPair with K's clock moved on too (skipK).
func retentionClocks(t testing.TB) (a, k *Agent, space string, skipA, skipK func(time.Duration)) {
	t.Helper()
	omn, kaz := newTestBureau(t, "OMN"), newTestBureau(t, "KAZ")
	var offA, offK atomic.Int64
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer, kaz)
	cfg.Now = func() time.Time { return time.Now().Add(time.Duration(offA.Load())) }
	a = openTestAgent(t, cfg)
	cfg = newTestDevice(t, kaz, "Kairat", crypto.RoleOfficer, omn)
	cfg.Now = func() time.Time { return time.Now().Add(time.Duration(offK.Load())) }
	k = openTestAgent(t, cfg)
	sp, err := a.CreateSpace("joint", []string{"KAZ"})
	if err != nil {
		t.Fatal(err)
	}
	receiptSync(t, k, a)
	if _, err := a.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	receiptSync(t, a, k)
	return a, k, sp.ID, func(d time.Duration) { offA.Add(int64(d)) }, func(d time.Duration) { offK.Add(int64(d)) }
}

// assertValueGone fails if any change x holds in space still carries a
// value containing canary.
func assertValueGone(t testing.TB, x *Agent, space, canary string) {
	t.Helper()
	id := advSpaceID(t, space)
	var keys crypto.Keyring
	x.withRead(func() error { keys = x.spaces[id].keyring(); return nil })
	x.Envelopes(id, func(env []byte) error {
		if oc, err := openChange(env, keys); err == nil && oc.ch != nil {
			for _, op := range oc.ch.Ops {
				if strings.Contains(string(op.Value), canary) {
					t.Errorf("%s still holds the value %q in %s:%d", x.dev, canary, oc.ch.Author, oc.ch.Seq)
				}
			}
		}
		return nil
	})
}

func retentionOf(t testing.TB, x *Agent, space string) *retentionPolicy {
	t.Helper()
	id := advSpaceID(t, space)
	x.stateMu.Lock()
	defer x.stateMu.Unlock()
	p := x.spaces[id].meta.Retention
	if p == nil || p.ReviewDays == 0 {
		return nil
	}
	c := *p
	return &c
}

// The attack first: a partner bureau's officer K cannot set the policy
// through its agent (forbidden), and a retention envelope K signs anyway
// is a no-op on A and on K itself.
func TestRetentionPartnerPolicyIgnored(t *testing.T) {
	a, k, space, _ := retentionPair(t)
	if _, err := k.SetRetentionPolicy(api.RetentionPolicyRequest{Space: space, ReviewAfterDays: 1}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("KAZ device set the retention policy of an OMN space: %v", err)
	}
	id := advSpaceID(t, space)
	if err := k.withWrite(func(t *tx) error {
		t.changed()
		entries, err := k.agentBodyEntries(k.spaces[id], [][]byte{marshalRetention(1, 2)})
		t.put(entries...)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if n := receiptSync(t, k, a); n == 0 {
		t.Fatal("A took none of K's envelopes")
	}
	for _, x := range []*Agent{a, k} {
		if p := retentionOf(t, x, space); p != nil {
			t.Fatalf("%s took a retention policy from a device of another bureau: %+v", x.dev, p)
		}
	}
	if v, _ := a.lookupSpace(space); spaceView(v.meta).Retention != nil {
		t.Fatal("A's space view shows the partner's retention policy")
	}
}

// The owner's policy is applied on both sides, shown in the space, and
// cleared with off; a later owner's policy wins.
func TestRetentionPolicySetByOwner(t *testing.T) {
	a, k, space, _ := retentionPair(t)
	v, err := a.SetRetentionPolicy(api.RetentionPolicyRequest{Space: space, ReviewAfterDays: 730, EraseAfterDays: 1825})
	if err != nil {
		t.Fatal(err)
	}
	if v.Retention == nil || *v.Retention != (api.Retention{ReviewAfterDays: 730, EraseAfterDays: 1825}) {
		t.Fatalf("space shows retention %+v", v.Retention)
	}
	receiptSync(t, a, k)
	if p := retentionOf(t, k, space); p == nil || p.ReviewDays != 730 || p.EraseDays != 1825 {
		t.Fatalf("K holds retention %+v, want 730/1825", p)
	}
	if _, err := a.SetRetentionPolicy(api.RetentionPolicyRequest{Space: space, ReviewAfterDays: 10, EraseAfterDays: 5}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("erase before review accepted: %v", err)
	}
	if v, err = a.SetRetentionPolicy(api.RetentionPolicyRequest{Space: space, Off: true}); err != nil || v.Retention != nil {
		t.Fatalf("off: %+v %v", v.Retention, err)
	}
	receiptSync(t, a, k)
	if p := retentionOf(t, k, space); p != nil {
		t.Fatalf("K still holds retention %+v after off", p)
	}
}

func TestRetentionDueForReview(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	ago := func(days int) time.Time { return now.Add(-time.Duration(days) * day) }
	in := []reviewInput{
		{space: "s", record: "fresh", since: ago(100)},
		{space: "s", record: "due", since: ago(800)},
		{space: "s", record: "erase", since: ago(2000), reviewed: true},
		{space: "s", record: "edge", since: ago(730)},
		{space: "s", record: "almost", since: ago(730).Add(time.Minute)},
	}
	for _, tc := range []struct {
		name          string
		review, erase int
		want          []string // record:erase_due
	}{
		{"review and erase", 730, 1825, []string{"due:false", "edge:false", "erase:true"}},
		{"no erase deadline", 730, 0, []string{"due:false", "edge:false", "erase:false"}},
		{"off", 0, 0, nil},
		{"short", 50, 100, []string{"almost:true", "due:true", "edge:true", "erase:true", "fresh:true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := dueForReview(now, tc.review, tc.erase, in)
			var s []string
			for _, d := range got {
				s = append(s, d.Record+":"+map[bool]string{true: "true", false: "false"}[d.EraseDue])
			}
			if strings.Join(s, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("due %v, want %v", s, tc.want)
			}
		})
	}
	got := dueForReview(now, 730, 1825, in[1:2])
	if len(got) != 1 || got[0].AgeDays != 800 || got[0].DueSince != ago(70).Format(time.RFC3339) || got[0].Since != ago(800).Format(time.RFC3339) {
		t.Fatalf("due row %+v", got)
	}
}

// Records fall due by the agent's clock; extend restarts one's clock,
// lapse deletes the other, and history shows both reasons.
func TestRetentionExtendAndLapse(t *testing.T) {
	a, _, space, skip := retentionPair(t)
	if _, err := a.SetRetentionPolicy(api.RetentionPolicyRequest{Space: space, ReviewAfterDays: 1, EraseAfterDays: 3}); err != nil {
		t.Fatal(err)
	}
	advPut(t, a, space, "keep", "v")
	advPut(t, a, space, "drop", "v")
	due := func() string {
		t.Helper()
		ds, err := a.Review(api.ReviewRequest{Space: space})
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, d := range ds {
			s = append(s, d.Record+map[bool]string{true: "!", false: ""}[d.EraseDue])
		}
		return strings.Join(s, " ")
	}
	if got := due(); got != "" {
		t.Fatalf("due at once: %q", got)
	}
	skip(2 * day)
	if got := due(); got != "drop keep" {
		t.Fatalf("due after 2 days: %q", got)
	}
	skip(2 * day)
	if got := due(); got != "drop! keep!" {
		t.Fatalf("due after 4 days: %q", got)
	}
	if _, err := a.ReviewExtend(api.ReviewActionRequest{Space: space, Record: "keep"}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("extend without a reason: %v", err)
	}
	if _, err := a.ReviewExtend(api.ReviewActionRequest{Space: space, Record: "keep", Reason: "case still open"}); err != nil {
		t.Fatal(err)
	}
	rec, err := a.ReviewLapse(api.ReviewActionRequest{Space: space, Record: "drop", Reason: "no longer needed"})
	if err != nil {
		t.Fatal(err)
	}
	if !rec.Deleted {
		t.Fatalf("lapsed record not deleted: %+v", rec)
	}
	if got := due(); got != "" {
		t.Fatalf("due after extend and lapse: %q", got)
	}
	if r, err := a.GetRecord(api.RecordRef{Space: space, Record: "drop"}); err != nil || !r.Deleted || len(r.Fields) != 0 {
		t.Fatalf("lapsed record still live: %+v %v", r, err)
	}
	skip(2 * day)
	ds, err := a.Review(api.ReviewRequest{Space: space})
	if err != nil || len(ds) != 1 || ds[0].Record != "keep" || !ds[0].Reviewed || ds[0].EraseDue {
		t.Fatalf("after 2 more days: %+v %v", ds, err)
	}
	for rid, want := range map[string]string{"keep": `"action":"extend","reason":"case still open"`, "drop": `"action":"lapse","reason":"no longer needed"`} {
		hist, err := a.History(api.RecordRef{Space: space, Record: rid})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range hist {
			for _, op := range e.Ops {
				if op.Field == api.ReviewField && strings.Contains(op.Value, want) && e.Officer == "Amina" && e.Author == a.dev.String() && e.Time != "" {
					found = true
				}
			}
		}
		if !found {
			t.Fatalf("history of %s lacks the review mark %s: %+v", rid, want, hist)
		}
		if rid == "drop" && hist[len(hist)-1].Ops[0].Kind != "delete" {
			t.Fatalf("history of drop does not end with the delete: %+v", hist[len(hist)-1])
		}
	}
}

// review lapse with Erase deletes the record and then erases it: its past
// values are cut from every envelope here (history keeps who erased, and
// when), and go from every replica the marker reaches. A partner's device
// may not: it is refused before anything is written.
func TestRetentionLapseErase(t *testing.T) {
	const canary = "CANARYlapse16"
	a, k, space, _ := retentionPair(t)
	advPut(t, a, space, "drop", canary)
	advPut(t, a, space, "keep", "v")
	receiptSync(t, a, k)
	if _, err := k.ReviewLapse(api.ReviewActionRequest{Space: space, Record: "drop", Reason: "r", Erase: true}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("a partner's lapse with erase: %v, want forbidden", err)
	}
	if r, err := k.GetRecord(api.RecordRef{Space: space, Record: "drop"}); err != nil || r.Deleted {
		t.Fatalf("the refused lapse wrote: %+v %v", r, err)
	}
	rec, err := a.ReviewLapse(api.ReviewActionRequest{Space: space, Record: "drop", Reason: "retention: erase after 5 years", Erase: true})
	if err != nil || !rec.Deleted {
		t.Fatalf("lapse with erase: %+v %v", rec, err)
	}
	receiptSync(t, a, k)
	for _, m := range a.recordErasureBlobs() { // sync passes markers on as mesh objects
		if _, err := k.AddErasure(m); err != nil {
			t.Fatal(err)
		}
	}
	for _, x := range []*Agent{a, k} {
		assertValueGone(t, x, space, canary)
		if v, _ := advValue(x, space, "keep"); v != "v" {
			t.Errorf("%s: the other record is %q", x.dev, v)
		}
	}
	hist, err := a.History(api.RecordRef{Space: space, Record: "drop"})
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) == 0 || hist[len(hist)-1].Outcome != api.OutcomeErased {
		t.Fatalf("the lapsed record's history does not end with its erasure: %+v", hist)
	}
}
