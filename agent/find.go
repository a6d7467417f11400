package agent

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
	"fieldsync/internal/find"
)

// The search index (docs/find.md, "The agent's index"): the records of every
// space this device can read, in memory only, so that no term of it ever
// reaches the disk. It is derived data:
//
//   - built at the first search (and again after every reload of the state,
//     repair included, while it is in use) from the stored records, and
//     dropped after findIdle without a search: it costs some 1.7 KB per
//     indexed field (hundreds of MB for a large store), which a laptop
//     syncing but not searching should not carry (docs/design.md §7);
//     FindResponse.Building is true while a space is still being built;
//   - kept up to date by the apply path: recordEntries, which every local
//     write and every applied received change goes through, queues the
//     touched records' texts under stateMu (cheap) and the worker, or the
//     next search, adds them to the index;
//   - cut to the readable spaces: a space leaves the index as soon as the
//     device cannot read it any more (release withdrawn from its bureau,
//     device revoked, no epoch key), and a search never returns a hit from
//     a space that is not readable at the time of the search, whatever the
//     index still holds.
//
// Locks: findIndex.mu is taken under stateMu (the apply path), never the
// other way round; nothing is called out while it is held but the index
// itself (whose own lock is a leaf).

// findMaxText bounds the text indexed per field: a note of megabytes would
// cost as much memory again in the index for little use.
const findMaxText = 64 << 10

// findBatch is how many records one lock hold of findIndex.mu adds.
const findBatch = 256

// The queue of updates is added to the index once the apply path has been
// quiet for findQuiet, or once it holds findFlushAt updates, and by every
// search first (so results never miss a write). A sync burst is thus applied
// first and indexed after, instead of the worker taking CPU from every
// batch: on two cores, indexing as the changes came cost apply a third of
// its throughput (docs/find.md, "Figures"). At about 200 bytes an update,
// the queue holds some 13 MB at most.
var findFlushAt = 65536 // a variable for BenchmarkFindAgent (FIND_BENCH_FLUSH_AT)

const findQuiet = 250 * time.Millisecond

// findIdle is how long the index is kept after the last search.
var findIdle = 30 * time.Minute // a variable for tests

type findState uint8

const (
	findBuilding findState = iota + 1 // being scanned; changes go to dirty
	findBuilt                         // in the index; changes go to pending
)

// findSpace is the index's view of one readable space.
type findSpace struct {
	state findState
	// dirty holds the records changed while the space is being scanned:
	// they are read again once the scan is done.
	dirty map[crdt.RecordID]struct{}
	// docs holds the field keys of each record in the index.
	docs map[crdt.RecordID][]string
}

// findUpdate is a record's new searchable texts (nil: it leaves the index).
type findUpdate struct {
	space  crypto.SpaceID
	record crdt.RecordID
	fields []findField
}

// findField is one searchable field of a record: key is the kind ('r'
// register, 's' set, 'n' notes) followed by the field name; texts are its
// live values (siblings, elements, notes).
type findField struct {
	key   string
	texts []string
}

// findIndex is the agent's search index (find.go).
type findIndex struct {
	mu      sync.Mutex
	gen     uint64 // bumped by reset: a build of an older generation stops
	idx     *find.Index
	spaces  map[crypto.SpaceID]*findSpace
	pending []findUpdate
	// stop ends a build in progress (Close).
	stop atomic.Bool
	// builds counts completed space builds (tests, metrics).
	builds atomic.Uint64
	// quiet is armed by the first update queued; when it fires it flushes
	// if nothing was queued since it was armed, else waits again. pushes
	// and seen count the queued batches. Under mu.
	quiet       *time.Timer
	pushes      uint64
	seen        uint64
	quietClosed bool
	// active: the index is in use (a search came within findIdle); while it
	// is not, it holds nothing and the apply path skips it. Changed under
	// stateMu and mu. lastSearch is a search's time (Unix ns); idle checks
	// it when findIdle has passed since the index became active or was
	// last checked. Under mu.
	active     bool
	lastSearch int64
	idle       *time.Timer
}

func newFindIndex() *findIndex {
	return &findIndex{idx: find.NewIndex(), spaces: map[crypto.SpaceID]*findSpace{}}
}

func init() {
	apiExtensions = append(apiExtensions, func(a *Agent, mux *http.ServeMux) {
		post(a, mux, api.PathFind, func(req api.FindRequest) (any, error) { return a.Find(req) })
	})
}

// findDocID is the index's document ID of a record: space, "/", record (a
// space ID's text never holds "/").
func findDocID(space crypto.SpaceID, record crdt.RecordID) string {
	return space.String() + "/" + string(record)
}

// fieldOfKey splits an index field key into what FindHit reports.
func fieldOfKey(key string) (field, kind string) {
	switch {
	case key == "n":
		return "notes", "note"
	case strings.HasPrefix(key, "s"):
		return key[1:], "set"
	default:
		return key[1:], "register"
	}
}

// recordTexts is what the index holds of a record: the live values of its
// registers (every sibling of a conflict), its sets' elements and its notes'
// texts, each field's texts in a fixed order; nil for a record that is gone
// (deleted without a surviving edit, or empty). Values that are not UTF-8
// text (files, images) are left out.
func recordTexts(r *crdt.Record) []findField {
	if r == nil || r.Empty() {
		return nil
	}
	if del, conflict := r.Deleted(); del && !conflict {
		return nil
	}
	var out []findField
	add := func(key string, texts []string) {
		if len(texts) > 0 {
			out = append(out, findField{key: key, texts: texts})
		}
	}
	for _, f := range r.Registers() {
		var texts []string
		for _, s := range f.Siblings {
			if len(s.Value) > 0 && utf8.Valid(s.Value) {
				texts = append(texts, string(s.Value))
			}
		}
		add("r"+f.Name, texts)
	}
	for _, s := range r.Sets() {
		var texts []string
		for _, e := range s.Elements {
			if len(e) > 0 && utf8.Valid(e) {
				texts = append(texts, string(e))
			}
		}
		add("s"+s.Name, texts)
	}
	var notes []string
	for _, n := range r.Notes() {
		if !n.Removed && n.Text != "" {
			notes = append(notes, n.Text)
		}
	}
	add("n", notes)
	return out
}

// joinTexts is the text indexed for a field: its values, one a line, cut at
// findMaxText (on a rune boundary).
func joinTexts(texts []string) string {
	s := strings.Join(texts, "\n")
	if len(s) <= findMaxText {
		return s
	}
	s = s[:findMaxText]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// applyLocked puts one record's texts into the index. f.mu held.
func (f *findIndex) applyLocked(fs *findSpace, u findUpdate) {
	doc := findDocID(u.space, u.record)
	old := fs.docs[u.record]
	if u.fields == nil {
		if old != nil {
			f.idx.Remove(doc)
			delete(fs.docs, u.record)
		}
		return
	}
	// One SetFields per record: a change touches a field or two of a
	// record, and the fields whose text did not change are not analysed
	// again (one Add per field cost every update the whole record's
	// analysis, ten times the apply path's CPU on W1's 8-field records).
	keys := make([]string, 0, len(u.fields))
	texts := make([]find.FieldText, 0, len(u.fields))
	for _, fl := range u.fields {
		texts = append(texts, find.FieldText{Name: fl.key, Text: joinTexts(fl.texts)})
		keys = append(keys, fl.key)
	}
	f.idx.SetFields(doc, texts)
	fs.docs[u.record] = keys
}

// readable reports whether this device can read the space: an officer
// device, not revoked, of a bureau the space is released to, holding an
// epoch key of it. stateMu held.
func (a *Agent) readable(sp *spaceState) bool {
	return !a.cfg.Relay && len(sp.keys) > 0 && entitled(sp, a.cert) && !a.isRevoked(a.dev)
}

// findTouched is the apply path's hook (recordEntries): the touched records'
// texts go to the index's queue, or, while their space is being scanned, to
// its dirty set. stateMu held.
func (a *Agent) findTouched(sp *spaceState, touched map[crdt.RecordID]*crdt.Record) {
	f := a.find
	if f == nil || len(touched) == 0 {
		return
	}
	f.mu.Lock()
	if !f.active {
		f.mu.Unlock()
		return // not in use: built from the store at the next search
	}
	fs := f.spaces[sp.id]
	var state findState
	if fs != nil {
		state = fs.state
	}
	switch state {
	case findBuilding:
		for id := range touched {
			fs.dirty[id] = struct{}{}
		}
		f.mu.Unlock()
		return
	case findBuilt:
		f.mu.Unlock()
	default:
		f.mu.Unlock()
		// A space the index does not hold yet: if it became readable (its
		// key arrived), the worker builds it.
		if a.readable(sp) {
			a.queueAfter(&a.after.findRefreshDue)
		}
		return
	}
	ups := make([]findUpdate, 0, len(touched))
	for id, r := range touched {
		ups = append(ups, findUpdate{space: sp.id, record: id, fields: recordTexts(r)})
	}
	f.mu.Lock()
	if fs := f.spaces[sp.id]; fs != nil && fs.state == findBuilt {
		f.pending = append(f.pending, ups...)
	}
	f.pushes++
	due := len(f.pending) >= findFlushAt
	if !due && f.quiet == nil && !f.quietClosed {
		f.seen = f.pushes
		f.quiet = time.AfterFunc(findQuiet, a.findQuietCheck)
	}
	f.mu.Unlock()
	if due {
		a.queueAfter(&a.after.findFlushDue)
	}
}

// findQuietCheck runs when the quiet timer fires: the worker flushes if no
// update was queued for findQuiet, else the timer waits again.
func (a *Agent) findQuietCheck() {
	f := a.find
	f.mu.Lock()
	if f.quietClosed || f.quiet == nil {
		f.mu.Unlock()
		return
	}
	if f.pushes != f.seen {
		f.seen = f.pushes
		f.quiet.Reset(findQuiet)
		f.mu.Unlock()
		return
	}
	f.quiet = nil
	f.mu.Unlock()
	a.queueAfter(&a.after.findFlushDue)
}

// closeQuiet stops the quiet timer for good (Close).
func (f *findIndex) closeQuiet() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.quietClosed = true
	if f.quiet != nil {
		f.quiet.Stop()
		f.quiet = nil
	}
	if f.idle != nil {
		f.idle.Stop()
		f.idle = nil
	}
}

// findActivate puts the index in use (a search): from now the apply path
// feeds it, and the worker builds every readable space. It reports whether
// the index was idle. stateMu held, so no apply runs between the switch and
// the build's marking of its spaces.
func (a *Agent) findActivate() bool {
	f := a.find
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastSearch = a.cfg.now().UnixNano()
	if f.active {
		return false
	}
	f.active = true
	if !f.quietClosed {
		f.idle = time.AfterFunc(findIdle, a.findIdleCheck)
	}
	return true
}

// findIdleCheck runs findIdle after the index became active or was last
// checked: the index is dropped if no search came since, so its memory goes
// back, else checked again when the newest search is findIdle old.
func (a *Agent) findIdleCheck() {
	f := a.find
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.quietClosed || !f.active {
		return
	}
	if since := a.cfg.now().Sub(time.Unix(0, f.lastSearch)); since < findIdle {
		f.idle = time.AfterFunc(findIdle-since, a.findIdleCheck)
		return
	}
	f.idle = nil
	f.active = false
	f.gen++ // a build in progress stops (errFindStale)
	f.idx = find.NewIndex()
	f.spaces = map[crypto.SpaceID]*findSpace{}
	f.pending = nil
}

// flush adds the queued updates to the index, a batch per lock hold so
// that the apply path never waits long for f.mu.
func (f *findIndex) flush() {
	for {
		f.mu.Lock()
		n := min(len(f.pending), findBatch)
		if n == 0 {
			f.mu.Unlock()
			return
		}
		for _, u := range f.pending[:n] {
			if fs := f.spaces[u.space]; fs != nil && fs.state == findBuilt {
				f.applyLocked(fs, u)
			}
		}
		f.pending = slices.Delete(f.pending, 0, n)
		if len(f.pending) == 0 {
			f.pending = nil // let a burst's backing array go
		}
		f.mu.Unlock()
	}
}

// findReset empties the index and has the worker build it again: the
// state was (re)loaded from the store, which may differ from what the index
// was told (a failed commit, a repair, a cut). stateMu held (or opening).
func (a *Agent) findReset() {
	f := a.find
	if f == nil {
		return
	}
	f.mu.Lock()
	f.gen++
	f.idx = find.NewIndex()
	f.spaces = map[crypto.SpaceID]*findSpace{}
	f.pending = nil
	active := f.active
	f.mu.Unlock()
	if active && a.opened.Load() {
		a.queueAfter(&a.after.findRefreshDue)
	}
}

// findRefresh is the worker's job: drop the spaces the device can no longer
// read, then build those it can read and the index does not hold yet.
func (a *Agent) findRefresh() error {
	f := a.find
	if f == nil {
		return nil
	}
	f.flush()
	a.stateMu.Lock()
	if a.closed {
		a.stateMu.Unlock()
		return ErrClosed
	}
	f.mu.Lock()
	active := f.active
	f.mu.Unlock()
	if !active {
		a.stateMu.Unlock()
		return nil // not in use: nothing to build or drop
	}
	readable := map[crypto.SpaceID]bool{}
	for id, sp := range a.spaces {
		if a.readable(sp) {
			readable[id] = true
		}
	}
	var build []crypto.SpaceID
	f.mu.Lock()
	gen := f.gen
	for id, fs := range f.spaces {
		if !readable[id] {
			for rid := range fs.docs {
				f.idx.Remove(findDocID(id, rid))
			}
			delete(f.spaces, id)
		}
	}
	f.pending = slices.DeleteFunc(f.pending, func(u findUpdate) bool { return !readable[u.space] })
	for id := range readable {
		if f.spaces[id] == nil {
			f.spaces[id] = &findSpace{state: findBuilding, dirty: map[crdt.RecordID]struct{}{}, docs: map[crdt.RecordID][]string{}}
			build = append(build, id)
		}
	}
	f.mu.Unlock()
	if len(build) > 0 {
		// Writes handed to the committer before the spaces were marked
		// building are on disk before the scans start, so the scans see
		// them; later ones are in the dirty sets.
		a.com.Barrier()
	}
	a.stateMu.Unlock()
	slices.SortFunc(build, func(x, y crypto.SpaceID) int { return strings.Compare(x.String(), y.String()) })
	for _, id := range build {
		if err := a.findBuild(id, gen); err != nil {
			return err
		}
	}
	return nil
}

var errFindStale = errors.New("index reset during its build")

// findBuild scans a space's stored records into the index, then reads again
// those changed meanwhile, the last of them under stateMu, where the space
// turns built: from then on the apply path queues its changes.
func (a *Agent) findBuild(space crypto.SpaceID, gen uint64) error {
	f := a.find
	batch := make([]findUpdate, 0, findBatch)
	put := func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		fs := f.spaces[space]
		if f.gen != gen || fs == nil || fs.state != findBuilding {
			return errFindStale
		}
		for _, u := range batch {
			f.applyLocked(fs, u)
		}
		batch = batch[:0]
		return nil
	}
	prefix := recSpacePrefix(space)
	var corrupt []crdt.RecordID
	err := a.db.scan(prefix, func(k, v []byte) error {
		if f.stop.Load() {
			return ErrClosed
		}
		r, err := crdt.UnmarshalRecord(v)
		if err != nil {
			corrupt = append(corrupt, crdt.RecordID(k[len(prefix):]))
			return nil
		}
		batch = append(batch, findUpdate{space: space, record: r.ID(), fields: recordTexts(r)})
		if len(batch) == findBatch {
			return put()
		}
		return nil
	}, func(k []byte) { corrupt = append(corrupt, crdt.RecordID(k[len(prefix):])) })
	if err == nil {
		err = put()
	}
	if err == nil {
		// Corrupt records are read again (rebuilt) with the dirty ones.
		f.mu.Lock()
		if fs := f.spaces[space]; fs != nil && f.gen == gen {
			for _, id := range corrupt {
				fs.dirty[id] = struct{}{}
			}
		}
		f.mu.Unlock()
		for range 3 { // catch up outside stateMu while writes go on
			var more bool
			if more, err = a.findCatchUp(space, gen, false); err != nil || !more {
				break
			}
		}
	}
	if err == nil {
		_, err = a.findCatchUp(space, gen, true)
	}
	switch {
	case errors.Is(err, errFindStale):
		return nil // a reset or a drop came first; a new refresh is queued
	case err != nil:
		if !errors.Is(err, ErrClosed) {
			a.log.Warn("building the search index", "space", space, "err", err)
		}
		return err
	}
	f.builds.Add(1)
	return nil
}

// findCatchUp reads again the records of a building space changed since its
// scan began. With last, it holds stateMu throughout, so no change can slip
// in between, and marks the space built. It reports whether there were any.
func (a *Agent) findCatchUp(space crypto.SpaceID, gen uint64, last bool) (bool, error) {
	f := a.find
	take := func() ([]crdt.RecordID, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		fs := f.spaces[space]
		if f.gen != gen || fs == nil || fs.state != findBuilding {
			return nil, errFindStale
		}
		ids := make([]crdt.RecordID, 0, len(fs.dirty))
		for id := range fs.dirty {
			ids = append(ids, id)
		}
		fs.dirty = map[crdt.RecordID]struct{}{}
		slices.Sort(ids)
		return ids, nil
	}
	if !last {
		ids, err := take()
		if err != nil || len(ids) == 0 {
			return false, err
		}
		for lo := 0; lo < len(ids); lo += findBatch {
			ups, err := a.findRead(space, ids[lo:min(lo+findBatch, len(ids))], true)
			if err != nil {
				return false, err
			}
			if err := f.putBuilding(space, gen, ups, false); err != nil {
				return false, err
			}
		}
		return true, nil
	}
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	if a.closed {
		return false, ErrClosed
	}
	ids, err := take()
	if err != nil {
		return false, err
	}
	ups, err := a.findRead(space, ids, false)
	if err != nil {
		return false, err
	}
	return len(ids) > 0, f.putBuilding(space, gen, ups, true)
}

// putBuilding adds updates to a building space, and with done marks it built.
func (f *findIndex) putBuilding(space crypto.SpaceID, gen uint64, ups []findUpdate, done bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	fs := f.spaces[space]
	if f.gen != gen || fs == nil || fs.state != findBuilding {
		return errFindStale
	}
	for _, u := range ups {
		f.applyLocked(fs, u)
	}
	if done {
		fs.state, fs.dirty = findBuilt, nil
	}
	return nil
}

// findRead loads records' texts; lock says whether to take stateMu (else
// the caller holds it).
func (a *Agent) findRead(space crypto.SpaceID, ids []crdt.RecordID, lock bool) ([]findUpdate, error) {
	if lock {
		a.stateMu.Lock()
		defer a.stateMu.Unlock()
		if a.closed {
			return nil, ErrClosed
		}
	}
	sp := a.spaces[space]
	if sp == nil {
		return nil, errFindStale
	}
	ups := make([]findUpdate, 0, len(ids))
	for _, id := range ids {
		r, err := a.loadRecord(sp, id)
		if err != nil {
			return nil, err
		}
		ups = append(ups, findUpdate{space: space, record: id, fields: recordTexts(r)})
	}
	return ups, nil
}

// Find is `fieldsync find` (docs/find.md, docs/api.md): the records of the
// readable spaces (or of one) whose fields match the query across scripts
// and spellings, best first.
func (a *Agent) Find(req api.FindRequest) (api.FindResponse, error) {
	if a.cfg.Relay {
		return api.FindResponse{}, fmt.Errorf("%w: a relay holds no space key and reads no record, so it has nothing to search; search on an officer's device", ErrForbidden)
	}
	f := a.find
	if f == nil {
		return api.FindResponse{}, fmt.Errorf("%w: search is turned off on this agent (started with --no-find); restart it without that flag", ErrForbidden)
	}
	q := strings.TrimSpace(req.Query)
	switch {
	case len(q) > 1024:
		return api.FindResponse{}, fmt.Errorf("%w: a query of %d bytes; at most 1024", ErrBadRequest, len(q))
	case !utf8.ValidString(q):
		return api.FindResponse{}, fmt.Errorf("%w: the query is not valid UTF-8", ErrBadRequest)
	case len(find.Words(q)) == 0:
		return api.FindResponse{}, fmt.Errorf("%w: the query %q has no letter or digit to search for", ErrBadRequest, req.Query)
	}
	limit := req.Limit
	switch {
	case limit == 0:
		limit = 10
	case limit < 0 || limit > 1000:
		return api.FindResponse{}, fmt.Errorf("%w: limit %d; from 1 to 1000", ErrBadRequest, limit)
	}
	field := NFC(req.Field)

	names := map[string]string{} // readable spaces searched: ID text → name
	var ids []crypto.SpaceID
	a.stateMu.Lock()
	if req.Space != "" {
		sp, err := a.resolveSpace(req.Space)
		if err != nil {
			a.stateMu.Unlock()
			return api.FindResponse{}, err
		}
		if !a.readable(sp) {
			a.stateMu.Unlock()
			return api.FindResponse{}, fmt.Errorf("%w: this device cannot read space %s (%s): it holds no key of it, or the space is not released to its bureau; nothing in it can be searched", ErrForbidden, sp.id, sp.meta.Name)
		}
		names[sp.id.String()] = sp.meta.Name
		ids = append(ids, sp.id)
	} else {
		for id, sp := range a.spaces {
			if a.readable(sp) {
				names[id.String()] = sp.meta.Name
				ids = append(ids, id)
			}
		}
	}
	wasIdle := a.findActivate()
	a.stateMu.Unlock()
	if wasIdle {
		// The first search since the index was idle builds it, and waits:
		// a search must not answer from an empty index.
		if err := a.findRefresh(); err != nil && !errors.Is(err, errFindStale) {
			return api.FindResponse{}, err
		}
	}

	f.flush()
	out := api.FindResponse{Query: req.Query, Hits: []api.FindHit{}}
	f.mu.Lock()
	idx := f.idx
	refresh := false
	for _, id := range ids {
		fs := f.spaces[id]
		if fs == nil || fs.state != findBuilt {
			out.Building, refresh = true, true
		}
		if fs != nil {
			out.Searched += len(fs.docs)
		}
	}
	if len(f.spaces) > len(ids) && req.Space == "" {
		refresh = true // some space it holds is no longer readable: drop it
	}
	f.mu.Unlock()
	if refresh {
		a.queueAfter(&a.after.findRefreshDue)
	}
	filter := find.Filter{Doc: func(doc string) bool {
		sid, _, _ := strings.Cut(doc, "/")
		_, ok := names[sid]
		return ok
	}}
	if field != "" {
		filter.Field = func(key string) bool {
			return key == "r"+field || key == "s"+field || (key == "n" && field == "notes")
		}
	}
	hits := idx.SearchFilter(q, filter, limit)

	// The values shown are read from the records now, under stateMu: a
	// record deleted since the index saw it, or a space that stopped being
	// readable, is left out.
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	for _, h := range hits {
		sid, rid, _ := strings.Cut(h.DocID, "/")
		id, err := crypto.ParseSpaceID(sid)
		if err != nil {
			continue
		}
		sp := a.spaces[id]
		if sp == nil || !a.readable(sp) {
			continue
		}
		r, err := a.loadRecord(sp, crdt.RecordID(rid))
		if err != nil {
			return api.FindResponse{}, err
		}
		var texts []string
		for _, fl := range recordTexts(r) {
			if fl.key == h.Field {
				texts = fl.texts
			}
		}
		if len(texts) == 0 {
			continue
		}
		best, bestScore := texts[0], -1.0
		for _, t := range texts {
			if s := find.Similarity(q, t); s > bestScore {
				best, bestScore = t, s
			}
		}
		name, kind := fieldOfKey(h.Field)
		out.Hits = append(out.Hits, api.FindHit{Space: sid, SpaceName: names[sid], Record: rid, Field: name, Kind: kind, Value: best, Score: min(h.Score, 1)})
	}
	return out, nil
}
