package checker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Outcomes of an operation.
const (
	OK      = "ok"      // the agent acknowledged the write
	Failed  = "failed"  // the write certainly did not happen (e.g. no agent listening)
	Unknown = "unknown" // timed out, or the agent died or paused mid-call
)

// Op is one client operation, one JSON line of the op log.
type Op struct {
	Client  string    `json:"client"`
	Node    string    `json:"node"` // the agent it was sent to
	Op      int       `json:"op"`   // unique over the run
	Kind    string    `json:"kind"` // put, set_add, set_remove, note_add, delete, resolve (as history names them)
	Record  string    `json:"record"`
	Field   string    `json:"field,omitempty"`  // register or set name (put, set_*, resolve)
	Value   string    `json:"value,omitempty"`  // put, set_add, note_add, resolve --value: unique over the run; set_remove: the element; resolve --pick: empty
	Pick    int       `json:"pick,omitempty"`   // resolve --pick N
	Reason  string    `json:"reason,omitempty"` // resolve --reason: unique over the run, how history names the resolve
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Outcome string    `json:"outcome"`
	Error   string    `json:"error,omitempty"`
	Dot     string    `json:"dot,omitempty"` // the write's dot, from the acknowledgement's `record get` shape (put, note_add, resolve --value)
	// Trust events (release, withdraw, revoke, bundle: see trust.go).
	Bureau string          `json:"bureau,omitempty"` // release, withdraw: the bureau
	Target string          `json:"target,omitempty"` // revoke: the revoked node; bundle: the importing node (Node exports)
	Revoke json.RawMessage `json:"revoke,omitempty"` // revoke: what `revoke --json` printed (cut-offs per space)
	Import json.RawMessage `json:"import,omitempty"` // bundle: what `bundle import --json` printed
}

// ReadOps parses an op log of JSON lines.
func ReadOps(r io.Reader) ([]Op, error) {
	var ops []Op
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var op Op
		if err := json.Unmarshal(line, &op); err != nil {
			return nil, fmt.Errorf("op log line %d: %v", n, err)
		}
		ops = append(ops, op)
	}
	return ops, sc.Err()
}

// Node is what one agent printed after the run. Relays only have Digest.
type Node struct {
	Name      string
	Relay     bool
	Digest    []byte            // `space digest --json SPACE`
	Conflicts []byte            // `conflicts list --json SPACE`
	Records   map[string][]byte // record ID -> `record get --json`; nil value: not found
	Histories map[string][]byte // record ID -> `history --json`; nil value: not found
	Status    []byte            // `status --json`; optional
	Spaces    []byte            // `space list --json` (the release list); optional
	// Dead: the agent was stopped for good (a revoked, lost laptop): only
	// its Status from before is given, to name its device.
	Dead bool
}

// Violation is one property that did not hold.
type Violation struct {
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
}

func (v Violation) String() string { return v.Kind + ": " + v.Detail }

// Result is the checker's verdict and what it looked at.
type Result struct {
	OpsOK           int               `json:"ops_ok"`
	OpsFailed       int               `json:"ops_failed"`
	OpsUnknown      int               `json:"ops_unknown"`
	Records         int               `json:"records"`
	Fields          int               `json:"fields"`                // (record, field) pairs written
	Writes          int               `json:"writes"`                // puts found in history
	Siblings        int               `json:"siblings"`              // live values, all fields
	Conflicted      int               `json:"conflicted"`            // fields with more than one sibling
	UnknownSeen     int               `json:"unknown_seen"`          // unknown ops found applied
	SetElements     int               `json:"set_elements"`          // elements shown, all sets
	NotesShown      int               `json:"notes_shown"`           // notes shown (tombstones included)
	Deleted         int               `json:"deleted"`               // records shown deleted
	DeleteConflicts int               `json:"delete_conflicts"`      // of them, with an edit surviving
	OpsByKind       map[string]string `json:"ops_by_kind,omitempty"` // kind -> "ok/failed/unknown"
	Envelopes       int               `json:"envelopes"`
	Rejected        map[string]int    `json:"rejected,omitempty"` // node: reason -> count, from status (reported, not judged)
	Notes           []string          `json:"notes,omitempty"`    // observations that are not violations
	Trust           *TrustResult      `json:"trust,omitempty"`    // releases, withdrawals, the revocation, bundles
	Violations      []Violation       `json:"violations"`
}

// Valid reports whether no violation was found.
func (r Result) Valid() bool { return len(r.Violations) == 0 }

// maxPerKind bounds the violations reported of one kind: the first few say
// what went wrong; the count of the rest is reported.
const maxPerKind = 8

type digest struct {
	Digest    string `json:"digest"`
	Envelopes string `json:"envelopes"`
	Count     int    `json:"count"`
}

type sibling struct {
	Value       string `json:"value"`
	ValueBase64 string `json:"value_base64"`
	Author      string `json:"author"`
	HLC         string `json:"hlc"`
	Dot         string `json:"dot"`
}

type field struct {
	Value    string    `json:"value"`
	Conflict bool      `json:"conflict"`
	Siblings []sibling `json:"siblings"`
}

type setField struct {
	Elements []string `json:"elements"`
}

type note struct {
	ID      string `json:"id"`
	Author  string `json:"author"`
	Text    string `json:"text"`
	Removed bool   `json:"removed"`
}

type record struct {
	ID             string              `json:"id"`
	Deleted        bool                `json:"deleted"`
	DeleteConflict bool                `json:"delete_conflict"`
	Fields         map[string]field    `json:"fields"`
	Sets           map[string]setField `json:"sets"`
	Notes          []note              `json:"notes"`
}

type histOp struct {
	Kind     string   `json:"kind"`
	Record   string   `json:"record"`
	Field    string   `json:"field"`
	Value    string   `json:"value"`
	Resolves []string `json:"resolves"`
	Reason   string   `json:"reason"`
	Dot      string   `json:"dot"` // the op's dot, among all its change's ops
}

type histEntry struct {
	Author    string   `json:"author"`
	Seq       uint64   `json:"seq"`
	HLC       string   `json:"hlc"`
	Signature string   `json:"signature"`
	Error     string   `json:"error"`
	Ops       []histOp `json:"ops"`
}

type conflictRow struct {
	Record string `json:"record"`
	Field  string `json:"field"`
}

// write is one operation found in a history (any kind; the name is the
// register writes' it had first).
type write struct {
	kind, dot, author, record, field, value, reason string
	resolves                                        []string
}

type checker struct {
	res    Result
	counts map[string]int
	ops    []Op
	byVal  map[string]*Op    // unique values: put, set_add, note_add, resolve --value
	byRsn  map[string]*Op    // resolve reasons
	devOf  map[string]string // node name -> device ID (from status)
	paired map[string]*Op    // dot -> client op, for set ops and deletes (pairCounted)
	trust  *trust
}

func (c *checker) fail(kind, format string, args ...any) {
	c.counts[kind]++
	if c.counts[kind] <= maxPerKind {
		c.res.Violations = append(c.res.Violations, Violation{Kind: kind, Detail: fmt.Sprintf(format, args...)})
	}
}

// Check judges the run.
func Check(ops []Op, nodes []Node) Result {
	c := &checker{counts: map[string]int{}, ops: ops, byVal: map[string]*Op{}, byRsn: map[string]*Op{}, devOf: map[string]string{}}
	for i := range nodes {
		if id := deviceID(&nodes[i]); id != "" {
			c.devOf[nodes[i].Name] = id
		}
	}
	c.trust = c.readTrust(ops, nodes)
	if filled, missing := restorePruned(nodes); filled+missing > 0 {
		c.res.Notes = append(c.res.Notes, fmt.Sprintf("history: %d pruned op values taken from devices holding them whole, %d held whole nowhere (docs/design.md §7)", filled, missing))
	}
	for i := range ops {
		op := &ops[i]
		switch op.Outcome {
		case OK:
			c.res.OpsOK++
		case Failed:
			c.res.OpsFailed++
		case Unknown:
			c.res.OpsUnknown++
		default:
			c.fail("op-log", "op %d: outcome %q", op.Op, op.Outcome)
		}
		if !knownKind[op.Kind] && !trustKind[op.Kind] {
			c.fail("op-log", "op %d: kind %q", op.Op, op.Kind)
		}
	}
	// The oracle judges the client ops, with the revocation's and the
	// withdrawal's exemptions (trust.go), over the entitled nodes.
	c.ops = c.trust.clientOps(ops)
	for i := range c.ops {
		op := &c.ops[i]
		if uniqueValue(op) {
			if prev := c.byVal[op.Value]; prev != nil {
				c.fail("op-log", "ops %d and %d wrote the same value %q: values must be unique", prev.Op, op.Op, op.Value)
			}
			c.byVal[op.Value] = op
		}
		if op.Kind == "resolve" {
			if prev := c.byRsn[op.Reason]; prev != nil || op.Reason == "" {
				c.fail("op-log", "op %d: resolve reason %q is empty or not unique: the checker names resolves by it", op.Op, op.Reason)
			}
			c.byRsn[op.Reason] = op
		}
	}
	byKind := map[string][3]int{}
	for _, op := range ops {
		k := byKind[op.Kind]
		switch op.Outcome {
		case OK:
			k[0]++
		case Failed:
			k[1]++
		default:
			k[2]++
		}
		byKind[op.Kind] = k
	}
	for kind, k := range byKind {
		if c.res.OpsByKind == nil {
			c.res.OpsByKind = map[string]string{}
		}
		c.res.OpsByKind[kind] = fmt.Sprintf("%d/%d/%d", k[0], k[1], k[2])
	}
	all := nodes
	nodes = nil
	for i := range all {
		if c.trust.entitled(&all[i]) {
			nodes = append(nodes, all[i])
		}
	}
	c.convergence(nodes)
	for _, n := range nodes {
		c.status(n)
	}
	var officers []Node
	for _, n := range nodes {
		if !n.Relay {
			officers = append(officers, n)
		}
	}
	if len(officers) == 0 {
		c.fail("setup", "no officer outputs to check")
	}
	for i, n := range officers {
		c.node(n, i == 0)
	}
	c.checkTrust(c.trust, ops, all)
	for k, n := range c.counts {
		if n > maxPerKind {
			c.res.Violations = append(c.res.Violations, Violation{Kind: k, Detail: fmt.Sprintf("... and %d more of this kind", n-maxPerKind)})
		}
	}
	sort.SliceStable(c.res.Violations, func(i, j int) bool { return c.res.Violations[i].Kind < c.res.Violations[j].Kind })
	return c.res
}

type status struct {
	Rejected      map[string]int    `json:"rejected"`
	Gaps          []json.RawMessage `json:"gaps"`
	Forks         []json.RawMessage `json:"forks"`
	Missing       []json.RawMessage `json:"missing"`
	CorruptValues int               `json:"corrupt_values"`
}

// status: after a heal, no agent reports a fork (an author that reused a
// seq, e.g. after SIGKILL), a gap, a missing acknowledged envelope or a
// corrupt value. Rejections are counted in the result, not judged: some are
// benign races (an envelope before its author's certificate).
func (c *checker) status(n Node) {
	if len(n.Status) == 0 {
		return
	}
	var st status
	if err := json.Unmarshal(n.Status, &st); err != nil {
		c.fail("output", "%s: status: %v", n.Name, err)
		return
	}
	if len(st.Forks) > 0 {
		c.fail("fork", "%s: status reports forks: %s", n.Name, joinRaw(st.Forks))
	}
	if len(st.Gaps) > 0 {
		c.fail("gap", "%s: status reports gaps after the heal: %s", n.Name, joinRaw(st.Gaps))
	}
	if len(st.Missing) > 0 {
		c.fail("missing", "%s: status reports acknowledged local envelopes missing at open: %s", n.Name, joinRaw(st.Missing))
	}
	if st.CorruptValues > 0 {
		c.fail("corrupt", "%s: status reports %d corrupt values", n.Name, st.CorruptValues)
	}
	for reason, k := range st.Rejected {
		if k > 0 {
			if c.res.Rejected == nil {
				c.res.Rejected = map[string]int{}
			}
			c.res.Rejected[n.Name+": "+reason] += k
		}
	}
}

func joinRaw(rs []json.RawMessage) string {
	var s []string
	for _, r := range rs {
		s = append(s, string(r))
	}
	return strings.Join(s, " ")
}

// deviceID is the node's own device ID, from its status ("" if unknown).
func deviceID(n *Node) string {
	var st struct {
		Device struct {
			ID string `json:"id"`
		} `json:"device"`
	}
	if len(n.Status) == 0 || json.Unmarshal(n.Status, &st) != nil {
		return ""
	}
	return st.Device.ID
}

// sameIgnoringSelfSkew compares two outputs of officers a and b, ignoring
// the `skewed` flag on entries either device authored. The flag is relative
// to the viewer's clock (docs/design.md §3.4: a remote HLC far ahead of ours), so a
// skewed device never flags itself and its own view differs there from its
// peers' — which docs/design.md §8 ("nothing in them depends on which device prints
// them") does not foresee. selfOnly reports a pair that differs only there.
func sameIgnoringSelfSkew(x, y []byte, a, b string) (same, selfOnly bool) {
	if sameJSON(x, y) {
		return true, false
	}
	if a == "" && b == "" {
		return false, false
	}
	var vx, vy any
	if json.Unmarshal(x, &vx) != nil || json.Unmarshal(y, &vy) != nil {
		return false, false
	}
	for _, self := range []string{a, b} {
		if self != "" {
			dropSelfSkew(vx, self)
			dropSelfSkew(vy, self)
		}
	}
	jx, _ := json.Marshal(vx)
	jy, _ := json.Marshal(vy)
	if bytes.Equal(jx, jy) {
		return true, true
	}
	return false, false
}

// dropSelfSkew deletes "skewed" from every object whose "author" is self.
func dropSelfSkew(v any, self string) int {
	n := 0
	switch x := v.(type) {
	case map[string]any:
		if a, _ := x["author"].(string); a == self {
			if _, ok := x["skewed"]; ok {
				delete(x, "skewed")
				n++
			}
		}
		for _, e := range x {
			n += dropSelfSkew(e, self)
		}
	case []any:
		for _, e := range x {
			n += dropSelfSkew(e, self)
		}
	}
	return n
}

// convergence compares digests and the printed state across agents.
func (c *checker) convergence(nodes []Node) {
	var ref *digest
	var refName, refOfficer string
	var refDigest string
	for _, n := range nodes {
		var d digest
		if err := json.Unmarshal(n.Digest, &d); err != nil {
			c.fail("output", "%s: space digest: %v", n.Name, err)
			continue
		}
		if ref == nil {
			ref, refName = &d, n.Name
			c.res.Envelopes = d.Count
		} else if d.Envelopes != ref.Envelopes {
			c.fail("diverged", "%s holds a different envelope set from %s (%d envelopes vs %d)", n.Name, refName, d.Count, ref.Count)
		}
		if n.Relay {
			continue
		}
		if refOfficer == "" {
			refOfficer, refDigest = n.Name, d.Digest
		} else if d.Digest != refDigest {
			c.fail("diverged", "%s's state digest differs from %s's", n.Name, refOfficer)
		}
	}
	// The printed state: the same on every officer. Each officer is
	// compared with the previous one, so that the skew flags of an author
	// are compared between two devices that are not its own.
	var prev *Node
	selfOnly := map[string]bool{}
	for i := range nodes {
		n := &nodes[i]
		if n.Relay {
			continue
		}
		if prev == nil {
			prev = n
			continue
		}
		ia, ib := deviceID(prev), deviceID(n)
		same := func(x, y []byte) bool {
			ok, self := sameIgnoringSelfSkew(x, y, ia, ib)
			if self {
				selfOnly[prev.Name+"/"+n.Name] = true
			}
			return ok
		}
		if !same(prev.Conflicts, n.Conflicts) {
			c.fail("diverged", "`conflicts list` differs between %s and %s", prev.Name, n.Name)
		}
		for _, id := range recordIDs(prev, n) {
			if !same(prev.Records[id], n.Records[id]) {
				c.fail("diverged", "`record get %s` differs between %s and %s: %s", id, prev.Name, n.Name, firstDiff(prev.Records[id], n.Records[id]))
			}
			if !same(prev.Histories[id], n.Histories[id]) {
				c.fail("diverged", "`history %s` differs between %s and %s", id, prev.Name, n.Name)
			}
		}
		prev = n
	}
	if len(selfOnly) > 0 {
		c.res.Notes = append(c.res.Notes, "outputs differ only in `skewed` flags a device does not show on its own entries (viewer-relative, docs/design.md §3.4; docs/design.md §8 says conflict output does not depend on the printing device), between "+strings.Join(sortedKeys(selfOnly), ", ")+": ignored when comparing")
	}
}

func recordIDs(ns ...*Node) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range ns {
		for id := range n.Records {
			if !seen[id] {
				seen[id] = true
				out = append(out, id)
			}
		}
		for id := range n.Histories {
			if !seen[id] {
				seen[id] = true
				out = append(out, id)
			}
		}
	}
	sort.Strings(out)
	return out
}

// clocks: an author's HLC grows with its seq (the HLC survives restarts).
func (c *checker) clocks(n Node, clocks map[string]map[uint64]string) {
	for _, author := range sortedKeys(clocks) {
		bySeq := clocks[author]
		seqs := make([]uint64, 0, len(bySeq))
		for s := range bySeq {
			seqs = append(seqs, s)
		}
		sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
		var prev hlc
		for i, s := range seqs {
			h, err := parseHLC(bySeq[s])
			if err != nil {
				c.fail("output", "%s: %s:%d: %v", n.Name, author, s, err)
				continue
			}
			if i > 0 && !prev.less(h) {
				c.fail("hlc", "%s: author %s: seq %d has HLC %s, not after seq %d's %s", n.Name, author, s, bySeq[s], seqs[i-1], bySeq[seqs[i-1]])
			}
			prev = h
		}
	}
}

type hlc struct {
	wall    time.Time
	logical uint64
}

func (a hlc) less(b hlc) bool {
	return a.wall.Before(b.wall) || (a.wall.Equal(b.wall) && a.logical < b.logical)
}

// parseHLC reads "2026-01-02T15:04:05.000Z" with an optional "+LOGICAL".
func parseHLC(s string) (hlc, error) {
	w, l, hasL := strings.Cut(s, "+")
	t, err := time.Parse(time.RFC3339Nano, w)
	if err != nil {
		return hlc{}, fmt.Errorf("HLC %q: %v", s, err)
	}
	h := hlc{wall: t}
	if hasL {
		if _, err := fmt.Sscan(l, &h.logical); err != nil {
			return hlc{}, fmt.Errorf("HLC %q: logical part: %v", s, err)
		}
	}
	return h, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// sameJSON compares two JSON documents by value (key order, spacing aside).
func sameJSON(a, b []byte) bool {
	if len(bytes.TrimSpace(a)) == 0 || len(bytes.TrimSpace(b)) == 0 {
		return len(bytes.TrimSpace(a)) == len(bytes.TrimSpace(b))
	}
	ca, ea := canonical(a)
	cb, eb := canonical(b)
	return ea == nil && eb == nil && bytes.Equal(ca, cb)
}

func canonical(b []byte) ([]byte, error) {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return json.Marshal(v) // maps marshal with sorted keys
}

// firstDiff names the first register that differs between two `record get`
// outputs, or says the documents differ elsewhere.
func firstDiff(a, b []byte) string {
	var ra, rb record
	if json.Unmarshal(a, &ra) != nil || json.Unmarshal(b, &rb) != nil {
		return "one is missing or unreadable"
	}
	fs := map[string]bool{}
	for f := range ra.Fields {
		fs[f] = true
	}
	for f := range rb.Fields {
		fs[f] = true
	}
	for _, f := range sortedKeys(fs) {
		ja, _ := json.Marshal(ra.Fields[f])
		jb, _ := json.Marshal(rb.Fields[f])
		if !bytes.Equal(ja, jb) {
			return fmt.Sprintf("field %s: %s vs %s", f, siblingValues(ra.Fields[f].Siblings), siblingValues(rb.Fields[f].Siblings))
		}
	}
	return "outside the registers (sets, notes, officer names)"
}
