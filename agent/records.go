package agent

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
)

// maxIDBytes bounds record IDs and field names.
const maxIDBytes = 512

func checkName(what, s string) (string, error) {
	s = NFC(s)
	if s == "" || len(s) > maxIDBytes || !utf8.ValidString(s) {
		return "", fmt.Errorf("%w: %s must be 1 to %d bytes of UTF-8", ErrBadRequest, what, maxIDBytes)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("%w: %s %q contains a control character", ErrBadRequest, what, s)
		}
	}
	return s, nil
}

// decodeValue returns a request value's bytes.
func (a *Agent) decodeValue(text, b64 string) ([]byte, error) {
	var v []byte
	if b64 != "" {
		if text != "" {
			return nil, fmt.Errorf("%w: give value or value_base64, not both", ErrBadRequest)
		}
		var err error
		if v, err = base64.StdEncoding.DecodeString(b64); err != nil {
			return nil, fmt.Errorf("%w: value_base64: %v", ErrBadRequest, err)
		}
	} else {
		v = []byte(text)
	}
	if int64(len(v)) > a.cfg.MaxValueBytes {
		return nil, fmt.Errorf("%w: value of %d bytes exceeds the limit of %d", errTooLarge, len(v), a.cfg.MaxValueBytes)
	}
	return v, nil
}

// lookupSpace resolves a space reference under the write lock.
func (a *Agent) lookupSpace(ref string) (*spaceState, error) {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	return a.resolveSpace(ref)
}

// PutFields is `record put` (and `record new` when req.Record is empty).
func (a *Agent) PutFields(req api.RecordPutRequest) (api.Record, error) {
	sp, err := a.lookupSpace(req.Space)
	if err != nil {
		return api.Record{}, err
	}
	id := req.Record
	if id == "" {
		id = newRecordID()
	}
	if id, err = checkName("record ID", id); err != nil {
		return api.Record{}, err
	}
	if len(req.Fields) == 0 {
		return api.Record{}, fmt.Errorf("%w: no FIELD=VALUE given", ErrBadRequest)
	}
	type fv struct {
		name string
		val  []byte
	}
	var fields []fv
	seen := map[string]bool{}
	for _, f := range req.Fields {
		name, err := checkName("field name", f.Name)
		if err != nil {
			return api.Record{}, err
		}
		if seen[name] {
			return api.Record{}, fmt.Errorf("%w: field %q given twice", ErrBadRequest, name)
		}
		seen[name] = true
		v, err := a.decodeValue(f.Value, f.ValueBase64)
		if err != nil {
			return api.Record{}, err
		}
		fields = append(fields, fv{name, v})
	}
	rid := crdt.RecordID(id)
	return a.writeRecord(sp, rid, func(r *crdt.Record) ([]crdt.Op, error) {
		if r == nil {
			r = crdt.NewRecord(rid)
		}
		ops := make([]crdt.Op, 0, len(fields))
		for _, f := range fields {
			ops = append(ops, r.Put(f.name, f.val))
		}
		return ops, nil
	})
}

// writeRecord is one write of one record: build gets the record's newest
// state (nil if it has none) and returns the ops; the result is the
// record as the write left it.
func (a *Agent) writeRecord(sp *spaceState, rid crdt.RecordID, build func(r *crdt.Record) ([]crdt.Op, error)) (api.Record, error) {
	rec, err := a.combinedWrite(sp, rid, func(load func(crdt.RecordID) (*crdt.Record, error)) ([]crdt.Op, error) {
		r, err := load(rid)
		if err != nil {
			return nil, err
		}
		return build(r)
	})
	if err != nil {
		return api.Record{}, err
	}
	return a.recordView(sp, rec), nil
}

func noRecord(sp *spaceState, rid crdt.RecordID) error {
	return fmt.Errorf("%w: no record %q in space %s", ErrNotFound, rid, sp.id)
}

// newRecordID is a random record ID: "r" and 16 base32 characters.
func newRecordID() string {
	var b [10]byte
	rand.Read(b[:])
	return "r" + strings.ToLower(strings.TrimRight(b32(b[:]), "="))
}

// DeleteRecord is `record delete`.
func (a *Agent) DeleteRecord(ref api.RecordRef) (api.Record, error) {
	sp, rid, err := a.recordRef(ref)
	if err != nil {
		return api.Record{}, err
	}
	return a.writeRecord(sp, rid, func(r *crdt.Record) ([]crdt.Op, error) {
		if r == nil {
			return nil, noRecord(sp, rid)
		}
		return []crdt.Op{r.Delete()}, nil
	})
}

// SetOp is `set add|remove`.
func (a *Agent) SetOp(req api.SetOpRequest) (api.Record, error) {
	sp, rid, err := a.recordRef(api.RecordRef{Space: req.Space, Record: req.Record})
	if err != nil {
		return api.Record{}, err
	}
	field, err := checkName("field name", req.Field)
	if err != nil {
		return api.Record{}, err
	}
	val, err := a.decodeValue(NFC(req.Value), "")
	if err != nil {
		return api.Record{}, err
	}
	if req.Op != "add" && req.Op != "remove" {
		return api.Record{}, fmt.Errorf("%w: set op %q: want add or remove", ErrBadRequest, req.Op)
	}
	return a.writeRecord(sp, rid, func(r *crdt.Record) ([]crdt.Op, error) {
		if r == nil {
			if req.Op == "remove" {
				return nil, noRecord(sp, rid)
			}
			r = crdt.NewRecord(rid)
		}
		if req.Op == "add" {
			return []crdt.Op{r.SetAdd(field, val)}, nil
		}
		return []crdt.Op{r.SetRemove(field, val)}, nil
	})
}

// AddNote is `note add`.
func (a *Agent) AddNote(req api.NoteAddRequest) (api.Record, error) {
	sp, rid, err := a.recordRef(api.RecordRef{Space: req.Space, Record: req.Record})
	if err != nil {
		return api.Record{}, err
	}
	if req.Text == "" || int64(len(req.Text)) > a.cfg.MaxValueBytes || !utf8.ValidString(req.Text) {
		return api.Record{}, fmt.Errorf("%w: a note is 1 to %d bytes of UTF-8", ErrBadRequest, a.cfg.MaxValueBytes)
	}
	return a.writeRecord(sp, rid, func(r *crdt.Record) ([]crdt.Op, error) {
		if r == nil {
			return []crdt.Op{crdt.NoteAdd(rid, req.Text)}, nil
		}
		return []crdt.Op{r.AddNote(req.Text)}, nil // revives a deleted record, like a put
	})
}

// Resolve is `resolve`: one write that has seen exactly the named siblings.
func (a *Agent) Resolve(req api.ResolveRequest) (api.Record, error) {
	sp, rid, err := a.recordRef(api.RecordRef{Space: req.Space, Record: req.Record})
	if err != nil {
		return api.Record{}, err
	}
	field, err := checkName("field name", req.Field)
	if err != nil {
		return api.Record{}, err
	}
	if len(req.Dots) == 0 {
		return api.Record{}, fmt.Errorf("%w: resolve names no siblings", ErrBadRequest)
	}
	dots := make([]crdt.Dot, 0, len(req.Dots))
	for _, s := range req.Dots {
		d, err := crdt.ParseDot(s)
		if err != nil {
			return api.Record{}, fmt.Errorf("%w: dot %q: %v", ErrBadRequest, s, err)
		}
		dots = append(dots, d)
	}
	val, err := a.decodeValue(req.Value, req.ValueBase64)
	if err != nil {
		return api.Record{}, err
	}
	if len(req.Reason) > 4096 || !utf8.ValidString(req.Reason) {
		return api.Record{}, fmt.Errorf("%w: a reason is at most 4096 bytes of UTF-8", ErrBadRequest)
	}
	return a.writeRecord(sp, rid, func(r *crdt.Record) ([]crdt.Op, error) {
		if r == nil {
			return nil, noRecord(sp, rid)
		}
		op, err := r.Resolve(field, dots, val, req.Reason)
		if err != nil {
			return nil, fmt.Errorf("%w: %v (see `fieldsync conflicts show`)", ErrConflict, err)
		}
		return []crdt.Op{op}, nil
	})
}

func (a *Agent) recordRef(ref api.RecordRef) (*spaceState, crdt.RecordID, error) {
	sp, err := a.lookupSpace(ref.Space)
	if err != nil {
		return nil, "", err
	}
	id, err := checkName("record ID", ref.Record)
	if err != nil {
		return nil, "", err
	}
	return sp, crdt.RecordID(id), nil
}

// readRecord reads a record (nil if absent), rebuilding a corrupt one. It
// returns a copy: the cached state is mutated in place by later writes.
func (a *Agent) readRecord(sp *spaceState, id crdt.RecordID) (*crdt.Record, error) {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	r, err := a.loadRecord(sp, id)
	if r == nil || err != nil {
		return r, err
	}
	return r.Clone(), nil
}

// existingRecord resolves a reference to a record that exists (not_found otherwise).
func (a *Agent) existingRecord(ref api.RecordRef) (*spaceState, crdt.RecordID, *crdt.Record, error) {
	sp, rid, err := a.recordRef(ref)
	if err != nil {
		return nil, "", nil, err
	}
	r, err := a.readRecord(sp, rid)
	if err != nil {
		return nil, "", nil, err
	}
	if r == nil || r.Empty() {
		return nil, "", nil, noRecord(sp, rid)
	}
	return sp, rid, r, nil
}

// GetRecord is `record get`.
func (a *Agent) GetRecord(ref api.RecordRef) (api.Record, error) {
	sp, _, r, err := a.existingRecord(ref)
	if err != nil {
		return api.Record{}, err
	}
	return a.recordView(sp, r), nil
}

// ListRecords is `record list`.
func (a *Agent) ListRecords(ref api.SpaceRef) ([]api.RecordSummary, error) {
	sp, err := a.lookupSpace(ref.Space)
	if err != nil {
		return nil, err
	}
	out := []api.RecordSummary{}
	err = a.eachRecord(sp, func(r *crdt.Record) {
		del, _ := r.Deleted()
		out = append(out, api.RecordSummary{ID: string(r.ID()), Deleted: del, Fields: len(r.Registers()), Conflicts: len(r.Conflicts())})
	})
	return out, err
}

// eachRecord calls fn for every stored record of the space, in ID order.
// A corrupt record is rebuilt from the envelopes.
func (a *Agent) eachRecord(sp *spaceState, fn func(*crdt.Record)) error {
	prefix := recSpacePrefix(sp.id)
	var corrupt []crdt.RecordID
	err := a.db.scan(prefix, func(k, v []byte) error {
		r, err := crdt.UnmarshalRecord(v)
		if err != nil {
			a.countCorrupt(k)
			corrupt = append(corrupt, crdt.RecordID(k[len(prefix):]))
			return nil
		}
		if !r.Empty() {
			fn(r)
		}
		return nil
	}, func(k []byte) { corrupt = append(corrupt, crdt.RecordID(k[len(prefix):])) })
	if err != nil {
		return err
	}
	for _, id := range corrupt {
		r, err := a.readRecord(sp, id)
		if err != nil {
			return err
		}
		if r != nil && !r.Empty() {
			fn(r)
		}
	}
	return nil
}

// ConflictsList is `conflicts list [SPACE]`, sorted by space, record, field.
func (a *Agent) ConflictsList(req api.ConflictsListRequest) ([]api.Conflict, error) {
	var spaces []*spaceState
	if req.Space != "" {
		sp, err := a.lookupSpace(req.Space)
		if err != nil {
			return nil, err
		}
		spaces = []*spaceState{sp}
	} else {
		a.stateMu.Lock()
		spaces = a.sortedSpaces()
		a.stateMu.Unlock()
	}
	out := []api.Conflict{}
	for _, sp := range spaces {
		err := a.eachRecord(sp, func(r *crdt.Record) {
			for _, f := range r.Conflicts() {
				out = append(out, api.Conflict{Space: sp.id.String(), Record: string(r.ID()), Field: f.Name, Siblings: a.siblings(sp, f.Siblings, nil)})
			}
		})
		if err != nil {
			return nil, err
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Space != out[j].Space {
			return out[i].Space < out[j].Space
		}
		if out[i].Record != out[j].Record {
			return out[i].Record < out[j].Record
		}
		return out[i].Field < out[j].Field
	})
	return out, nil
}

// ConflictsShow is `conflicts show SPACE RECORD`.
func (a *Agent) ConflictsShow(ref api.RecordRef) (api.ConflictsShow, error) {
	sp, rid, r, err := a.existingRecord(ref)
	if err != nil {
		return api.ConflictsShow{}, err
	}
	out := api.ConflictsShow{Space: sp.id.String(), Record: string(rid), Fields: []api.ConflictField{}, Resolved: []api.ResolvedField{}}
	a.stateMu.Lock() // the space's keys, to read resolutions
	defer a.stateMu.Unlock()
	for _, f := range r.Conflicts() {
		sibs := a.siblings(sp, f.Siblings, sp)
		if !f.Delete {
			sibs = a.withResolutions(sp, f.Siblings, sibs)
		}
		out.Fields = append(out.Fields, api.ConflictField{Field: f.Name, Siblings: sibs})
	}
	for _, f := range r.Registers() {
		if f.Conflict {
			continue
		}
		sibs := a.withResolutions(sp, f.Siblings, a.siblings(sp, f.Siblings, sp))
		var resolved []api.Sibling
		for _, s := range sibs {
			if s.Resolution != nil {
				resolved = append(resolved, s)
			}
		}
		if len(resolved) > 0 {
			out.Resolved = append(out.Resolved, api.ResolvedField{Field: f.Name, Siblings: resolved})
		}
	}
	return out, nil
}

// recordView turns a record into the API shape of docs/design.md §8.
func (a *Agent) recordView(sp *spaceState, r *crdt.Record) api.Record {
	out := api.Record{Space: sp.id.String(), Fields: map[string]api.Field{}, Sets: map[string]api.SetField{}, Notes: []api.Note{}}
	if r == nil {
		return out
	}
	out.ID = string(r.ID())
	out.Deleted, out.DeleteConflict = r.Deleted()
	for _, f := range r.Registers() {
		sibs := a.siblings(sp, f.Siblings, nil)
		fv := api.Field{Conflict: f.Conflict, Siblings: sibs}
		if len(sibs) > 0 {
			fv.Value = sibs[0].Value
		}
		if len(f.Siblings) > 0 {
			fv.Attachment = a.attachmentInfo(sp.id, f.Siblings[0].Value) // nil unless a manifest (attach.go)
		}
		out.Fields[f.Name] = fv
	}
	for _, s := range r.Sets() {
		el := make([]string, 0, len(s.Elements))
		for _, e := range s.Elements {
			el = append(el, string(e))
		}
		out.Sets[s.Name] = api.SetField{Elements: el}
	}
	for _, n := range r.Notes() {
		author := crypto.DeviceID(n.Author)
		out.Notes = append(out.Notes, api.Note{ID: n.ID.String(), Author: author.String(), Officer: a.officer(sp, author), HLC: formatHLC(n.HLC), Text: n.Text, Removed: n.Removed})
	}
	return out
}

// siblings shows a register's siblings. keys opens the envelopes of
// siblings without a value, to tell a value withheld (its values segment
// cut: docs/design.md §7, "Bounded storage") from an empty one; nil takes a
// snapshot of the space's keys (stateMu not held).
func (a *Agent) siblings(sp *spaceState, in []crdt.Sibling, keys crypto.Keyring) []api.Sibling {
	out := make([]api.Sibling, 0, len(in))
	for _, s := range in {
		if len(s.Value) == 0 && keys == nil {
			a.withRead(func() error {
				if cur := a.spaces[sp.id]; cur != nil {
					keys = cur.keyring()
				}
				return nil
			})
		}
		author := crypto.DeviceID(s.Dot.Replica)
		// No skew flag here: it is this device's observation, and record and
		// conflict JSON must read the same on every device (docs/design.md §8).
		sib := api.Sibling{Author: author.String(), Officer: a.officer(sp, author), Bureau: a.bureauOf(author), HLC: formatHLC(s.HLC), Dot: s.Dot.String()}
		if utf8.Valid(s.Value) {
			sib.Value = string(s.Value)
		} else {
			sib.ValueBase64 = base64.StdEncoding.EncodeToString(s.Value)
		}
		if len(s.Value) == 0 && keys != nil {
			sib.Withheld = a.valueWithheld(sp.id, keys, s.Dot)
		}
		out = append(out, sib)
	}
	return out
}

// officer is the name an author's profile gives in this space ("" if none).
func (a *Agent) officer(sp *spaceState, author crypto.DeviceID) string {
	if author == a.dev {
		return a.ks.Officer
	}
	a.statMu.Lock()
	defer a.statMu.Unlock()
	return a.officers[gapKey{sp.id, author}]
}

func (a *Agent) bureauOf(author crypto.DeviceID) string {
	if c := a.trustNow().certs[author]; c != nil {
		return c.Bureau.Name
	}
	return ""
}

// formatHLC renders a timestamp as RFC 3339 UTC with milliseconds, then
// "+logical" when the logical counter is not zero.
func formatHLC(t crdt.Timestamp) string {
	s := time.UnixMilli(t.Wall).UTC().Format("2006-01-02T15:04:05.000Z")
	if t.Logical != 0 {
		s += fmt.Sprintf("+%d", t.Logical)
	}
	return s
}

// Digest is `space digest`: a hash of the materialized state (members) and
// of the set of envelope IDs held (any holder).
func (a *Agent) Digest(ref api.SpaceRef) (api.Digest, error) {
	sp, err := a.lookupSpace(ref.Space)
	if err != nil {
		return api.Digest{}, err
	}
	out := api.Digest{Space: sp.id.String()}
	env := sha256.New()
	err = a.db.scan(envSpacePrefix(sp.id), func(k, v []byte) error {
		h := crypto.Hash(v)
		env.Write(h[:])
		out.Count++
		out.Bytes += int64(len(v))
		return nil
	}, func(k []byte) { env.Write([]byte("corrupt")) })
	if err != nil {
		return api.Digest{}, err
	}
	out.Envelopes = hex.EncodeToString(env.Sum(nil))
	a.stateMu.Lock()
	member := sp.current != nil || len(sp.keys) > 0
	a.stateMu.Unlock()
	if member {
		st := sha256.New()
		err = a.eachRecord(sp, func(r *crdt.Record) {
			b, _ := r.MarshalBinary()
			fmt.Fprintf(st, "%d:%s%d:", len(r.ID()), r.ID(), len(b))
			st.Write(b)
		})
		if err != nil {
			return api.Digest{}, err
		}
		out.Digest = hex.EncodeToString(st.Sum(nil))
	}
	return out, nil
}
