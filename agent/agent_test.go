package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"fieldsync/agent/api"
	"fieldsync/crypto"
	"fieldsync/internal/datadir"
)

func TestPutGetRestart(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina Haddad", crypto.RoleOfficer)
	a := openTestAgent(t, cfg)
	sp, err := a.CreateSpace("قضية ٤٢", nil)
	if err != nil {
		t.Fatal(err)
	}
	if sp.Owner != "OMN" || len(sp.Release) != 1 || sp.Release[0] != "OMN" {
		t.Fatalf("space = %+v", sp)
	}
	rec, err := a.PutFields(api.RecordPutRequest{Space: "قضية ٤٢", Record: "p1", Fields: []api.FieldValue{
		{Name: "name", Value: "أمينة حداد"}, {Name: "alias", Value: "Амина"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Fields["name"].Value != "أمينة حداد" || rec.Fields["name"].Conflict {
		t.Fatalf("put returned %+v", rec.Fields)
	}
	if got := rec.Fields["name"].Siblings[0].Officer; got != "Amina Haddad" {
		t.Fatalf("officer = %q", got)
	}
	a.Close()

	a = openTestAgent(t, cfg)
	got, err := a.GetRecord(api.RecordRef{Space: sp.ID[:8], Record: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Fields["alias"].Value != "Амина" || got.Fields["name"].Value != "أمينة حداد" {
		t.Fatalf("after restart: %+v", got.Fields)
	}
	// The seq goes on where it stopped: a new write chains to the old log.
	if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "p1", Fields: []api.FieldValue{{Name: "name", Value: "Amina"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GetRecord(api.RecordRef{Space: sp.ID, Record: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing record: err = %v", err)
	}
	if _, err := a.GetRecord(api.RecordRef{Space: "no-such-space", Record: "p1"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing space: err = %v", err)
	}
}

func TestConflictResolveHistoryAcrossDevices(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	b := openTestAgent(t, newTestDevice(t, omn, "Boris", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "v1", Fields: []api.FieldValue{{Name: "plate", Value: "KZ 123"}}}); err != nil {
		t.Fatal(err)
	}
	// A learns B's certificate and wraps the space key to it; B gets it all.
	transfer(t, b, a)
	if n, err := a.ShareKeys(); err != nil || n != 1 {
		t.Fatalf("ShareKeys = %d, %v", n, err)
	}
	transfer(t, a, b)
	got, err := b.GetRecord(api.RecordRef{Space: sp.ID, Record: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Fields["plate"].Value != "KZ 123" || got.Fields["plate"].Siblings[0].Officer != "Amina" {
		t.Fatalf("b sees %+v", got.Fields["plate"])
	}
	if bs := b.ListSpaces(); len(bs) != 1 || bs[0].Name != "case" {
		t.Fatalf("b's spaces: %+v", bs)
	}

	// Concurrent edits of the same field: both kept as siblings.
	if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "v1", Fields: []api.FieldValue{{Name: "plate", Value: "KZ 124"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "v1", Fields: []api.FieldValue{{Name: "plate", Value: "KZ 125"}}}); err != nil {
		t.Fatal(err)
	}
	transfer(t, a, b)
	transfer(t, b, a)
	ca, err := a.ConflictsList(api.ConflictsListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cb, err := b.ConflictsList(api.ConflictsListRequest{Space: "case"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ca) != 1 || len(ca[0].Siblings) != 2 {
		t.Fatalf("conflicts on a: %+v", ca)
	}
	if !sameJSON(t, ca, cb) {
		t.Fatalf("conflicts differ:\na=%+v\nb=%+v", ca, cb)
	}
	da, _ := a.Digest(api.SpaceRef{Space: sp.ID})
	db, _ := b.Digest(api.SpaceRef{Space: sp.ID})
	if da != db {
		t.Fatalf("digests differ: %+v vs %+v", da, db)
	}

	// Resolve exactly the shown siblings, with a reason.
	show, err := b.ConflictsShow(api.RecordRef{Space: sp.ID, Record: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	var dots []string
	for _, s := range show.Fields[0].Siblings {
		dots = append(dots, s.Dot)
	}
	res, err := b.Resolve(api.ResolveRequest{Space: sp.ID, Record: "v1", Field: "plate", Dots: dots, Value: "KZ 125", Reason: "checked the registry"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Fields["plate"].Conflict || res.Fields["plate"].Value != "KZ 125" {
		t.Fatalf("after resolve: %+v", res.Fields["plate"])
	}
	transfer(t, b, a)
	if c, _ := a.ConflictsList(api.ConflictsListRequest{}); len(c) != 0 {
		t.Fatalf("a still has conflicts %+v", c)
	}
	h, err := a.History(api.RecordRef{Space: sp.ID, Record: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	last := h[len(h)-1]
	if last.Officer != "Boris" || last.Signature != "valid" || last.Ops[0].Kind != "resolve" || last.Ops[0].Reason != "checked the registry" || len(last.Ops[0].Resolves) != 2 {
		t.Fatalf("last history entry = %+v", last)
	}
	// Resolving siblings that are gone is a conflict error, not a silent write.
	if _, err := a.Resolve(api.ResolveRequest{Space: sp.ID, Record: "v1", Field: "plate", Dots: dots, Value: "x"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale resolve: err = %v", err)
	}
}

func TestIngestRejects(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	other := newTestBureau(t, "XXX")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	b := openTestAgent(t, newTestDevice(t, omn, "Boris", crypto.RoleOfficer))
	sp, _ := a.CreateSpace("case", nil)
	a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "r", Fields: []api.FieldValue{{Name: "f", Value: "v"}}})
	var envs [][]byte
	id, _ := crypto.ParseSpaceID(sp.ID)
	a.Envelopes(id, func(e []byte) error { envs = append(envs, e); return nil })

	// Unknown author.
	if _, err := b.Ingest(envs[0]); !isReject(err, RejectUnknown) {
		t.Fatalf("unknown author: %v", err)
	}
	transfer(t, a, b) // certificates first, then envelopes
	// A flipped byte in the signed region.
	bad := bytes.Clone(envs[2])
	bad[len(bad)/2] ^= 1
	if _, err := b.Ingest(bad); err == nil {
		t.Fatal("tampered envelope accepted")
	}
	// Duplicates change nothing.
	if added, err := b.Ingest(envs[2]); err != nil || added {
		t.Fatalf("duplicate: added=%v err=%v", added, err)
	}
	// A certificate from an untrusted bureau is refused.
	c := newTestDevice(t, other, "Mallory", crypto.RoleOfficer)
	mc, _ := datadir.LoadCert(c.Layout)
	if _, err := b.AddCertificate(mc.MarshalBinary()); !errors.Is(err, crypto.ErrUntrusted) {
		t.Fatalf("untrusted certificate: %v", err)
	}
	st := b.Status()
	if st.Rejected[RejectUnknown] != 1 || st.Rejected[RejectSignature] != 1 {
		t.Fatalf("rejected counters = %v", st.Rejected)
	}
}

func isReject(err error, reason string) bool {
	var re *RejectError
	return errors.As(err, &re) && re.Reason == reason
}

func TestRepairIsByteIdentical(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	a := openTestAgent(t, cfg)
	sp, _ := a.CreateSpace("case", nil)
	for i, v := range []string{"a", "b", "c"} {
		a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "r" + v, Fields: []api.FieldValue{{Name: "f", Value: strings.Repeat(v, i+1)}}})
	}
	a.SetOp(api.SetOpRequest{Space: sp.ID, Record: "ra", Field: "phones", Op: "add", Value: "+7 700"})
	a.AddNote(api.NoteAddRequest{Space: sp.ID, Record: "rb", Text: "seen at the border"})
	a.DeleteRecord(api.RecordRef{Space: sp.ID, Record: "rc"})
	before := dumpPrefix(t, a, pfxRecord, pfxContext)
	a.Close()
	var out bytes.Buffer
	if err := Repair(context.Background(), cfg, &out); err != nil {
		t.Fatal(err)
	}
	a = openTestAgent(t, cfg)
	after := dumpPrefix(t, a, pfxRecord, pfxContext)
	if len(before) == 0 || !equalMaps(before, after) {
		t.Fatalf("repair changed the state (%d vs %d keys)\n%s", len(before), len(after), out.String())
	}
}

func dumpPrefix(t *testing.T, a *Agent, prefixes ...byte) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, p := range prefixes {
		err := a.db.scan([]byte{p}, func(k, v []byte) error { m[string(k)] = string(v); return nil }, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestSecondAgentAndWrongPassphrase(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	bad := cfg
	bad.Unlock = Unlock{Passphrase: []byte("wrong")}
	if _, err := New(bad); !errors.Is(err, crypto.ErrWrongPassphrase) || ExitCode(err) != ExitKeystore {
		t.Fatalf("wrong passphrase: %v (exit %d)", err, ExitCode(err))
	}
	openTestAgent(t, cfg)
	if _, err := New(cfg); !errors.Is(err, ErrLocked) || ExitCode(err) != ExitLocked {
		t.Fatalf("second agent: %v", err)
	}
	// A corrupt keystore is not "wrong passphrase".
	cfg2 := newTestDevice(t, omn, "Boris", crypto.RoleOfficer)
	ks, _ := os.ReadFile(cfg2.Layout.Keystore())
	ks[len(ks)-5] ^= 0x40
	os.WriteFile(cfg2.Layout.Keystore(), ks, 0o600)
	if _, err := New(cfg2); err == nil || errors.Is(err, crypto.ErrWrongPassphrase) {
		t.Fatalf("corrupt keystore: %v", err)
	}
	// Not enrolled.
	cfg3 := newTestDevice(t, omn, "Chen", crypto.RoleOfficer)
	os.Remove(cfg3.Layout.Cert())
	if _, err := New(cfg3); ExitCode(err) != ExitNotEnrolled {
		t.Fatalf("no certificate: %v", err)
	}
}

func TestConcurrentWritesGroupCommit(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	sp, _ := a.CreateSpace("case", nil)
	const writers, each = 16, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				_, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "r", Fields: []api.FieldValue{{Name: "f" + string(rune('a'+w)), Value: strings.Repeat("x", i)}}})
				if err != nil {
					errs <- err
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	r, err := a.GetRecord(api.RecordRef{Space: sp.ID, Record: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Fields) != writers {
		t.Fatalf("fields = %d", len(r.Fields))
	}
	for name, f := range r.Fields {
		if f.Conflict || f.Value != strings.Repeat("x", each-1) {
			t.Fatalf("field %s = %+v", name, f)
		}
	}
	// Every seq 1..N is present and chained: a fresh agent on a copy would
	// report nothing missing.
	if st := a.Status(); len(st.Missing) != 0 {
		t.Fatalf("missing = %+v", st.Missing)
	}
	if a.com.Commits() >= a.com.Writes() {
		t.Logf("no batching observed (%d commits for %d writes)", a.com.Commits(), a.com.Writes())
	}
}

// TestFailedCommitLosesNothingAcknowledged: a store that fails a write
// fails exactly the writes of that commit (and those built on them); every
// acknowledged write is there after a restart, and seqs are never reused.
func TestFailedCommitLosesNothingAcknowledged(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	cfg.FailCommit = func(n uint64) error {
		if n%5 == 0 {
			return errors.New("injected: disk write failed")
		}
		return nil
	}
	a := openTestAgent(t, cfg)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	acked, failed := map[string]string{}, 0
	for i := 0; i < 40; i++ {
		rec, val := fmt.Sprintf("r%02d", i%7), fmt.Sprint("v", i)
		if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: rec, Fields: []api.FieldValue{{Name: "f", Value: val}}}); err != nil {
			failed++
			continue
		}
		acked[rec] = val
	}
	if failed == 0 {
		t.Fatal("no write failed: the hook did nothing")
	}
	a.Close()
	cfg.FailCommit = nil
	a = openTestAgent(t, cfg)
	for rec, val := range acked {
		r, err := a.GetRecord(api.RecordRef{Space: sp.ID, Record: rec})
		if err != nil || r.Fields["f"].Value != val {
			t.Fatalf("acknowledged %s=%s lost: %v %+v", rec, val, err, r.Fields)
		}
	}
	if st := a.Status(); len(st.Missing) != 0 {
		t.Fatalf("missing after failed commits: %+v", st.Missing)
	}
	// The log is gap-free and chained: a fresh write still works.
	if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "after", Fields: []api.FieldValue{{Name: "f", Value: "ok"}}}); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d writes acknowledged, %d failed by injection", len(acked), failed)
}
