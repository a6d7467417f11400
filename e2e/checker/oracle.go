package checker

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// The op kinds a client may log, as `history` names them.
var knownKind = map[string]bool{"put": true, "set_add": true, "set_remove": true, "note_add": true, "delete": true, "resolve": true}

// uniqueValue reports whether an op's value is unique over the run, so that
// the history names it by its value.
func uniqueValue(op *Op) bool {
	switch op.Kind {
	case "put", "note_add":
		return true
	case "resolve":
		return op.Pick == 0
	}
	return false // set elements come from a small pool, so that adds and removes collide
}

// isCounted reports whether ops of this kind are matched to the history by
// counting (per author, record, set and element) rather than by a unique value.
func isCounted(kind string) bool {
	return kind == "set_add" || kind == "set_remove" || kind == "delete"
}

// isEntry reports whether an op of this kind leaves an entry in the state
// that later ops see and replace (docs/design.md §3 "How"): a register sibling, a
// set element's dot, a note, a delete marker.
func isEntry(kind string) bool {
	switch kind {
	case "put", "resolve", "set_add", "note_add", "delete":
		return true
	}
	return false
}

func isRegister(kind string) bool { return kind == "put" || kind == "resolve" }

// mayResolve says which entry t an op w may name in its resolves (the dots
// it saw and replaces), by docs/crdt.md: a put sees its field's siblings
// and the record's delete markers; a resolve exactly siblings of its field;
// a set add its element's dots and the delete markers; a set remove its
// element's dots; a note the delete markers; a delete everything.
func mayResolve(w, t write) bool {
	switch w.kind {
	case "put":
		return (isRegister(t.kind) && t.field == w.field) || t.kind == "delete"
	case "resolve":
		return isRegister(t.kind) && t.field == w.field
	case "set_add":
		return (t.kind == "set_add" && t.field == w.field && t.value == w.value) || t.kind == "delete"
	case "set_remove":
		return t.kind == "set_add" && t.field == w.field && t.value == w.value
	case "note_add":
		return t.kind == "delete"
	case "delete":
		return isEntry(t.kind)
	}
	return false
}

// countKey names set adds, set removes and deletes, which carry no unique
// value: by author device, record, set and element.
func countKey(author, kind, record, field, value string) string {
	return strings.Join([]string{author, kind, record, field, value}, "\x00")
}

// node checks one officer's state against the op log, by the history oracle.
func (c *checker) node(n Node, count bool) {
	var conflicts []conflictRow
	if len(n.Conflicts) > 0 {
		if err := json.Unmarshal(n.Conflicts, &conflicts); err != nil {
			c.fail("output", "%s: conflicts list: %v", n.Name, err)
		}
	}
	listed := map[[2]string]bool{}
	for _, r := range conflicts {
		listed[[2]string{r.Record, r.Field}] = true
	}
	ids := map[string]bool{}
	for _, op := range c.ops {
		ids[op.Record] = true
	}
	for id := range n.Records {
		ids[id] = true
	}
	sorted := sortedKeys(ids)
	if count {
		c.res.Records = len(sorted)
	}
	found := map[*Op]bool{}                  // client ops found in this node's history
	counted := map[string]int{}              // set removes and deletes in history, by countKey
	clocks := map[string]map[uint64]string{} // author -> seq -> HLC
	type parsed struct {
		id    string
		rec   record
		ws    []write
		byDot map[string]write
	}
	var recs []parsed
	byKey := map[string][]write{} // counted ops in the history, by countKey
	for _, id := range sorted {
		var rec record
		if b := n.Records[id]; len(b) > 0 {
			if err := json.Unmarshal(b, &rec); err != nil {
				c.fail("output", "%s: record get %s: %v", n.Name, id, err)
				continue
			}
		}
		var hist []histEntry
		if b := n.Histories[id]; len(b) > 0 {
			if err := json.Unmarshal(b, &hist); err != nil {
				c.fail("output", "%s: history %s: %v", n.Name, id, err)
				continue
			}
		}
		var ws []write
		byDot := map[string]write{}
		for _, e := range hist {
			if clocks[e.Author] == nil {
				clocks[e.Author] = map[uint64]string{}
			}
			clocks[e.Author][e.Seq] = e.HLC
			if e.Signature != "valid" {
				c.fail("signature", "%s: history %s: %s:%d signature %q %s", n.Name, id, e.Author, e.Seq, e.Signature, e.Error)
			}
			for i, o := range e.Ops {
				if o.Record != id {
					continue
				}
				dot := o.Dot
				if dot == "" { // an agent before history gave dots: its position among the record's ops
					dot = fmt.Sprintf("%s:%d.%d", e.Author, e.Seq, i)
				}
				w := write{kind: o.Kind, dot: dot, author: e.Author, record: id, field: o.Field, value: o.Value, reason: o.Reason, resolves: o.Resolves}
				ws = append(ws, w)
				byDot[w.dot] = w
				if op := c.attribute(n, w, counted); op != nil {
					found[op] = true
					if count && op.Outcome == Unknown {
						c.res.UnknownSeen++
					}
				}
				if isCounted(w.kind) {
					k := countKey(w.author, w.kind, w.record, w.field, w.value)
					byKey[k] = append(byKey[k], w)
				}
			}
		}
		if count {
			c.res.Writes += len(ws)
		}
		recs = append(recs, parsed{id, rec, ws, byDot})
	}
	c.pairCounted(byKey)
	for _, p := range recs {
		c.record(n, p.id, p.rec, p.ws, p.byDot, listed, count)
	}
	c.clocks(n, clocks)
	// Every acknowledged write is in the history; set ops and deletes, which
	// carry no unique value, are counted per author, record and element.
	acked, possible := map[string]int{}, map[string]int{}
	for i := range c.ops {
		op := &c.ops[i]
		if isCounted(op.Kind) {
			k := countKey(c.devOf[op.Node], op.Kind, op.Record, op.Field, op.Value)
			if op.Outcome == OK {
				acked[k]++
			}
			if op.Outcome != Failed {
				possible[k]++
			}
			continue
		}
		if op.Outcome == OK && !found[op] {
			c.fail("lost-write", "%s: op %d (client %s: %s) acknowledged at %s %s is not in the history", n.Name, op.Op, op.Client, describeOp(op), op.Node, op.End.Format("15:04:05.000"))
		}
	}
	keys := map[string]bool{}
	for k := range acked {
		keys[k] = true
	}
	for k := range counted {
		keys[k] = true
	}
	for _, k := range sortedKeys(keys) {
		p := strings.Split(k, "\x00")
		what := fmt.Sprintf("%s by %s of %s", p[1], p[0], p[2])
		if p[1] != "delete" {
			what += fmt.Sprintf(".%s element %q", p[3], p[4])
		}
		switch {
		case counted[k] < acked[k]:
			c.fail("lost-write", "%s: %d acknowledged %s, %d in the history", n.Name, acked[k], what, counted[k])
		case counted[k] > possible[k]:
			c.fail("phantom", "%s: %d %s in the history, but clients sent only %d that may have happened (ok or unknown)", n.Name, counted[k], what, possible[k])
		}
	}
	// conflicts list: exactly the registers with several siblings, and the
	// records deleted with a conflict (field "").
	for k := range listed {
		var rec record
		json.Unmarshal(n.Records[k[0]], &rec)
		if k[1] == "" {
			if !rec.DeleteConflict {
				c.fail("conflicts", "%s: conflicts list names a delete conflict on %s, which record get does not show", n.Name, k[0])
			}
			continue
		}
		if len(rec.Fields[k[1]].Siblings) < 2 {
			c.fail("conflicts", "%s: conflicts list names %s.%s, which record get shows with %d sibling(s)", n.Name, k[0], k[1], len(rec.Fields[k[1]].Siblings))
		}
	}
}

// pairCounted names the client ops of the counted kinds (set adds and
// removes, deletes) where that is unambiguous: all the key's ops were
// acknowledged and the history holds as many; they pair in order (an agent
// gives seqs in the order it commits, and acknowledges after committing).
// The sessions check uses the pairs.
func (c *checker) pairCounted(byKey map[string][]write) {
	c.paired = map[string]*Op{}
	ops := map[string][]*Op{}
	for i := range c.ops {
		op := &c.ops[i]
		if isCounted(op.Kind) && op.Outcome != Failed {
			k := countKey(c.devOf[op.Node], op.Kind, op.Record, op.Field, op.Value)
			ops[k] = append(ops[k], op)
		}
	}
	for k, ws := range byKey {
		os := ops[k]
		if len(os) != len(ws) || slices.ContainsFunc(os, func(o *Op) bool { return o.Outcome != OK }) {
			continue
		}
		sort.Slice(os, func(i, j int) bool { return os[i].End.Before(os[j].End) })
		ws = slices.Clone(ws)
		sort.Slice(ws, func(i, j int) bool { return dotSeq(ws[i].dot) < dotSeq(ws[j].dot) })
		for i := range ws {
			c.paired[ws[i].dot] = os[i]
		}
	}
}

// dotSeq is the seq of a dot AUTHOR:SEQ.OP (0 if it does not parse).
func dotSeq(d string) uint64 {
	_, rest, _ := strings.Cut(d, ":")
	rest, _, _ = strings.Cut(rest, ".")
	var n uint64
	fmt.Sscan(rest, &n)
	return n
}

// attribute names the client op that an op found in the history is, and
// checks that it is one a client sent (and did not see fail). Removes and
// deletes are counted instead (see node).
func (c *checker) attribute(n Node, w write, counted map[string]int) *Op {
	switch w.kind {
	case "set_add", "set_remove", "delete":
		counted[countKey(w.author, w.kind, w.record, w.field, w.value)]++
		return nil
	case "put", "note_add", "resolve":
	default:
		c.fail("phantom", "%s: %s holds a %s (%s) that no client sends", n.Name, w.record, w.kind, w.dot)
		return nil
	}
	op := c.byVal[w.value]
	if w.kind == "resolve" {
		op = c.byRsn[w.reason]
	}
	switch {
	case op == nil:
		c.fail("phantom", "%s: record %s holds a %s of %q (dot %s, reason %q) that no client sent", n.Name, w.record, w.kind, w.value, w.dot, w.reason)
		return nil
	case op.Kind != w.kind || op.Record != w.record || (w.kind != "note_add" && op.Field != w.field):
		c.fail("phantom", "%s: %s %q (%s) is in the history as a %s of %s.%s", n.Name, op.Kind, op.Value, describeOp(op), w.kind, w.record, w.field)
	case op.Kind == "resolve" && op.Pick == 0 && op.Value != w.value:
		c.fail("phantom", "%s: resolve op %d gave %q, the history has %q (%s)", n.Name, op.Op, op.Value, w.value, w.dot)
	case op.Outcome == Failed:
		c.fail("failed-applied", "%s: op %d (client %s at %s: %s) failed (%s) but is in the history as %s", n.Name, op.Op, op.Client, op.Node, describeOp(op), op.Error, w.dot)
	case op.Dot != "" && op.Dot != w.dot:
		c.fail("dot", "%s: op %d was acknowledged as %s but the history names it %s", n.Name, op.Op, op.Dot, w.dot)
	case op.Node != "" && c.devOf[op.Node] != "" && c.devOf[op.Node] != w.author:
		c.fail("phantom", "%s: op %d was sent to %s but the history has it by %s", n.Name, op.Op, op.Node, w.author)
	}
	return op
}

func describeOp(op *Op) string {
	switch op.Kind {
	case "put":
		return fmt.Sprintf("record put %s %s=%q", op.Record, op.Field, op.Value)
	case "set_add", "set_remove":
		return fmt.Sprintf("set %s %s %s %q", strings.TrimPrefix(op.Kind, "set_"), op.Record, op.Field, op.Value)
	case "note_add":
		return fmt.Sprintf("note add %s %q", op.Record, op.Value)
	case "delete":
		return "record delete " + op.Record
	case "resolve":
		if op.Pick > 0 {
			return fmt.Sprintf("resolve --pick %d --reason %s %s %s", op.Pick, op.Reason, op.Record, op.Field)
		}
		return fmt.Sprintf("resolve --value %q --reason %s %s %s", op.Value, op.Reason, op.Record, op.Field)
	}
	return op.Kind
}

// record applies the oracle to one record: an entry (register sibling, set
// element dot, note, delete marker) is live iff no op in the record names
// it in its resolves; `record get` must show exactly the live entries.
func (c *checker) record(n Node, id string, rec record, ws []write, byDot map[string]write, listed map[[2]string]bool, count bool) {
	seenBy := map[string]string{} // dot -> the dot of an op that saw and replaced it
	for _, w := range ws {
		for _, d := range w.resolves {
			seenBy[d] = w.dot
			t, ok := byDot[d]
			switch {
			case !ok && c.trust.mayVanish(d):
				// the revoked device's write past its cut-off, seen before the revocation arrived
			case !ok:
				c.fail("resolves", "%s: %s: %s %q (%s) resolves %s, which is nothing in this record's history", n.Name, id, w.kind, w.value, w.dot, d)
			case !mayResolve(w, t):
				c.fail("resolves", "%s: %s: %s %s.%s %q (%s) resolves %s, a %s of %s %q, which it cannot have seen there", n.Name, id, w.kind, id, w.field, w.value, w.dot, d, t.kind, t.field, t.value)
			}
		}
	}
	live := func(w write) bool { _, gone := seenBy[w.dot]; return isEntry(w.kind) && !gone }
	// Registers.
	fields := map[string]bool{}
	regs := map[string][]write{}
	for _, w := range ws {
		if isRegister(w.kind) {
			fields[w.field] = true
			regs[w.field] = append(regs[w.field], w)
		}
	}
	for f := range rec.Fields {
		fields[f] = true
	}
	content := false
	for _, f := range sortedKeys(fields) {
		c.register(n, id, f, rec.Fields[f], regs[f], byDot, seenBy, listed, count)
		if len(rec.Fields[f].Siblings) > 0 {
			content = true
		}
	}
	// A resolve --pick gives again a value some write to the field gave.
	for _, w := range ws {
		if op := c.byRsn[w.reason]; w.kind == "resolve" && op != nil && op.Pick > 0 {
			ok := false
			for _, x := range regs[w.field] {
				if x.dot != w.dot && x.value == w.value {
					ok = true
				}
			}
			if !ok {
				c.fail("phantom", "%s: %s.%s: resolve --pick (%s) gave %q, which no write to the field gave", n.Name, id, w.field, w.dot, w.value)
			}
		}
	}
	// Sets (add-wins): an element is there iff one of its adds is live.
	want := map[string]map[string]bool{}
	added := map[string]map[string]bool{}
	for _, w := range ws {
		if w.kind != "set_add" {
			continue
		}
		if added[w.field] == nil {
			added[w.field], want[w.field] = map[string]bool{}, map[string]bool{}
		}
		added[w.field][w.value] = true
		if live(w) {
			want[w.field][w.value] = true
		}
	}
	sets := map[string]bool{}
	for s := range want {
		sets[s] = true
	}
	for s := range rec.Sets {
		sets[s] = true
	}
	for _, s := range sortedKeys(sets) {
		have := map[string]bool{}
		for _, e := range rec.Sets[s].Elements {
			have[e] = true
			switch {
			case want[s][e]:
			case added[s][e]:
				c.fail("zombie", "%s: %s: set %s shows %q, though every add of it was seen and replaced (removed or deleted)", n.Name, id, s, e)
			default:
				c.fail("phantom", "%s: %s: set %s shows %q, which no add in the history gave", n.Name, id, s, e)
			}
		}
		for _, e := range sortedKeys(want[s]) {
			if !have[e] {
				c.fail("lost-update", "%s: %s: set %s lacks %q, though an add of it is live (no remove or delete saw it): add wins", n.Name, id, s, e)
			}
		}
		if len(rec.Sets[s].Elements) > 0 {
			content = true
		}
		if count {
			c.res.SetElements += len(rec.Sets[s].Elements)
		}
	}
	// Notes: every note added is shown, as a tombstone iff an op saw it.
	shown := map[string]note{}
	for _, nt := range rec.Notes {
		shown[nt.ID] = nt
		if !nt.Removed {
			content = true
		}
	}
	for _, w := range ws {
		if w.kind != "note_add" {
			continue
		}
		nt, ok := shown[w.dot]
		_, gone := seenBy[w.dot]
		switch {
		case !ok:
			c.fail("lost-update", "%s: %s: note %q (%s) is not shown", n.Name, id, w.value, c.describe(w))
		case nt.Removed && !gone:
			c.fail("lost-update", "%s: %s: note %q (%s) shows removed, but no op saw it", n.Name, id, w.value, c.describe(w))
		case !nt.Removed && gone:
			c.fail("zombie", "%s: %s: note %q (%s) shows, though %s saw and removed it", n.Name, id, w.value, c.describe(w), seenBy[w.dot])
		case !nt.Removed && nt.Text != w.value:
			c.fail("phantom", "%s: %s: note %s shows %q, the history wrote %q", n.Name, id, w.dot, nt.Text, w.value)
		}
		delete(shown, w.dot)
	}
	for _, idn := range sortedKeys(shown) {
		c.fail("phantom", "%s: %s: note %s (%q) is not in the history", n.Name, id, idn, shown[idn].Text)
	}
	if count {
		c.res.NotesShown += len(rec.Notes)
	}
	// Delete: deleted iff a delete marker is live; in conflict iff something
	// the live deletes did not see survives.
	deleted := false
	for _, w := range ws {
		if w.kind == "delete" && live(w) {
			deleted = true
		}
	}
	switch {
	case deleted != rec.Deleted:
		c.fail("delete", "%s: %s shows deleted=%v, but the history says %v (a live delete marker: %v)", n.Name, id, rec.Deleted, deleted, deleted)
	case rec.DeleteConflict != (deleted && content):
		c.fail("delete", "%s: %s shows delete_conflict=%v; deleted=%v with content surviving=%v", n.Name, id, rec.DeleteConflict, deleted, content)
	}
	if rec.DeleteConflict && !listed[[2]string{id, ""}] {
		c.fail("conflicts", "%s: %s is deleted with a conflict, but conflicts list does not name it", n.Name, id)
	}
	if count && rec.Deleted {
		c.res.Deleted++
		if rec.DeleteConflict {
			c.res.DeleteConflicts++
		}
	}
	c.sessions(n, id, ws, byDot)
}

// register applies the oracle to one register: the live siblings are the
// puts and resolves of it that no op resolved.
func (c *checker) register(n Node, id, f string, got field, ws []write, byDot map[string]write, seenBy map[string]string, listed map[[2]string]bool, count bool) {
	want := map[string]write{}
	for _, w := range ws {
		if _, gone := seenBy[w.dot]; !gone {
			want[w.dot] = w
		}
	}
	have := map[string]sibling{}
	for _, s := range got.Siblings {
		have[s.Dot] = s
	}
	if count && len(ws) > 0 {
		c.res.Fields++
		c.res.Siblings += len(got.Siblings)
		if len(got.Siblings) > 1 {
			c.res.Conflicted++
		}
	}
	for _, d := range sortedKeys(want) {
		if _, ok := have[d]; !ok {
			w := want[d]
			c.fail("lost-update", "%s: %s.%s: %s %q (%s) is not visible, and no write saw and replaced it (visible: %s)", n.Name, id, f, w.kind, w.value, c.describe(w), siblingValues(got.Siblings))
		}
	}
	for _, s := range got.Siblings {
		w, inHist := byDot[s.Dot]
		switch {
		case !inHist:
			c.fail("phantom", "%s: %s.%s shows sibling %q with dot %s, which is not in the history", n.Name, id, f, s.Value, s.Dot)
			if c.byVal[s.Value] == nil {
				c.fail("phantom", "%s: %s.%s shows value %q that no client wrote", n.Name, id, f, s.Value)
			}
		case w.value != s.Value || w.field != f || !isRegister(w.kind):
			c.fail("phantom", "%s: %s.%s shows %q for dot %s, which was a %s of %s=%q", n.Name, id, f, s.Value, s.Dot, w.kind, w.field, w.value)
		default:
			if by, gone := seenBy[s.Dot]; gone {
				c.fail("zombie", "%s: %s.%s: %q (%s) is still visible though %s %q (%s) saw and replaced it", n.Name, id, f, s.Value, c.describe(w), byDot[by].kind, byDot[by].value, c.describe(byDot[by]))
			}
		}
	}
	if len(got.Siblings) > 0 && got.Value != got.Siblings[0].Value {
		c.fail("output", "%s: %s.%s: value %q is not the first sibling %q", n.Name, id, f, got.Value, got.Siblings[0].Value)
	}
	if got.Conflict != (len(got.Siblings) > 1) {
		c.fail("output", "%s: %s.%s: conflict=%v with %d siblings", n.Name, id, f, got.Conflict, len(got.Siblings))
	}
	if len(got.Siblings) > 1 && !listed[[2]string{id, f}] {
		c.fail("conflicts", "%s: %s.%s has %d siblings but conflicts list does not name it", n.Name, id, f, len(got.Siblings))
	}
}

// opOf is the client op a history op is, if it names one.
func (c *checker) opOf(w write) *Op {
	switch w.kind {
	case "put", "note_add":
		return c.byVal[w.value]
	case "resolve":
		return c.byRsn[w.reason]
	}
	return c.paired[w.dot]
}

// chain lists the kinds through which an op of kind b can reach, by its
// resolves, an entry its agent held: a removal by any other kind may hide
// the entry from it without its seeing the op that removed it (a put that
// revives a deleted record sees the marker, not what the delete saw).
func chain(b string) map[string]bool {
	switch b {
	case "put", "resolve":
		return map[string]bool{"put": true, "resolve": true}
	case "set_add", "set_remove":
		return map[string]bool{"set_add": true}
	case "delete":
		return map[string]bool{"put": true, "resolve": true, "set_add": true, "note_add": true, "delete": true}
	}
	return map[string]bool{}
}

// sees says whether an op b (by kind, field, value) would have seen an
// entry a that its agent held live when b was made.
func sees(b, a write) bool {
	switch b.kind {
	case "put":
		return (isRegister(a.kind) && a.field == b.field) || a.kind == "delete"
	case "resolve":
		return isRegister(a.kind) && a.field == b.field
	case "set_add":
		return (a.kind == "set_add" && a.field == b.field && a.value == b.value) || a.kind == "delete"
	case "set_remove":
		return a.kind == "set_add" && a.field == b.field && a.value == b.value
	case "note_add":
		return a.kind == "delete"
	case "delete":
		return isEntry(a.kind)
	}
	return false
}

// sessions: an op sees what its agent acknowledged before it started. If
// op a was acknowledged by agent N before op b started on N, and b sees
// entries like a, then b's resolves reach a — directly, or through ops that
// replaced a — unless something b does not see through (chain) removed a.
// This catches an agent that lost an acknowledged write across a kill and
// got it back later from a peer.
func (c *checker) sessions(n Node, id string, ws []write, byDot map[string]write) {
	type acked struct {
		w  write
		op *Op
	}
	var as []acked
	for _, w := range ws {
		if op := c.opOf(w); op != nil && op.Outcome == OK {
			as = append(as, acked{w, op})
		}
	}
	if len(as) < 2 {
		return
	}
	reaches := map[string]map[string]bool{}
	removedBy := map[string]map[string]bool{} // dot -> kinds of ops whose past holds it
	for _, x := range ws {
		r := reach(x.dot, byDot)
		reaches[x.dot] = r
		for d := range r {
			if removedBy[d] == nil {
				removedBy[d] = map[string]bool{}
			}
			removedBy[d][x.kind] = true
		}
	}
	for _, b := range as {
		past := reaches[b.w.dot]
		if c.throughVanished(past, byDot) {
			// b saw a write of the revoked device past its cut-off, since
			// removed everywhere: what that write had seen is unknown.
			continue
		}
		ch := chain(b.w.kind)
		for _, a := range as {
			if a.op == b.op || a.op.Node != b.op.Node || !a.op.End.Before(b.op.Start) || !isEntry(a.w.kind) || !sees(b.w, a.w) || past[a.w.dot] {
				continue
			}
			// A delete marker is replaced by whatever revives the record,
			// in any field: b need not see that.
			hidden := a.w.kind == "delete" && len(removedBy[a.w.dot]) > 0
			for k := range removedBy[a.w.dot] {
				if !ch[k] {
					hidden = true
				}
			}
			if hidden {
				continue
			}
			c.fail("stale-write", "%s: %s: op %d (%s, %s) on %s started %s after op %d (%s, %s) was acknowledged there, but did not see it",
				n.Name, id, b.op.Op, describeOp(b.op), b.w.dot, b.op.Node, b.op.Start.Sub(a.op.End).Round(time.Millisecond), a.op.Op, describeOp(a.op), a.w.dot)
		}
	}
}

// reach is the set of dots an op saw, through resolves, transitively.
func reach(from string, byDot map[string]write) map[string]bool {
	seen := map[string]bool{}
	stack := append([]string(nil), byDot[from].resolves...)
	for len(stack) > 0 && len(seen) <= len(byDot)+1 {
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[d] {
			continue
		}
		seen[d] = true
		stack = append(stack, byDot[d].resolves...)
	}
	return seen
}

func (c *checker) describe(w write) string {
	op := c.opOf(w)
	if op == nil {
		return w.dot + ", no client op"
	}
	return fmt.Sprintf("%s, op %d by %s at %s, %s", w.dot, op.Op, op.Client, op.Node, op.Outcome)
}

func siblingValues(ss []sibling) string {
	var v []string
	for _, s := range ss {
		v = append(v, fmt.Sprintf("%q", s.Value))
	}
	sort.Strings(v)
	return "[" + strings.Join(v, " ") + "]"
}
