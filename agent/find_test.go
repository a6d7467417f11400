package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crypto"
	"fieldsync/internal/find"
)

// waitFindBuilt waits until the agent's search index holds every readable
// space (the build runs on the agent's worker).
func waitFindBuilt(t *testing.T, a *Agent) {
	t.Helper()
	waitFor(t, "the search index to be built", func() bool {
		r, err := a.Find(api.FindRequest{Query: "x"})
		if err != nil {
			t.Fatalf("find: %v", err)
		}
		return !r.Building
	})
}

func mustFind(t testing.TB, a *Agent, req api.FindRequest) api.FindResponse {
	t.Helper()
	r, err := a.Find(req)
	if err != nil {
		t.Fatalf("find %+v: %v", req, err)
	}
	return r
}

// hitSet is "space-name/record/field" of each hit.
func hitSet(r api.FindResponse) []string {
	var out []string
	for _, h := range r.Hits {
		out = append(out, h.SpaceName+"/"+h.Record+"/"+h.Field)
	}
	return out
}

func findPut(t *testing.T, a *Agent, space, record string, fields ...string) {
	t.Helper()
	req := api.RecordPutRequest{Space: space, Record: record}
	for i := 0; i+1 < len(fields); i += 2 {
		req.Fields = append(req.Fields, api.FieldValue{Name: fields[i], Value: fields[i+1]})
	}
	if _, err := a.PutFields(req); err != nil {
		t.Fatal(err)
	}
}

// Names written in Arabic, Latin and Cyrillic in two spaces are found
// across scripts: on the writer (local writes), on a second device that
// received them (applied changes), and again after both restart (the index
// built from the stored records).
func TestFindAcrossScripts(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfgA := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	cfgB := newTestDevice(t, omn, "Boris", crypto.RoleOfficer)
	a := openTestAgent(t, cfgA)
	b := openTestAgent(t, cfgB)
	s1, err := a.CreateSpace("smuggling", nil)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := a.CreateSpace("port", nil)
	if err != nil {
		t.Fatal(err)
	}
	findPut(t, a, s1.ID, "p1", "name", "محمد الحسن", "place", "Muscat")
	findPut(t, a, s1.ID, "p2", "name", "Ivan Petrov")
	findPut(t, a, s2.ID, "p3", "name", "Мухаммед Хасан")
	findPut(t, a, s2.ID, "p4", "name", "Jean Dupont")
	if _, err := a.SetOp(api.SetOpRequest{Space: s1.ID, Record: "p2", Field: "aliases", Op: "add", Value: "Иван Петров"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddNote(api.NoteAddRequest{Space: s2.ID, Record: "p4", Text: "seen with Youssef at the harbour"}); err != nil {
		t.Fatal(err)
	}
	// Binary values are not text: never indexed, never shown.
	if _, err := a.PutFields(api.RecordPutRequest{Space: s2.ID, Record: "p5", Fields: []api.FieldValue{{Name: "photo", ValueBase64: "/9j/4AAQSkZJRgABAQ=="}}}); err != nil {
		t.Fatal(err)
	}
	transfer(t, b, a)
	if _, err := a.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	transfer(t, a, b)

	check := func(who string, x *Agent) {
		t.Helper()
		waitFindBuilt(t, x)
		r := mustFind(t, x, api.FindRequest{Query: "Mohammed Hassan"})
		got := hitSet(r)
		if len(got) < 2 || !slices.Contains(got[:2], "smuggling/p1/name") || !slices.Contains(got[:2], "port/p3/name") {
			t.Errorf("%s: Mohammed Hassan → %v, want p1 (Arabic) and p3 (Cyrillic) first", who, got)
		}
		for _, h := range r.Hits[:min(2, len(r.Hits))] {
			if h.Kind != "register" || (h.Value != "محمد الحسن" && h.Value != "Мухаммед Хасан") || h.Score <= 0 || h.Score > 1 {
				t.Errorf("%s: hit %+v", who, h)
			}
		}
		if r.Searched != 4 {
			t.Errorf("%s: searched %d records, want 4 (the photo-only record holds no text)", who, r.Searched)
		}
		if got := hitSet(mustFind(t, x, api.FindRequest{Query: "محمد", Space: "port"})); !slices.Equal(got, []string{"port/p3/name"}) {
			t.Errorf("%s: محمد in port → %v, want [port/p3/name]", who, got)
		}
		// Ivan is the register in Latin and the set element in Cyrillic:
		// the Cyrillic query's best field is the set.
		r = mustFind(t, x, api.FindRequest{Query: "Иван Петров", Field: "aliases"})
		if len(r.Hits) != 1 || r.Hits[0].Record != "p2" || r.Hits[0].Kind != "set" || r.Hits[0].Value != "Иван Петров" {
			t.Errorf("%s: Иван Петров in aliases → %+v", who, r.Hits)
		}
		r = mustFind(t, x, api.FindRequest{Query: "Юсуф"})
		if len(r.Hits) == 0 || r.Hits[0].Record != "p4" || r.Hits[0].Field != "notes" || r.Hits[0].Kind != "note" || r.Hits[0].Value != "seen with Youssef at the harbour" {
			t.Errorf("%s: Юсуф → %+v, want the note of p4", who, r.Hits)
		}
		if got := hitSet(mustFind(t, x, api.FindRequest{Query: "Muscat", Field: "name"})); len(got) != 0 {
			t.Errorf("%s: Muscat in field name → %v, want nothing (it is a place)", who, got)
		}
	}
	check("writer", a)
	check("receiver", b)
	a.Close()
	b.Close()
	check("writer reopened", openTestAgent(t, cfgA))
	check("receiver reopened", openTestAgent(t, cfgB))
}

// Errors: an unknown space is not found, a bad query or limit is a bad
// request, and a relay refuses (it reads nothing).
func TestFindErrors(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	if _, err := a.Find(api.FindRequest{Query: "Ali", Space: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown space: %v", err)
	}
	for _, req := range []api.FindRequest{{Query: ""}, {Query: " -- "}, {Query: "Ali", Limit: -1}, {Query: "Ali", Limit: 1001}, {Query: strings.Repeat("a", 1025)}} {
		if _, err := a.Find(req); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%+v: %v, want a bad request", req, err)
		}
	}
	relay := openTestAgent(t, newTestDevice(t, omn, "", crypto.RoleRelay))
	if _, err := relay.Find(api.FindRequest{Query: "Ali"}); !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "relay") {
		t.Errorf("relay: %v", err)
	}
	cfg := newTestDevice(t, omn, "Boris", crypto.RoleOfficer)
	cfg.DisableFind = true
	off := openTestAgent(t, cfg)
	if _, err := off.Find(api.FindRequest{Query: "Ali"}); !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "--no-find") {
		t.Errorf("find disabled: %v", err)
	}
}

// A space this device cannot read never shows in hits: one of another
// bureau never released to it (held, unopened), and one whose release to
// its bureau is withdrawn after it had been read and indexed. The second is
// the leak: the records are on this device and were in its index.
func TestFindOnlyReadableSpaces(t *testing.T) {
	omn, kaz := newTestBureau(t, "OMN"), newTestBureau(t, "KAZ")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer, kaz))
	b := openTestAgent(t, newTestDevice(t, kaz, "Bolat", crypto.RoleOfficer, omn))
	shared, err := a.CreateSpace("shared", []string{"KAZ"})
	if err != nil {
		t.Fatal(err)
	}
	private, err := a.CreateSpace("omn-only", nil)
	if err != nil {
		t.Fatal(err)
	}
	findPut(t, a, shared.ID, "s1", "name", "Abdulaziz Karimov")
	findPut(t, a, private.ID, "o1", "name", "Abdulaziz Rahimov")
	transfer(t, b, a)
	if _, err := a.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	transfer(t, a, b)
	waitFindBuilt(t, b)
	if _, err := b.GetRecord(api.RecordRef{Space: shared.ID, Record: "s1"}); err != nil {
		t.Fatalf("b cannot read the shared record: %v", err)
	}
	if got := hitSet(mustFind(t, b, api.FindRequest{Query: "Абдулазиз"})); !slices.Equal(got, []string{"shared/s1/name"}) {
		t.Fatalf("before the withdrawal b finds %v, want [shared/s1/name] only", got)
	}
	if _, err := b.Find(api.FindRequest{Query: "Abdulaziz", Space: private.ID}); !errors.Is(err, ErrForbidden) {
		t.Errorf("search in a space not released to b: %v, want forbidden", err)
	}

	if _, err := a.ChangeRelease(api.SpaceBureauRequest{Space: shared.ID, Bureau: "KAZ"}, false); err != nil {
		t.Fatal(err)
	}
	transfer(t, a, b)
	if _, err := b.GetRecord(api.RecordRef{Space: shared.ID, Record: "s1"}); err != nil {
		t.Fatalf("b keeps what it held (docs/design.md §2): %v", err)
	}
	r := mustFind(t, b, api.FindRequest{Query: "Abdulaziz Karimov"})
	if len(r.Hits) != 0 {
		t.Errorf("after the withdrawal b still finds %v", hitSet(r))
	}
	if _, err := b.Find(api.FindRequest{Query: "Abdulaziz", Space: shared.ID}); !errors.Is(err, ErrForbidden) {
		t.Errorf("search in a withdrawn space: %v, want forbidden", err)
	}
	// The worker drops the space from the index itself.
	waitFor(t, "the withdrawn space to leave the index", func() bool {
		b.find.mu.Lock()
		defer b.find.mu.Unlock()
		return b.find.spaces[mustSpaceID(t, shared.ID)] == nil && b.find.idx.Len() == 0
	})
	// The owner still finds it.
	if got := hitSet(mustFind(t, a, api.FindRequest{Query: "Abdulaziz Karimov", Limit: 1})); !slices.Equal(got, []string{"shared/s1/name"}) {
		t.Errorf("a finds %v", got)
	}
}

// Deleting a record, or changing the field that matched, removes the hit
// at once (the search adds queued changes first).
func TestFindDeleteAndEdit(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFindBuilt(t, a)
	findPut(t, a, sp.ID, "p1", "name", "Oleg Smirnov")
	findPut(t, a, sp.ID, "p2", "name", "Олег Смирнов")
	if got := hitSet(mustFind(t, a, api.FindRequest{Query: "Oleg Smirnov"})); len(got) != 2 {
		t.Fatalf("before: %v", got)
	}
	if _, err := a.DeleteRecord(api.RecordRef{Space: sp.ID, Record: "p1"}); err != nil {
		t.Fatal(err)
	}
	if got := hitSet(mustFind(t, a, api.FindRequest{Query: "Oleg Smirnov"})); !slices.Equal(got, []string{"case/p2/name"}) {
		t.Errorf("after deleting p1: %v", got)
	}
	findPut(t, a, sp.ID, "p2", "name", "Pierre Martin")
	if got := hitSet(mustFind(t, a, api.FindRequest{Query: "Oleg Smirnov"})); len(got) != 0 {
		t.Errorf("after renaming p2: %v", got)
	}
	if got := hitSet(mustFind(t, a, api.FindRequest{Query: "Пьер Мартен"})); !slices.Equal(got, []string{"case/p2/name"}) {
		t.Errorf("the new name: %v", got)
	}
	// Without a search, the worker indexes the queue once writes are quiet.
	findPut(t, a, sp.ID, "p3", "name", "Leila")
	waitFor(t, "the queue to be indexed without a search", func() bool {
		a.find.mu.Lock()
		defer a.find.mu.Unlock()
		_, ok := a.find.spaces[mustSpaceID(t, sp.ID)].docs["p3"]
		return len(a.find.pending) == 0 && ok
	})
}

// Repair reloads the state: the index is emptied and built again from the
// repaired records (Building until it is), on a running agent and at the
// next start after an offline repair.
func TestFindRepairRebuilds(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	a := openTestAgent(t, cfg)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	findPut(t, a, sp.ID, "p1", "name", "Fatima Zahra")
	waitFindBuilt(t, a)
	builds := a.find.builds.Load()
	if err := a.repair(context.Background(), io.Discard); err != nil {
		t.Fatal(err)
	}
	waitFindBuilt(t, a)
	if a.find.builds.Load() == builds {
		t.Errorf("repair did not rebuild the index")
	}
	if got := hitSet(mustFind(t, a, api.FindRequest{Query: "فاطمة الزهراء"})); !slices.Equal(got, []string{"case/p1/name"}) {
		t.Errorf("after repair: %v", got)
	}
	a.Close()
	if err := Repair(context.Background(), cfg, io.Discard); err != nil {
		t.Fatal(err)
	}
	a = openTestAgent(t, cfg)
	waitFindBuilt(t, a)
	if got := hitSet(mustFind(t, a, api.FindRequest{Query: "Фатима"})); !slices.Equal(got, []string{"case/p1/name"}) {
		t.Errorf("after an offline repair and a restart: %v", got)
	}
}

// findCanaryForms are the forms of a name an index could store: as typed,
// normalised, transliterated, its phonetic key and its index terms.
func findCanaryForms(names ...string) [][]byte {
	var out [][]byte
	add := func(s string) {
		if len(s) >= 6 && !slices.ContainsFunc(out, func(b []byte) bool { return string(b) == s }) {
			out = append(out, []byte(s))
		}
	}
	for _, n := range names {
		add(n)
		add(find.Normalize(n))
		add(find.Transliterate(n))
		add(find.PhoneticKey(n))
		for _, t := range find.Terms(n) {
			add(t)
			if _, v, ok := strings.Cut(t, ":"); ok {
				add(v)
			}
		}
	}
	return out
}

// scanFor reports the files under dir holding any of the needles.
func scanFor(t *testing.T, dir string, needles [][]byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(bytes.ToLower(b), bytes.ToLower(n)) {
				hits = append(hits, filepath.Base(path)+": "+string(n))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// Canary: a unique name in Latin and Cyrillic, written, indexed and found,
// must not be on disk in any form once the agent is closed — not as typed
// (the records are sealed), nor normalised, transliterated or as its key
// (the index never leaves memory). The scanner itself is checked on a file
// that holds one form, so that the test can fail.
func TestFindCanaryNotOnDisk(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	a := openTestAgent(t, cfg)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	latin, cyrillic := "Qwendolyx Varnhoffrik", "Квендоликс Варнхоффрик"
	findPut(t, a, sp.ID, "canary", "name", latin)
	if _, err := a.SetOp(api.SetOpRequest{Space: sp.ID, Record: "canary", Field: "aliases", Op: "add", Value: cyrillic}); err != nil {
		t.Fatal(err)
	}
	waitFindBuilt(t, a)
	r := mustFind(t, a, api.FindRequest{Query: "Varnhoffrik"})
	if len(r.Hits) != 1 || r.Hits[0].Record != "canary" {
		t.Fatalf("the canary is not found: %+v", r)
	}
	a.Close()

	needles := findCanaryForms(latin, cyrillic)
	if len(needles) < 8 {
		t.Fatalf("only %d forms to look for: %q", len(needles), needles)
	}
	control := t.TempDir()
	if err := os.WriteFile(filepath.Join(control, "leak"), append([]byte("xx"), find.Transliterate(cyrillic)...), 0o600); err != nil {
		t.Fatal(err)
	}
	if hits := scanFor(t, control, needles); len(hits) == 0 {
		t.Fatal("the scanner misses a transliterated form written in clear")
	}
	if hits := scanFor(t, cfg.Layout.Dir, needles); len(hits) > 0 {
		t.Errorf("the canary is on disk in clear: %v", hits)
	}
}

// An edit of one field of a record of several re-indexes that record with
// SetFields: the edited field's old text is gone, its new text and the
// untouched fields are found, and a field the edit removed (set to "") is
// gone too.
func TestFindEditOneFieldOfMany(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFindBuilt(t, a)
	findPut(t, a, sp.ID, "p1", "given", "Karim", "family", "Haddad", "village", "Tripoli")
	findPut(t, a, sp.ID, "p1", "village", "Benghazi")
	for q, want := range map[string][]string{
		"Karim": {"case/p1/given"}, "Haddad": {"case/p1/family"}, "Benghazi": {"case/p1/village"}, "Tripoli": nil,
	} {
		if got := hitSet(mustFind(t, a, api.FindRequest{Query: q})); !slices.Equal(got, want) {
			t.Errorf("Find(%q) = %v, want %v", q, got, want)
		}
	}
	findPut(t, a, sp.ID, "p1", "family", "")
	if got := hitSet(mustFind(t, a, api.FindRequest{Query: "Haddad"})); len(got) != 0 {
		t.Errorf("a field emptied by an edit is still found: %v", got)
	}
	if got := hitSet(mustFind(t, a, api.FindRequest{Query: "Karim"})); !slices.Equal(got, []string{"case/p1/given"}) {
		t.Errorf("an untouched field after another field's edit: %v", got)
	}
}

// findHeld is what the index holds: documents and spaces.
func findHeld(a *Agent) (docs, spaces int, active bool) {
	a.find.mu.Lock()
	defer a.find.mu.Unlock()
	for _, fs := range a.find.spaces {
		docs += len(fs.docs)
	}
	return docs, len(a.find.spaces), a.find.active
}

// The index costs memory only while it is in use: nothing is indexed until
// the first search, which builds it and waits for it (complete results at
// once); it follows writes while searches come, is dropped findIdle after
// the last one, and the next search builds it again, writes made while it
// was idle included.
func TestFindIndexOnlyWhileSearching(t *testing.T) {
	old := findIdle
	findIdle = 300 * time.Millisecond
	t.Cleanup(func() { findIdle = old })
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		findPut(t, a, sp.ID, fmt.Sprintf("p%02d", i), "name", fmt.Sprintf("Oleg Smirnov %d", i))
	}
	a.com.Barrier()
	if docs, spaces, active := findHeld(a); docs != 0 || spaces != 0 || active {
		t.Fatalf("before any search the index holds %d records of %d spaces (active %v)", docs, spaces, active)
	}
	r := mustFind(t, a, api.FindRequest{Query: "Oleg Smirnov", Limit: 100})
	if r.Building || len(r.Hits) != 50 || r.Searched != 50 {
		t.Fatalf("the first search: building %v, %d hits of %d searched, want 50 of 50", r.Building, len(r.Hits), r.Searched)
	}
	findPut(t, a, sp.ID, "q1", "name", "Leila Haddad")
	if got := hitSet(mustFind(t, a, api.FindRequest{Query: "Leila"})); !slices.Equal(got, []string{"case/q1/name"}) {
		t.Fatalf("a write while in use: %v", got)
	}
	waitFor(t, "the idle index to be dropped", func() bool {
		docs, spaces, active := findHeld(a)
		return docs == 0 && spaces == 0 && !active
	})
	findPut(t, a, sp.ID, "q2", "name", "Pierre Martin")
	a.com.Barrier()
	if docs, _, _ := findHeld(a); docs != 0 {
		t.Fatalf("an idle index took a write: %d records", docs)
	}
	if got := hitSet(mustFind(t, a, api.FindRequest{Query: "Пьер Мартен"})); !slices.Equal(got, []string{"case/q2/name"}) {
		t.Fatalf("after the index was dropped, a write made while idle: %v", got)
	}
	if docs, _, active := findHeld(a); docs != 52 || !active {
		t.Fatalf("rebuilt: %d records (active %v), want 52", docs, active)
	}
}
