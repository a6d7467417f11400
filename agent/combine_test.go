package agent

import (
	"fmt"
	gosync "sync"
	"testing"

	"fieldsync/agent/api"
	"fieldsync/crypto"
)

// Concurrent API writes share changes (one signature and fsync for many),
// and every one of them is still answered with its own record, durable,
// readable after a restart and on another device; writes to one record
// stay in order (never combined with each other) and make no conflict.
func TestCombinedWrites(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	a := openTestAgent(t, cfg)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 32, 20
	var wg gosync.WaitGroup
	errs := make(chan error, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				rec := fmt.Sprintf("w%02d-%02d", w, i)
				if w%8 == 0 {
					rec = "shared" // four writers on one record
				}
				val := fmt.Sprintf("%d/%d", w, i)
				got, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: rec, Fields: []api.FieldValue{{Name: "f", Value: val}}})
				if err != nil {
					errs <- err
					return
				}
				if got.ID != rec || got.Fields["f"].Value != val {
					errs <- fmt.Errorf("answered %s=%q for a write of %s=%q", got.ID, got.Fields["f"].Value, rec, val)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	a.stateMu.Lock()
	changes := a.spaces[mustSpaceID(t, sp.ID)].heads[a.dev].Seq
	a.stateMu.Unlock()
	t.Logf("%d writes in %d envelopes", writers*each, changes)
	if changes >= writers*each {
		t.Errorf("%d envelopes for %d concurrent writes: nothing was combined", changes, writers*each)
	}
	check := func(who *Agent) {
		t.Helper()
		for w := 0; w < writers; w++ {
			if w%8 == 0 {
				continue
			}
			for i := 0; i < each; i++ {
				r, err := who.GetRecord(api.RecordRef{Space: sp.ID, Record: fmt.Sprintf("w%02d-%02d", w, i)})
				if err != nil || r.Fields["f"].Value != fmt.Sprintf("%d/%d", w, i) {
					t.Fatalf("record w%02d-%02d: %+v, %v", w, i, r.Fields["f"], err)
				}
			}
		}
		r, err := who.GetRecord(api.RecordRef{Space: sp.ID, Record: "shared"})
		if err != nil || r.Fields["f"].Conflict {
			t.Fatalf("shared record: %+v, %v (one device's writes never conflict)", r.Fields["f"], err)
		}
	}
	check(a)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a = openTestAgent(t, cfg)
	check(a)
	b := openTestAgent(t, newTestDevice(t, omn, "Boris", crypto.RoleOfficer))
	transfer(t, b, a)
	if _, err := a.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	transfer(t, a, b)
	check(b)
}
