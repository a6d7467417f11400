package agent

import (
	"bytes"
	"testing"

	"fieldsync/agent/api"
	"fieldsync/crypto"
)

// TestHistoryShowsCorruptEnvelopeInvalid: history re-verifies the stored
// envelopes, so one altered on disk shows as invalid rather than as a
// change someone made.
func TestHistoryShowsCorruptEnvelopeInvalid(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	sp, _ := a.CreateSpace("case", nil)
	for _, v := range []string{"one", "two", "three"} {
		if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "r", Fields: []api.FieldValue{{Name: "f", Value: v}}}); err != nil {
			t.Fatal(err)
		}
	}
	h, err := a.History(api.RecordRef{Space: sp.ID, Record: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 3 {
		t.Fatalf("history has %d entries", len(h))
	}
	for _, e := range h {
		if e.Signature != "valid" || e.Officer != "Amina" || e.Ops[0].Kind != "put" {
			t.Fatalf("entry %+v", e)
		}
	}
	id, _ := crypto.ParseSpaceID(sp.ID)
	// Two kinds of damage: an envelope altered and re-sealed (as an attacker
	// with the storage key might), and plain corruption of the sealed value.
	alter := func(seq uint64, fn func(env []byte) []byte) {
		key := envKey(id, a.dev, seq)
		env, err := a.db.get(key)
		if err != nil {
			t.Fatal(err)
		}
		errs := a.db.kv.CommitGroups([][]kvEntry{{{Key: key, Val: fn(env)}}})
		if errs[0] != nil {
			t.Fatal(errs[0])
		}
	}
	// seq 1 routing, 2 profile, 3..5 the changes.
	alter(4, func(env []byte) []byte {
		env = bytes.Clone(env)
		env[len(env)-1] ^= 1 // the signature's last byte
		return a.db.seal(envKey(id, a.dev, 4), env)
	})
	alter(5, func(env []byte) []byte { return []byte("garbage where a sealed envelope was") })
	h, err = a.History(api.RecordRef{Space: sp.ID, Record: "r"})
	if err != nil {
		t.Fatal(err)
	}
	var valid, invalid int
	for _, e := range h {
		switch e.Signature {
		case "valid":
			valid++
		case "invalid":
			invalid++
			if e.Error == "" {
				t.Errorf("invalid entry without a reason: %+v", e)
			}
		}
	}
	if valid != 1 || invalid != 2 {
		t.Fatalf("valid %d, invalid %d: %+v", valid, invalid, h)
	}
}
