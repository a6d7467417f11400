package agent

import (
	"testing"

	"fieldsync/agent/api"
	"fieldsync/crypto"
)

// TestAccountableResolution: an OMN and a KAZ officer write one field
// concurrently; the KAZ officer resolves with a reason. On both devices,
// `conflicts show` says who resolved which siblings, from which bureau and
// why, and history carries the same.
func TestAccountableResolution(t *testing.T) {
	omn, kaz := newTestBureau(t, "OMN"), newTestBureau(t, "KAZ")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer, kaz))
	b := openTestAgent(t, newTestDevice(t, kaz, "Дина", crypto.RoleOfficer, omn))
	sp, err := a.CreateSpace("joint", []string{"KAZ"})
	if err != nil {
		t.Fatal(err)
	}
	transfer(t, b, a) // certificates
	if _, err := a.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	transfer(t, a, b)
	put := func(ag *Agent, v string) {
		if _, err := ag.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "p1", Fields: []api.FieldValue{{Name: "dob", Value: v}}}); err != nil {
			t.Fatal(err)
		}
	}
	put(a, "1980-01-02")
	put(b, "1980-02-01")
	transfer(t, a, b)
	transfer(t, b, a)
	shown, err := b.ConflictsShow(api.RecordRef{Space: sp.ID, Record: "p1"})
	if err != nil || len(shown.Fields) != 1 || len(shown.Fields[0].Siblings) != 2 {
		t.Fatalf("conflicts show = %+v, %v", shown, err)
	}
	var dots []string
	for _, s := range shown.Fields[0].Siblings {
		dots = append(dots, s.Dot)
	}
	if _, err := b.Resolve(api.ResolveRequest{Space: sp.ID, Record: "p1", Field: "dob", Value: "1980-02-01", Dots: dots, Reason: "passport seen at the border post"}); err != nil {
		t.Fatal(err)
	}
	transfer(t, b, a)
	for _, ag := range []*Agent{a, b} {
		cs, err := ag.ConflictsShow(api.RecordRef{Space: sp.ID, Record: "p1"})
		if err != nil {
			t.Fatal(err)
		}
		if len(cs.Fields) != 0 || len(cs.Resolved) != 1 {
			t.Fatalf("after resolve: %+v", cs)
		}
		s := cs.Resolved[0].Siblings[0]
		if s.Bureau != "KAZ" || s.Officer != "Дина" || s.Resolution == nil || s.Resolution.Reason != "passport seen at the border post" || len(s.Resolution.Resolves) != 2 {
			t.Fatalf("resolution shown as %+v (%+v)", s, s.Resolution)
		}
		h, err := ag.History(api.RecordRef{Space: sp.ID, Record: "p1"})
		if err != nil {
			t.Fatal(err)
		}
		last := h[len(h)-1]
		if last.Bureau != "KAZ" || len(last.Ops) != 1 || last.Ops[0].Kind != "resolve" || last.Ops[0].Reason == "" || len(last.Ops[0].Resolves) != 2 {
			t.Fatalf("history's last entry = %+v", last)
		}
	}
}
