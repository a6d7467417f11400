package agent

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
)

// Handler is the local API (docs/api.md): RPC-style JSON over the Unix socket.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	get := func(path string, fn func() (any, error)) {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			v, err := fn()
			a.reply(w, v, err)
		})
	}
	get(api.PathStatus, func() (any, error) { return a.Status(), nil })
	get(api.PathPeers, func() (any, error) { return a.Peers(), nil })
	get(api.PathSpaceList, func() (any, error) { return a.ListSpaces(), nil })
	post(a, mux, api.PathSpaceCreate, func(req api.SpaceCreateRequest) (any, error) { return a.CreateSpace(req.Name, req.ReleaseTo) })
	post(a, mux, api.PathSpaceDigest, func(req api.SpaceRef) (any, error) { return a.Digest(req) })
	post(a, mux, api.PathRecordPut, func(req api.RecordPutRequest) (any, error) {
		if req.Record == "" {
			return nil, fmt.Errorf("%w: no record ID (use record new for a generated one)", ErrBadRequest)
		}
		return a.PutFields(req)
	})
	post(a, mux, api.PathRecordNew, func(req api.RecordPutRequest) (any, error) {
		req.Record = ""
		return a.PutFields(req)
	})
	post(a, mux, api.PathRecordGet, func(req api.RecordRef) (any, error) { return a.GetRecord(req) })
	post(a, mux, api.PathRecordList, func(req api.SpaceRef) (any, error) { return a.ListRecords(req) })
	post(a, mux, api.PathRecordDelete, func(req api.RecordRef) (any, error) { return a.DeleteRecord(req) })
	post(a, mux, api.PathSetOp, func(req api.SetOpRequest) (any, error) { return a.SetOp(req) })
	post(a, mux, api.PathNoteAdd, func(req api.NoteAddRequest) (any, error) { return a.AddNote(req) })
	post(a, mux, api.PathConflictsList, func(req api.ConflictsListRequest) (any, error) { return a.ConflictsList(req) })
	post(a, mux, api.PathConflictsShow, func(req api.RecordRef) (any, error) { return a.ConflictsShow(req) })
	post(a, mux, api.PathResolve, func(req api.ResolveRequest) (any, error) { return a.Resolve(req) })
	post(a, mux, api.PathHistory, func(req api.RecordRef) (any, error) { return a.History(req) })
	for _, register := range apiExtensions {
		register(a, mux)
	}
	// Go's profiler, for diagnosing memory and CPU: the socket is the
	// device owner's alone (mode 0600) and profiles hold no case data.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.reply(w, nil, fmt.Errorf("%w: no API method %s %s (see docs/api.md)", ErrNotFound, r.Method, r.URL.Path))
	})
	return mux
}

// apiExtensions are the API methods that live in their own files (bundles,
// backups, trust, mesh keys): each file adds its registration from init, so
// features do not all edit one route table.
var apiExtensions []func(a *Agent, mux *http.ServeMux)

// post registers a JSON method: the body is decoded strictly (unknown fields
// and trailing data are errors) within the request size limit.
func post[T any](a *Agent, mux *http.ServeMux, path string, fn func(T) (any, error)) {
	mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
		var req T
		body := http.MaxBytesReader(w, r.Body, a.cfg.MaxRequestBytes)
		dec := json.NewDecoder(body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				a.reply(w, nil, fmt.Errorf("%w: request larger than %d bytes", errTooLarge, a.cfg.MaxRequestBytes))
				return
			}
			a.reply(w, nil, fmt.Errorf("%w: malformed JSON request: %v", ErrBadRequest, err))
			return
		}
		if _, err := dec.Token(); err != io.EOF {
			a.reply(w, nil, fmt.Errorf("%w: trailing data after the JSON request", ErrBadRequest))
			return
		}
		v, err := fn(req)
		a.reply(w, v, err)
	})
}

// errorCode maps an error to its API code and the HTTP status that code
// travels with (api.HTTPStatus).
func errorCode(err error) (string, int) {
	code := apiCode(err)
	return code, api.HTTPStatus(code)
}

// apiCode is the API error code of err.
func apiCode(err error) string {
	var re *RejectError
	var se *StoreError
	switch {
	case errors.Is(err, ErrNotFound):
		return api.CodeNotFound
	case errors.Is(err, ErrBadRequest):
		return api.CodeBadRequest
	case errors.Is(err, ErrAmbiguous):
		return api.CodeAmbiguous
	case errors.Is(err, ErrConflict):
		return api.CodeConflict
	case errors.Is(err, errTooLarge):
		return api.CodeTooLarge
	case errors.Is(err, ErrForbidden):
		return api.CodeForbidden
	case errors.As(err, &re):
		return api.CodeBadRequest
	case errors.As(err, &se), errors.Is(err, ErrClosed), errors.Is(err, ErrDiskFull):
		return api.CodeUnavailable
	}
	return api.CodeInternal
}

func (a *Agent) reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		code, status := errorCode(err)
		body := api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: err.Error()}}
		var se *StoreError
		if errors.As(err, &se) {
			body.Error.Hint = se.Hint()
		}
		if status >= 500 {
			a.log.Error("api request failed", "err", err)
		}
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(body)
		return
	}
	json.NewEncoder(w).Encode(v)
}

// History is `history SPACE RECORD`: every stored change that touches the
// record, re-verified now (docs/design.md §8), oldest first by HLC.
func (a *Agent) History(ref api.RecordRef) ([]api.HistoryEntry, error) {
	sp, rid, err := a.recordRef(ref)
	if err != nil {
		return nil, err
	}
	out := []api.HistoryEntry{}
	// What the apply path did with each change (causal.go): applied, kept as
	// a no-op, or waiting. Judged from a snapshot of the space's context and
	// the envelopes held, as repair does. The envelopes are opened with a
	// snapshot of the space's epoch keys: rotations add keys meanwhile.
	var applied *crdt.Context
	var keys crypto.Keyring
	err = a.withRead(func() error {
		if cur := a.spaces[sp.id]; cur != nil {
			sp = cur // a reload since the lookup made a new one
		}
		applied, keys = sp.ctx.Clone(), sp.keyring()
		return nil
	})
	if err != nil {
		return nil, err
	}
	j := historyJudge{a: a, sp: sp, rid: rid, applied: applied, keys: keys, held: a.heldEnvelope(sp, nil)}
	err = a.db.kv.Scan(envSpacePrefix(sp.id), func(k, sealed []byte) error {
		if e, listed := j.entry(k, sealed); listed {
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out = append(out, a.erasureHistory(sp.id, rid)...)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].HLC != out[j].HLC {
			return out[i].HLC < out[j].HLC
		}
		if out[i].Author != out[j].Author {
			return out[i].Author < out[j].Author
		}
		return out[i].Seq < out[j].Seq
	})
	if err := a.withReceipts(sp, out); err != nil {
		return nil, err
	}
	return out, nil
}

// historyJudge judges each stored envelope of a space for History, from
// snapshots taken under stateMu: what was applied, and the epoch keys.
type historyJudge struct {
	a       *Agent
	sp      *spaceState // only its ID and the keys snapshot are read
	rid     crdt.RecordID
	applied *crdt.Context
	keys    crypto.Keyring
	held    func(crypto.DeviceID, uint64) ([32]byte, bool)
}

// entry returns the history entry of one stored envelope and whether the
// record's history lists it: every change that touches the record, and
// every envelope that cannot be read at all (it may have).
func (j historyJudge) entry(k, sealed []byte) (api.HistoryEntry, bool) {
	a, sp, rid, applied, keys, held := j.a, j.sp, j.rid, j.applied, j.keys, j.held
	env, err := a.db.open(k, sealed)
	_, author, seq, _ := parseEnvKey(k)
	e := api.HistoryEntry{Author: author.String(), Seq: seq, Ops: []api.HistoryOp{}}
	if err != nil {
		// Corrupt on disk: we cannot tell which records it touched, so
		// it is listed in every record's history as invalid.
		e.Signature, e.Error = "invalid", "stored envelope is corrupt"
		return e, true
	}
	h, err := crypto.ParseHeader(env)
	if err != nil {
		e.Signature, e.Error = "invalid", err.Error()
		return e, true
	}
	if h.Kind != crypto.KindChange {
		return e, false
	}
	ts := crdt.UnpackTimestamp(h.HLC)
	e.HLC, e.Time = formatHLC(ts), time.UnixMilli(ts.Wall).UTC().Format(time.RFC3339)
	e.Officer = a.officer(sp, author)
	e.Bureau = a.bureauOf(author)
	cert := a.trustNow().certs[author]
	if cert == nil {
		e.Signature, e.Error = "invalid", "author's certificate is unknown"
		return e, true
	}
	if _, _, err := crypto.Verify(env, cert.Device); err != nil {
		e.Signature, e.Error = "invalid", err.Error()
		return e, true
	}
	oc, err := openChange(env, keys) // either envelope version (segments.go)
	if err != nil || oc.ch == nil {
		// No key; or validly signed, but its body does not open under its
		// epoch key (a no-op everywhere, naming no record we can tell), or
		// is an agent body (no record).
		return e, false
	}
	ch := oc.ch
	if ch.Author != crdt.ReplicaID(h.Author) || ch.Seq != h.Seq || ch.HLC.Pack() != h.HLC {
		// Validly signed; does not decode (or waits for a newer
		// build), or does not match its header: it changed nothing
		// and names no record we can trust.
		return e, false
	}
	e.Signature, e.Outcome = "valid", api.OutcomeApplied
	if v, _, why := a.staticVerdict(sp, ch, held); v == causalBad {
		e.Outcome, e.Error = api.OutcomeNoop, why.Error()
	} else if !applied.Contains(ch.Dot()) {
		e.Outcome, e.Error = api.OutcomeWaiting, "not applied yet: it waits for a change it depends on"
	}
	var touches bool
	e.Ops, touches = historyOps(ch, oc.withheld, rid, e.Outcome == api.OutcomeApplied)
	return e, touches
}

// historyOps lists the ops of ch on record rid, and whether there are any.
// A change that was not applied (a no-op, or waiting) is listed without
// ops: it changed nothing (yet), and a hostile change's seen dots are not
// worth listing.
//
// An op held without its value (withheld: pruned) is listed with Pruned.
func historyOps(ch *crdt.Change, withheld []bool, rid crdt.RecordID, applied bool) ([]api.HistoryOp, bool) {
	ops, touches := []api.HistoryOp{}, false
	for i, op := range ch.Ops {
		if op.Record != rid {
			continue
		}
		touches = true
		if !applied {
			continue
		}
		v := op.Describe()
		hop := api.HistoryOp{Kind: strings.ReplaceAll(v.Kind, "-", "_"), Record: string(v.Record), Field: v.Field, Reason: v.Reason}
		if utf8.Valid(v.Value) {
			hop.Value = string(v.Value)
		} else {
			hop.ValueBase64 = base64.StdEncoding.EncodeToString(v.Value)
		}
		for _, d := range v.Seen {
			hop.Resolves = append(hop.Resolves, d.String())
		}
		hop.Pruned = i < len(withheld) && withheld[i]
		hop.Dot = opDotOf(ch, i).String()
		ops = append(ops, hop)
	}
	return ops, touches
}

// Status is `status` (docs/design.md §8).
func (a *Agent) Status() api.Status {
	st := api.Status{
		Device: api.DeviceInfo{
			ID:             a.dev.String(),
			Bureau:         a.cert.Bureau.Name,
			Role:           a.cert.Role.String(),
			CertValidUntil: a.cert.NotAfter.UTC().Format(time.RFC3339),
		},
		Peers:         a.Peers(),
		Rejected:      map[string]int{},
		SkewedAuthors: []api.Skew{},
		Gaps:          []api.Gap{},
		Forks:         []api.Fork{},
		Missing:       []api.Gap{},
		Version:       Version,
		CertConflicts: a.CertConflicts(),
	}
	now := a.cfg.now()
	switch {
	case now.After(a.cert.NotAfter):
		st.Device.CertWarning = "certificate has expired by this device's clock"
	case now.Before(a.cert.NotBefore):
		st.Device.CertWarning = "certificate is not yet valid by this device's clock"
	case a.cert.NotAfter.Sub(now) < a.cfg.CertWarning:
		st.Device.CertWarning = fmt.Sprintf("certificate expires in %d days", int(a.cert.NotAfter.Sub(now).Hours()/24))
	}
	own := map[crypto.SpaceID]uint64{}
	a.withRead(func() error {
		for id, sp := range a.spaces {
			own[id] = sp.heads[a.dev].Seq
		}
		return nil
	})
	for id, seq := range own {
		if held := a.peerHeldSeq(id); seq > held {
			st.UnsyncedLocal += int(seq - held)
		}
	}
	a.statMu.Lock()
	for k, v := range a.rejected {
		st.Rejected[k] = v
	}
	for dev, d := range a.skewed {
		st.SkewedAuthors = append(st.SkewedAuthors, api.Skew{Author: dev.String(), DriftMillis: d})
	}
	for _, g := range a.gaps {
		st.Gaps = append(st.Gaps, g)
	}
	st.Missing = append(st.Missing, a.missing...)
	st.CorruptValues = a.corrupt
	st.Healed = a.healedValues.Load() // heal.go
	if !a.cfg.Relay {
		r := a.retentionStat // autoerase.go
		r.AutoErase = !a.cfg.NoAutoErase
		st.Retention = &r
	}
	a.statMu.Unlock()
	for k, seq := range a.trustNow().frozen {
		st.Forks = append(st.Forks, api.Fork{Space: k.space.String(), Author: k.author.String(), Seq: seq})
	}
	st.Unreadable = a.unreadable()
	if e := a.engine(); e != nil {
		s := e.Stats()
		st.Sync = &api.SyncStats{Addr: e.LocalAddr(), Rounds: s.Rounds, RoundErrors: s.RoundErrors, EnvelopesSent: s.Sent,
			EnvelopesAdded: s.Added, Duplicates: s.Duplicates, BytesIn: s.SyncBytesIn, BytesOut: s.SyncBytesOut,
			GossipBytesIn: s.GossipBytesIn, GossipBytesOut: s.GossipBytesOut, AuthFailures: s.AuthFailures, BroadcastQueue: s.BroadcastQueue,
			Mode: "member", Watchers: s.Watchers, NudgesSent: s.NudgesSent,
			HeldBackEnvelopes: s.HeldBackEnvelopes, HeldBackBytes: s.HeldBackBytes, BudgetDayBytes: s.BudgetDayBytes}
		if !s.HeldBackSince.IsZero() {
			st.Sync.HeldBackSince = s.HeldBackSince.UTC().Format(time.RFC3339)
		}
		if e.IsClient() {
			st.Sync.Mode = "client"
			for _, u := range e.Upstreams() {
				up := api.Upstream{Addr: u.Addr, State: u.State, Since: u.Since.UTC().Format(time.RFC3339), LastErr: u.LastErr,
					Streams: u.Streams, Nudges: u.Nudges}
				if !u.Peer.IsZero() {
					up.Peer = u.Peer.String()
				}
				st.Sync.Upstreams = append(st.Sync.Upstreams, up)
			}
		}
		for reason, n := range s.Rejected {
			if _, ok := st.Rejected[reason]; !ok { // counted by the engine only (e.g. mesh objects)
				st.Rejected[reason] = int(n)
			}
		}
	}
	sort.Slice(st.Forks, func(i, j int) bool {
		if st.Forks[i].Space != st.Forks[j].Space {
			return st.Forks[i].Space < st.Forks[j].Space
		}
		return st.Forks[i].Author < st.Forks[j].Author
	})
	sort.Slice(st.SkewedAuthors, func(i, j int) bool { return st.SkewedAuthors[i].Author < st.SkewedAuthors[j].Author })
	sort.Slice(st.Gaps, func(i, j int) bool {
		if st.Gaps[i].Space != st.Gaps[j].Space {
			return st.Gaps[i].Space < st.Gaps[j].Space
		}
		return st.Gaps[i].Author < st.Gaps[j].Author
	})
	att := a.AttachStatus()
	st.Attachments = &att
	ps := a.PartialStatus()
	st.PartialEnvelopes = &ps
	if a.com != nil {
		st.Store = &api.StoreStats{Commits: a.com.Commits(), Groups: a.com.Writes()}
	}
	return st
}

// peerHeldSeq is the highest seq of our own log in the space that some peer
// is known to hold (from the version vectors peers send in sync rounds).
func (a *Agent) peerHeldSeq(space crypto.SpaceID) uint64 {
	a.statMu.Lock()
	defer a.statMu.Unlock()
	return a.peerHeld[space]
}

func (a *Agent) notePeerHeld(space crypto.SpaceID, seq uint64) {
	a.statMu.Lock()
	defer a.statMu.Unlock()
	if seq > a.peerHeld[space] {
		a.peerHeld[space] = seq
	}
}

// Peers lists the peers the sync engine knows, with last contact and the
// envelopes pending each way as of the last round.
func (a *Agent) Peers() []api.PeerInfo {
	out := []api.PeerInfo{}
	e := a.engine()
	if e == nil {
		return out
	}
	for _, p := range e.Peers() {
		pi := api.PeerInfo{ID: p.ID.String(), Address: p.Addr, Role: p.Role.String(), State: "dead",
			PendingOut: int(p.PendingOut), PendingIn: int(p.PendingIn)}
		if p.Alive {
			pi.State = "alive"
		}
		if b, ok := a.trust.Lookup(p.Bureau); ok {
			pi.Bureau = b.Name
		}
		if !p.LastContact.IsZero() {
			pi.LastContact = p.LastContact.UTC().Format(time.RFC3339)
		}
		out = append(out, pi)
	}
	return out
}
