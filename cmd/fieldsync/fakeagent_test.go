package main

// A small in-memory stand-in for the agent's local API, served on the data
// directory's socket inside the test process. It lets the scripts check what
// the CLI sends and how it renders answers — including states one real
// device cannot produce alone (two concurrent siblings) — independently of
// the real agent, which the agent_*.txt scripts exercise.

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/rogpeppe/go-internal/testscript"

	"fieldsync/agent"
	"fieldsync/agent/api"
)

type fakeRecord struct {
	deleted bool
	fields  map[string][]api.Sibling
	sets    map[string][]string
	notes   []api.Note
	history []api.HistoryEntry
}

type fakeAgent struct {
	mu      sync.Mutex
	device  string
	officer string
	seq     uint64
	spaces  []api.Space
	records map[string]map[string]*fakeRecord // space ID -> record ID
	lastReq map[string]json.RawMessage        // path -> last request body
}

var (
	fakesMu sync.Mutex
	fakes   = map[string]*fakeAgent{} // data dir -> fake
)

func newFakeAgent() *fakeAgent {
	return &fakeAgent{device: "fakedev7aaaaaaaaaaaaaaaaaa", officer: "أمينة", records: map[string]map[string]*fakeRecord{}, lastReq: map[string]json.RawMessage{}}
}

func (f *fakeAgent) hlc() string {
	f.seq++
	return fmt.Sprintf("2026-11-27T10:00:%02d.000Z", f.seq%60)
}

func (f *fakeAgent) space(ref string) (string, *api.ErrorDetail) {
	var hits []api.Space
	for _, s := range f.spaces {
		if s.ID == ref || s.Name == ref || (len(ref) >= 6 && strings.HasPrefix(s.ID, ref)) {
			hits = append(hits, s)
		}
	}
	switch len(hits) {
	case 0:
		return "", &api.ErrorDetail{Code: api.CodeNotFound, Message: "no space " + ref}
	case 1:
		return hits[0].ID, nil
	}
	var ids []string
	for _, h := range hits {
		ids = append(ids, h.ID)
	}
	return "", &api.ErrorDetail{Code: api.CodeAmbiguous, Message: fmt.Sprintf("space %q is ambiguous: %s", ref, strings.Join(ids, ", "))}
}

func (f *fakeAgent) record(space, id string) *api.Record {
	r := f.records[space][id]
	out := &api.Record{Space: space, ID: id, Deleted: r.deleted, Fields: map[string]api.Field{}, Sets: map[string]api.SetField{}, Notes: r.notes}
	for n, sibs := range r.fields {
		if len(sibs) == 0 {
			continue
		}
		out.Fields[n] = api.Field{Value: sibs[0].Value, Conflict: len(sibs) > 1, Siblings: sibs}
		if r.deleted {
			out.DeleteConflict = true
		}
	}
	for n, els := range r.sets {
		out.Sets[n] = api.SetField{Elements: els}
	}
	if out.Notes == nil {
		out.Notes = []api.Note{}
	}
	return out
}

func (f *fakeAgent) put(space, id, field, value, b64, officer, author string) api.Sibling {
	rs := f.records[space]
	if rs[id] == nil {
		rs[id] = &fakeRecord{fields: map[string][]api.Sibling{}, sets: map[string][]string{}}
	}
	f.seq++
	s := api.Sibling{Value: value, ValueBase64: b64, Author: author, Officer: officer,
		HLC: fmt.Sprintf("2026-11-27T10:00:%02d.000Z", f.seq%60), Dot: fmt.Sprintf("%s:%d", author, f.seq)}
	return s
}

func (f *fakeAgent) handler() http.Handler {
	mux := http.NewServeMux()
	fail := func(w http.ResponseWriter, status int, d *api.ErrorDetail) {
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(api.ErrorBody{Error: *d})
	}
	notFound := func(w http.ResponseWriter, msg string) {
		fail(w, 404, &api.ErrorDetail{Code: api.CodeNotFound, Message: msg})
	}
	ok := func(w http.ResponseWriter, v any) { json.NewEncoder(w).Encode(v) }
	handle := func(path string, fn func(w http.ResponseWriter, body []byte)) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			var body json.RawMessage
			if r.Method == http.MethodPost {
				if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
					fail(w, 400, &api.ErrorDetail{Code: api.CodeBadRequest, Message: err.Error()})
					return
				}
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			f.lastReq[path] = body
			fn(w, body)
		})
	}
	withRecord := func(w http.ResponseWriter, body []byte, fn func(space, id string, r *fakeRecord)) {
		var ref api.RecordRef
		json.Unmarshal(body, &ref)
		sp, e := f.space(ref.Space)
		if e != nil {
			fail(w, 404, e)
			return
		}
		r := f.records[sp][ref.Record]
		if r == nil {
			notFound(w, fmt.Sprintf("no record %s in space %s", ref.Record, sp))
			return
		}
		fn(sp, ref.Record, r)
	}
	handle(api.PathStatus, func(w http.ResponseWriter, _ []byte) {
		ok(w, api.Status{Device: api.DeviceInfo{ID: f.device, Bureau: "OMN", Role: "officer", CertValidUntil: "2027-11-27T00:00:00Z"},
			Peers: []api.PeerInfo{}, Rejected: map[string]int{"signature": 1}, SkewedAuthors: []api.Skew{}, Gaps: []api.Gap{}, Forks: []api.Fork{}})
	})
	handle(api.PathPeers, func(w http.ResponseWriter, _ []byte) {
		ok(w, []api.PeerInfo{{ID: "peer2bbbbbbbbbbbbbbbbbbbbb", Address: "127.0.0.1:7947", Role: "relay", State: "alive", PendingOut: 2}})
	})
	handle(api.PathSpaceCreate, func(w http.ResponseWriter, body []byte) {
		var req api.SpaceCreateRequest
		json.Unmarshal(body, &req)
		s := api.Space{ID: fmt.Sprintf("sp%024d", len(f.spaces)+1), Name: req.Name, Owner: "OMN", Release: append([]string{"OMN"}, req.ReleaseTo...)}
		f.spaces = append(f.spaces, s)
		f.records[s.ID] = map[string]*fakeRecord{}
		ok(w, s)
	})
	handle(api.PathSpaceList, func(w http.ResponseWriter, _ []byte) { ok(w, f.spaces) })
	handle(api.PathRecordPut, func(w http.ResponseWriter, body []byte) {
		var req api.RecordPutRequest
		json.Unmarshal(body, &req)
		sp, e := f.space(req.Space)
		if e != nil {
			fail(w, 404, e)
			return
		}
		if req.Record == "" {
			req.Record = fmt.Sprintf("gen%04d", len(f.records[sp])+1)
		}
		var ops []api.HistoryOp
		for _, fv := range req.Fields {
			s := f.put(sp, req.Record, fv.Name, fv.Value, fv.ValueBase64, f.officer, f.device)
			r := f.records[sp][req.Record]
			var replaced []string
			for _, old := range r.fields[fv.Name] {
				replaced = append(replaced, old.Dot)
			}
			r.fields[fv.Name] = []api.Sibling{s}
			ops = append(ops, api.HistoryOp{Kind: "put", Record: req.Record, Field: fv.Name, Value: fv.Value, Resolves: replaced})
		}
		r := f.records[sp][req.Record]
		r.history = append(r.history, api.HistoryEntry{Author: f.device, Officer: f.officer, Seq: f.seq, HLC: f.hlc(), Signature: "valid", Ops: ops})
		ok(w, f.record(sp, req.Record))
	})
	handle(api.PathRecordGet, func(w http.ResponseWriter, body []byte) {
		withRecord(w, body, func(sp, id string, _ *fakeRecord) { ok(w, f.record(sp, id)) })
	})
	handle(api.PathRecordList, func(w http.ResponseWriter, body []byte) {
		var ref api.SpaceRef
		json.Unmarshal(body, &ref)
		sp, e := f.space(ref.Space)
		if e != nil {
			fail(w, 404, e)
			return
		}
		out := []api.RecordSummary{}
		for id := range f.records[sp] {
			rec := f.record(sp, id)
			n := 0
			for _, fl := range rec.Fields {
				if fl.Conflict {
					n++
				}
			}
			out = append(out, api.RecordSummary{ID: id, Deleted: rec.Deleted, Fields: len(rec.Fields), Conflicts: n})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
		ok(w, out)
	})
	handle(api.PathRecordDelete, func(w http.ResponseWriter, body []byte) {
		withRecord(w, body, func(sp, id string, r *fakeRecord) {
			r.deleted = true
			ok(w, f.record(sp, id))
		})
	})
	handle(api.PathConflictsShow, func(w http.ResponseWriter, body []byte) {
		withRecord(w, body, func(sp, id string, r *fakeRecord) {
			cs := api.ConflictsShow{Space: sp, Record: id, Fields: []api.ConflictField{}}
			rec := f.record(sp, id)
			var names []string
			for n, fl := range rec.Fields {
				if fl.Conflict {
					names = append(names, n)
				}
			}
			sort.Strings(names)
			for _, n := range names {
				cs.Fields = append(cs.Fields, api.ConflictField{Field: n, Siblings: rec.Fields[n].Siblings})
			}
			ok(w, cs)
		})
	})
	handle(api.PathConflictsList, func(w http.ResponseWriter, body []byte) {
		out := []api.Conflict{}
		for _, s := range f.spaces {
			for id := range f.records[s.ID] {
				for n, fl := range f.record(s.ID, id).Fields {
					if fl.Conflict {
						out = append(out, api.Conflict{Space: s.ID, Record: id, Field: n, Siblings: fl.Siblings})
					}
				}
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Record+out[i].Field < out[j].Record+out[j].Field })
		ok(w, out)
	})
	handle(api.PathResolve, func(w http.ResponseWriter, body []byte) {
		var req api.ResolveRequest
		json.Unmarshal(body, &req)
		sp, e := f.space(req.Space)
		if e != nil {
			fail(w, 404, e)
			return
		}
		r := f.records[sp][req.Record]
		if r == nil {
			notFound(w, "no record "+req.Record)
			return
		}
		live := map[string]bool{}
		for _, s := range r.fields[req.Field] {
			live[s.Dot] = true
		}
		for _, d := range req.Dots {
			if !live[d] {
				fail(w, 409, &api.ErrorDetail{Code: api.CodeConflict, Message: "sibling " + d + " is no longer live"})
				return
			}
			delete(live, d)
		}
		s := f.put(sp, req.Record, req.Field, req.Value, req.ValueBase64, f.officer, f.device)
		keep := []api.Sibling{s}
		for _, old := range r.fields[req.Field] {
			if live[old.Dot] {
				keep = append(keep, old) // arrived after what was shown: stays a conflict
			}
		}
		r.fields[req.Field] = keep
		r.history = append(r.history, api.HistoryEntry{Author: f.device, Officer: f.officer, Seq: f.seq, HLC: f.hlc(), Signature: "valid",
			Ops: []api.HistoryOp{{Kind: "resolve", Record: req.Record, Field: req.Field, Value: req.Value, Resolves: req.Dots, Reason: req.Reason}}})
		ok(w, f.record(sp, req.Record))
	})
	handle(api.PathHistory, func(w http.ResponseWriter, body []byte) {
		withRecord(w, body, func(sp, id string, r *fakeRecord) { ok(w, r.history) })
	})
	// record new: same as put with an empty record ID.
	root := http.NewServeMux()
	root.HandleFunc(api.PathRecordNew, func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path = api.PathRecordPut
		mux.ServeHTTP(w, r)
	})
	root.Handle("/", mux)
	return root
}

// cmdFakeAgent serves the fake API on DIR's socket: `fakeagent DIR`.
func cmdFakeAgent(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: fakeagent DIR")
	}
	l := agent.Layout{Dir: ts.MkAbs(args[0])}
	f := newFakeAgent()
	ln, err := net.Listen("unix", l.Socket())
	if err != nil {
		ts.Fatalf("fakeagent: %v", err)
	}
	srv := &http.Server{Handler: f.handler()}
	go srv.Serve(ln)
	fakesMu.Lock()
	fakes[l.Dir] = f
	fakesMu.Unlock()
	ts.Defer(func() { srv.Close() })
}

// cmdFakeSibling adds a concurrent value from another device, as sync would:
// `fakesibling DIR SPACE-NAME RECORD FIELD VALUE OFFICER`.
func cmdFakeSibling(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 6 {
		ts.Fatalf("usage: fakesibling DIR SPACE RECORD FIELD VALUE OFFICER")
	}
	fakesMu.Lock()
	f := fakes[ts.MkAbs(args[0])]
	fakesMu.Unlock()
	if f == nil {
		ts.Fatalf("fakesibling: no fake agent on %s", args[0])
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	sp, e := f.space(args[1])
	if e != nil {
		ts.Fatalf("fakesibling: %s", e.Message)
	}
	s := f.put(sp, args[2], args[3], args[4], "", args[5], "otherdev2bbbbbbbbbbbbbbbbb")
	r := f.records[sp][args[2]]
	// Newer HLC first, as the agent orders siblings.
	r.fields[args[3]] = append([]api.Sibling{s}, r.fields[args[3]]...)
}

// cmdFakeLastRequest prints the last request body the fake received on
// PATH: `fakereq DIR PATH`.
func cmdFakeLastRequest(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: fakereq DIR PATH")
	}
	fakesMu.Lock()
	f := fakes[ts.MkAbs(args[0])]
	fakesMu.Unlock()
	if f == nil {
		ts.Fatalf("fakereq: no fake agent on %s", args[0])
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fmt.Fprintf(ts.Stdout(), "%s\n", f.lastReq[args[1]])
}
