package checker

import (
	"encoding/json"
	"fmt"
	"sort"
)

// Trust events in the op log (issue 7): they change who may read the space
// and whose writes count, not the records, so they are judged apart from
// the client ops.
//
//   - release / withdraw: `space release|withdraw SPACE BUREAU` by an officer
//     of the owning bureau (Op.Bureau names the bureau);
//   - revoke: `revoke --bureau-key FILE DEVICE` through another agent
//     (Op.Target names the revoked node, Op.Revoke holds the JSON the CLI
//     printed: the cut-off per space);
//   - bundle: `bundle want` on Op.Target, `bundle export --want` on Op.Node,
//     `bundle import` on Op.Target (Op.Import holds what the import printed).
var trustKind = map[string]bool{"release": true, "withdraw": true, "revoke": true, "bundle": true}

// revokeResult is the part of `revoke --json` the checker reads.
type revokeResult struct {
	Device  string            `json:"device"`
	Cutoffs map[string]uint64 `json:"cutoffs"`
	Default uint64            `json:"default_cutoff"`
}

// spaceRow is one row of `space list --json`.
type spaceRow struct {
	ID      string   `json:"id"`
	Owner   string   `json:"owner"`
	Release []string `json:"release"`
}

// trust is what the trust events and the final outputs say about
// entitlement: the release list at the end, the revoked device and its
// cut-off.
type trust struct {
	space    string          // from the digests
	release  map[string]bool // bureau -> on the final release list (nil: unknown, everyone entitled)
	owner    string
	bureauOf map[string]string // node -> bureau (from status)
	revoked  string            // revoked node ("" none)
	revDev   string            // its device ID
	revKnown bool              // the revoke was acknowledged: the cut-off is known
	cutoff   uint64
	// exemptions, reported in Result.Trust
	past      []Op // the revoked device's acknowledged writes past its cut-off: visible nowhere
	stranded  int  // acknowledged writes of a withdrawn bureau's devices, treated as unknown
	undecided int  // the revoked device's writes whose seq is unknown, treated as unknown
}

// TrustResult is the report's account of the trust events.
type TrustResult struct {
	Release          []string `json:"release"`                     // the final release list
	Revoked          string   `json:"revoked,omitempty"`           // node
	Cutoff           uint64   `json:"cutoff,omitempty"`            // its cut-off in the space
	PastCutoff       int      `json:"past_cutoff"`                 // its acknowledged writes past the cut-off (must be visible nowhere)
	Undecided        int      `json:"undecided"`                   // its writes with no seq known either side of the cut-off (may or may not survive)
	Stranded         int      `json:"stranded"`                    // acknowledged writes of a bureau withdrawn at the end (may or may not reach the entitled)
	Protected        int      `json:"protected"`                   // values written after the final withdrawal, checked invisible on the withdrawn bureau's devices
	WithdrawnChecked []string `json:"withdrawn_checked,omitempty"` // the withdrawn bureau's devices checked
	Bundles          int      `json:"bundles"`                     // bundles carried and imported
	BundleAdded      int      `json:"bundle_added"`                // envelopes they added
}

func nodeBureau(n *Node) string {
	var st struct {
		Device struct {
			Bureau string `json:"bureau"`
		} `json:"device"`
	}
	if len(n.Status) == 0 || json.Unmarshal(n.Status, &st) != nil {
		return ""
	}
	return st.Device.Bureau
}

// readTrust reads the trust events and the final release list.
func (c *checker) readTrust(ops []Op, nodes []Node) *trust {
	t := &trust{bureauOf: map[string]string{}}
	for i := range nodes {
		n := &nodes[i]
		t.bureauOf[n.Name] = nodeBureau(n)
		var d digest
		if !n.Dead && json.Unmarshal(n.Digest, &d) == nil && t.space == "" {
			var sp struct {
				Space string `json:"space"`
			}
			json.Unmarshal(n.Digest, &sp)
			t.space = sp.Space
		}
	}
	// The final release list, from the owning bureau's officers (always
	// entitled); they must agree.
	var from string
	for i := range nodes {
		n := &nodes[i]
		if n.Dead || n.Relay || len(n.Spaces) == 0 {
			continue
		}
		var rows []spaceRow
		if err := json.Unmarshal(n.Spaces, &rows); err != nil {
			c.fail("output", "%s: space list: %v", n.Name, err)
			continue
		}
		for _, r := range rows {
			if r.ID != t.space || r.Owner != t.bureauOf[n.Name] {
				continue
			}
			list := map[string]bool{}
			for _, b := range r.Release {
				list[b] = true
			}
			if t.release == nil {
				t.release, t.owner, from = list, r.Owner, n.Name
			} else if fmt.Sprint(sortedKeys(list)) != fmt.Sprint(sortedKeys(t.release)) {
				c.fail("diverged", "%s's release list %v differs from %s's %v", n.Name, r.Release, from, sortedKeys(t.release))
			}
		}
	}
	for _, op := range ops {
		if op.Kind != "revoke" || op.Outcome == Failed {
			continue
		}
		t.revoked = op.Target
		if op.Outcome != OK {
			continue
		}
		var rr revokeResult
		if err := json.Unmarshal(op.Revoke, &rr); err != nil {
			c.fail("output", "op %d: revoke result: %v", op.Op, err)
			continue
		}
		t.revKnown, t.revDev = true, rr.Device
		t.cutoff = rr.Default
		if co, ok := rr.Cutoffs[t.space]; ok {
			t.cutoff = co
		}
	}
	if t.revDev == "" {
		t.revDev = c.devOf[t.revoked]
	}
	return t
}

// entitled reports whether a node's output is judged for convergence and
// durability: relays, and officers not revoked whose bureau is on the
// final release list.
func (t *trust) entitled(n *Node) bool {
	if n.Dead || n.Name == t.revoked && t.revoked != "" {
		return false
	}
	if n.Relay || t.release == nil {
		return true
	}
	b := t.bureauOf[n.Name]
	return b == "" || t.release[b]
}

// clientOps returns the client ops (trust events left out) as the oracle
// must judge them:
//   - the revoked device's acknowledged writes past its cut-off are left
//     out (so that one visible is a phantom) and kept for the
//     visible-nowhere check; those at or below it stay as they are; those
//     whose seq is known neither way become unknown. A write's seq is its
//     dot's; a write without a dot (set ops, deletes, resolve --pick) is at
//     or below the cut-off when it was acknowledged before another write of
//     that agent with a known seq at or below it started, and past it when
//     it started after one past it was acknowledged (an agent commits in
//     order and acknowledges after committing);
//   - when a bureau is withdrawn at the end, its devices' writes become
//     unknown: what they had not delivered when the withdrawal reached
//     their peers is never taken from them again (the peers no longer
//     sync the space with them), and may stay stranded.
func (t *trust) clientOps(ops []Op) []Op {
	var out []Op
	var atOrBelow, past []Op // the revoked device's writes with a known seq
	if t.revoked != "" && t.revKnown {
		for _, op := range ops {
			if op.Node == t.revoked && op.Outcome == OK && op.Dot != "" {
				if dotSeq(op.Dot) <= t.cutoff {
					atOrBelow = append(atOrBelow, op)
				} else {
					past = append(past, op)
				}
			}
		}
	}
	for _, op := range ops {
		if trustKind[op.Kind] {
			continue
		}
		if t.revoked != "" && op.Node == t.revoked && op.Outcome != Failed {
			switch {
			case !t.revKnown:
				op.Outcome, op.Error = Unknown, "revoked device, cut-off unknown"
				t.undecided++
			case op.Dot != "":
				if dotSeq(op.Dot) > t.cutoff {
					if op.Outcome == OK {
						t.past = append(t.past, op)
					}
					continue
				}
			case before(op, atOrBelow):
			case after(op, past):
				if op.Outcome == OK {
					t.past = append(t.past, op)
				}
				continue
			default:
				if op.Outcome == OK {
					op.Outcome, op.Error = Unknown, "revoked device: seq unknown either side of the cut-off"
					t.undecided++
				}
			}
		}
		if t.release != nil && op.Outcome == OK && !t.release[t.bureauOf[op.Node]] && t.bureauOf[op.Node] != "" {
			op.Outcome, op.Error = Unknown, "written by a device of a bureau withdrawn at the end"
			t.stranded++
		}
		out = append(out, op)
	}
	return out
}

// before: op was acknowledged before one of ws started.
func before(op Op, ws []Op) bool {
	for _, w := range ws {
		if op.End.Before(w.Start) {
			return true
		}
	}
	return false
}

// after: op started after one of ws was acknowledged.
func after(op Op, ws []Op) bool {
	for _, w := range ws {
		if op.Start.After(w.End) {
			return true
		}
	}
	return false
}

// mayVanish reports whether a dot a history names may be missing from it:
// the revoked device's writes past its cut-off are removed everywhere,
// also when another op had seen and replaced them before the revocation
// arrived.
func (t *trust) mayVanish(dot string) bool {
	if t == nil || t.revDev == "" {
		return false
	}
	author := dot
	for i := 0; i < len(dot); i++ {
		if dot[i] == ':' {
			author = dot[:i]
			break
		}
	}
	// An unknown revocation's cut-off is unknown: any of its dots may go.
	return author == t.revDev && (!t.revKnown || dotSeq(dot) > t.cutoff)
}

// throughVanished reports whether a set of dots an op saw holds one that
// is gone from the history because the revocation removed it.
func (c *checker) throughVanished(past map[string]bool, byDot map[string]write) bool {
	for d := range past {
		if _, ok := byDot[d]; !ok && c.trust.mayVanish(d) {
			return true
		}
	}
	return false
}

// checkTrust runs the trust rules on every collected node.
func (c *checker) checkTrust(t *trust, ops []Op, nodes []Node) {
	tr := &TrustResult{Release: sortedKeys(t.release), Revoked: t.revoked, Cutoff: t.cutoff,
		PastCutoff: len(t.past), Undecided: t.undecided, Stranded: t.stranded}
	c.res.Trust = tr
	// Past the cut-off: visible nowhere (values unique over the run).
	for _, op := range t.past {
		if !uniqueValue(&op) {
			continue
		}
		for i := range nodes {
			n := &nodes[i]
			if n.Dead || n.Relay {
				continue
			}
			if where := shows(n, op.Value); where != "" {
				c.fail("revoked-visible", "%s: %s %q by the revoked %s (op %d, dot %s, past the cut-off %d) is visible in %s", n.Name, op.Kind, op.Value, op.Node, op.Op, op.Dot, t.cutoff, where)
			}
		}
	}
	// The final withdrawal: values an owning-bureau officer acknowledged
	// after its own withdraw call returned must not be readable on the
	// withdrawn bureau's devices — unless a release followed (a release
	// wraps every epoch key to the bureau's devices again).
	for b := range t.withdrawnAtEnd() {
		var last *Op
		for i := range ops {
			if ops[i].Kind == "withdraw" && ops[i].Bureau == b && ops[i].Outcome == OK && (last == nil || ops[i].End.After(last.End)) {
				last = &ops[i]
			}
		}
		if last == nil {
			continue
		}
		released := false
		for _, op := range ops {
			if op.Kind == "release" && op.Bureau == b && op.Outcome != Failed && op.End.After(last.Start) {
				released = true
			}
		}
		if released {
			c.res.Notes = append(c.res.Notes, fmt.Sprintf("%s: a release was sent after the last withdrawal (op %d) yet the bureau is withdrawn at the end (a concurrent withdrawal wins): the values after it are not checked invisible", b, last.Op))
			continue
		}
		var protected []Op
		for _, op := range ops {
			if op.Node == last.Node && op.Outcome == OK && uniqueValue(&op) && op.Start.After(last.End) && !trustKind[op.Kind] {
				protected = append(protected, op)
			}
		}
		tr.Protected += len(protected)
		for i := range nodes {
			n := &nodes[i]
			if n.Dead || n.Relay || t.bureauOf[n.Name] != b {
				continue
			}
			tr.WithdrawnChecked = append(tr.WithdrawnChecked, n.Name)
			for _, op := range protected {
				if where := shows(n, op.Value); where != "" {
					c.fail("withdrawn-visible", "%s (bureau %s, withdrawn by op %d on %s at %s) reads %s %q (op %d on %s at %s, after the withdrawal returned there) in %s",
						n.Name, b, last.Op, last.Node, last.End.Format("15:04:05.000"), op.Kind, op.Value, op.Op, op.Node, op.End.Format("15:04:05.000"), where)
				}
			}
		}
	}
	// A withdrawn bureau's devices keep what they had: at least their own
	// acknowledged writes, in their own history.
	for i := range nodes {
		n := &nodes[i]
		if n.Dead || n.Relay || t.entitled(n) {
			continue
		}
		in := historyNames(n)
		for _, op := range t.clientOpsOf(ops, n.Name) {
			name := op.Value
			if op.Kind == "resolve" {
				name = op.Reason
			}
			if !in[name] {
				c.fail("withdrawn-lost", "%s (bureau %s, withdrawn at the end) lost its own acknowledged %s (op %d at %s, dot %s): not in its history", n.Name, t.bureauOf[n.Name], describeOp(&op), op.Op, op.End.Format("15:04:05.000"), op.Dot)
			}
		}
	}
	// Bundles: an import that reports more envelopes added than the bundle
	// held, or a negative count, is a broken report.
	for _, op := range ops {
		if op.Kind != "bundle" || op.Outcome != OK {
			continue
		}
		tr.Bundles++
		var imp struct {
			Envelopes   int `json:"envelopes"`
			Added       int `json:"added"`
			AlreadyHeld int `json:"already_held"`
			Skipped     int `json:"skipped"`
		}
		if err := json.Unmarshal(op.Import, &imp); err != nil {
			c.fail("output", "op %d: bundle import: %v", op.Op, err)
			continue
		}
		tr.BundleAdded += imp.Added
		if imp.Added < 0 || imp.AlreadyHeld < 0 || imp.Skipped < 0 || imp.Added+imp.AlreadyHeld+imp.Skipped != imp.Envelopes {
			c.fail("bundle", "op %d: bundle from %s imported on %s reports %d envelopes = %d added + %d held + %d skipped", op.Op, op.Node, op.Target, imp.Envelopes, imp.Added, imp.AlreadyHeld, imp.Skipped)
		}
	}
	sort.Strings(tr.WithdrawnChecked)
}

// withdrawnAtEnd lists the bureaus some node belongs to that are not on the
// final release list.
func (t *trust) withdrawnAtEnd() map[string]bool {
	out := map[string]bool{}
	if t.release == nil {
		return out
	}
	for _, b := range t.bureauOf {
		if b != "" && !t.release[b] {
			out[b] = true
		}
	}
	return out
}

// shows says where a node's `record get` outputs show a value (a register
// sibling or a note), or "".
func shows(n *Node, value string) string {
	for _, id := range sortedKeys(n.Records) {
		var rec record
		if json.Unmarshal(n.Records[id], &rec) != nil {
			continue
		}
		for _, f := range sortedKeys(rec.Fields) {
			for _, s := range rec.Fields[f].Siblings {
				if s.Value == value {
					return fmt.Sprintf("record get %s: %s", id, f)
				}
			}
		}
		for _, nt := range rec.Notes {
			if nt.Text == value {
				return fmt.Sprintf("record get %s: note %s", id, nt.ID)
			}
		}
	}
	return ""
}

// clientOpsOf lists the acknowledged client ops with a unique name (value,
// or a resolve's reason) sent to one node.
func (t *trust) clientOpsOf(ops []Op, node string) []Op {
	var out []Op
	for _, op := range ops {
		if op.Node == node && op.Outcome == OK && !trustKind[op.Kind] && (uniqueValue(&op) || op.Kind == "resolve") {
			out = append(out, op)
		}
	}
	return out
}

// historyNames lists the values and resolve reasons in a node's histories.
func historyNames(n *Node) map[string]bool {
	out := map[string]bool{}
	for _, b := range n.Histories {
		var hist []histEntry
		if json.Unmarshal(b, &hist) != nil {
			continue
		}
		for _, e := range hist {
			for _, o := range e.Ops {
				if o.Value != "" {
					out[o.Value] = true
				}
				if o.Reason != "" {
					out[o.Reason] = true
				}
			}
		}
	}
	return out
}
