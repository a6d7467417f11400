package checker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// TamperEvent is one line of the hostile relay's own log (a test-side file
// the chaos build's relay appends to): an envelope it altered (flip,
// truncate, splice), withheld, or sent again (replay).
type TamperEvent struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Space   string    `json:"space"`
	Author  string    `json:"author"`
	Seq     uint64    `json:"seq"`
	Attempt uint64    `json:"attempt"`
}

// Altered reports whether the event is an alteration (the envelope sent
// differs from the one the author signed).
func (e TamperEvent) Altered() bool {
	return e.Kind == "flip" || e.Kind == "truncate" || e.Kind == "splice"
}

// ReadTamperLog parses the relay's log of JSON lines. A torn last line (the
// relay killed mid-write) is skipped.
func ReadTamperLog(r io.Reader) ([]TamperEvent, error) {
	var out []TamperEvent
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var e TamperEvent
		if err := json.Unmarshal(line, &e); err != nil {
			continue
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// TamperReasons are the rejection reasons an altered envelope gets: its
// signature does not verify, it does not parse, or its header does not
// match the (space, author, seq) it was sent as. No honest envelope gets
// them.
var TamperReasons = []string{"signature", "malformed", "mismatch"}

// Gap is a withheld range as `status` shows it.
type Gap struct {
	Space  string `json:"space"`
	Author string `json:"author"`
	From   uint64 `json:"from"`
	To     uint64 `json:"to"`
}

// Hostile is what the test saw of the hostile relay.
type Hostile struct {
	// Log is the relay's whole log.
	Log []TamperEvent
	// Replay is the phase in which the relay, the only path between
	// officers, sent every envelope followed by an older one of its author:
	// statuses and digests of every agent at its start and end, and how
	// many envelopes the clients wrote in it.
	ReplayStart, ReplayEnd []Node
	ReplayWrites           int
	ReplayFrom, ReplayTo   time.Time
	// Withhold is the phase in which the relay, the only path between
	// officers, altered envelopes and withheld Gap: every agent's status
	// (and the officers' records) at its start and once every officer but
	// the author showed the gap, after the relay stopped altering.
	Gap                         Gap
	WithholdStart, WithholdSeen []Node
	WithholdFrom, WithholdTo    time.Time
	// HonestPath says whether the agents converged once officers reached
	// each other directly again, the relay still withholding (with the
	// time it took).
	HonestPath      bool
	HonestPathError string
}

// HostileResult is what the hostile-relay checks counted.
type HostileResult struct {
	Altered         int            `json:"altered"`          // alterations in the relay's log, whole run
	ByKind          map[string]int `json:"by_kind"`          // log events by kind, whole run
	Rejected        int            `json:"rejected"`         // tamper-reason rejections in final statuses (counters restart with an agent)
	PhaseAltered    int            `json:"phase_altered"`    // alterations in the withhold phase
	PhaseRejected   int            `json:"phase_rejected"`   // tamper-reason rejections in that phase, all agents
	PhaseReplays    int            `json:"phase_replays"`    // replays in the replay phase
	Gap             Gap            `json:"gap"`              // the withheld range
	GapSeenBy       []string       `json:"gap_seen_by"`      // officers whose status showed exactly it
	ReplayEnvelopes int            `json:"replay_envelopes"` // envelopes added in the replay phase (= writes)
	Notes           []string       `json:"notes,omitempty"`
}

func rejected(n Node) (map[string]int, error) {
	var st status
	if len(n.Status) == 0 {
		return nil, fmt.Errorf("no status")
	}
	if err := json.Unmarshal(n.Status, &st); err != nil {
		return nil, err
	}
	return st.Rejected, nil
}

func tamperRejects(m map[string]int) int {
	n := 0
	for _, r := range TamperReasons {
		n += m[r]
	}
	return n
}

// CheckHostile judges the hostile relay (issue 6): every altered envelope
// was rejected (the receivers' tamper-reason rejections are exactly the
// relay's alterations in the withhold phase, and never more than its
// alterations over the run), no altered value is visible, replays changed
// nothing (no rejection, no envelope beyond the clients' writes), the
// officers saw the exact withheld range as a gap while the relay was their
// only path, and the agents converged once an honest path existed. final
// are the nodes as Check got them. It adds its violations to res.
func CheckHostile(res *Result, h Hostile, final []Node, ops []Op) HostileResult {
	c := &checker{res: *res, counts: map[string]int{}, ops: ops, byVal: map[string]*Op{}, byRsn: map[string]*Op{}}
	for i := range ops {
		if uniqueValue(&ops[i]) {
			c.byVal[ops[i].Value] = &ops[i]
		}
	}
	out := HostileResult{ByKind: map[string]int{}, Gap: h.Gap}
	for _, e := range h.Log {
		out.ByKind[e.Kind]++
		if e.Altered() {
			out.Altered++
			if !e.Time.Before(h.WithholdFrom) && !e.Time.After(h.WithholdTo) {
				out.PhaseAltered++
			}
		}
		if e.Kind == "replay" && !e.Time.Before(h.ReplayFrom) && !e.Time.After(h.ReplayTo) {
			out.PhaseReplays++
		}
	}
	// Over the run: no more tamper-reason rejections than alterations.
	for _, n := range final {
		m, err := rejected(n)
		if err != nil {
			c.fail("output", "%s: status: %v", n.Name, err)
			continue
		}
		out.Rejected += tamperRejects(m)
	}
	if out.Rejected > out.Altered {
		c.fail("tamper", "agents rejected %d envelopes as altered (%v) but the relay altered only %d: an honest envelope was refused", out.Rejected, TamperReasons, out.Altered)
	}
	// Replay phase: nothing rejected, nothing added but the writes.
	if len(h.ReplayStart) > 0 {
		if out.PhaseReplays == 0 {
			c.fail("tamper", "replay phase: the relay replayed nothing (the phase checked nothing)")
		}
		for i, n := range h.ReplayEnd {
			if i >= len(h.ReplayStart) {
				break
			}
			a, errA := rejected(h.ReplayStart[i])
			b, errB := rejected(n)
			if errA != nil || errB != nil {
				c.fail("output", "%s: replay phase status: %v %v", n.Name, errA, errB)
				continue
			}
			for reason, k := range b {
				if k != a[reason] {
					c.fail("replay", "%s: %d %s rejections during the replay phase: a replayed envelope changed something", n.Name, k-a[reason], reason)
				}
			}
			var d0, d1 digest
			json.Unmarshal(h.ReplayStart[i].Digest, &d0)
			json.Unmarshal(n.Digest, &d1)
			if d1.Count-d0.Count != h.ReplayWrites {
				c.fail("replay", "%s: the replay phase added %d envelopes, the clients wrote %d", n.Name, d1.Count-d0.Count, h.ReplayWrites)
			}
			if i == 0 {
				out.ReplayEnvelopes = d1.Count - d0.Count
			}
		}
	}
	// Withhold phase.
	if len(h.WithholdStart) > 0 {
		for i, n := range h.WithholdSeen {
			if i >= len(h.WithholdStart) {
				break
			}
			a, errA := rejected(h.WithholdStart[i])
			b, errB := rejected(n)
			if errA != nil || errB != nil {
				c.fail("output", "%s: withhold phase status: %v %v", n.Name, errA, errB)
				continue
			}
			out.PhaseRejected += tamperRejects(b) - tamperRejects(a)
			var st struct {
				Device struct {
					ID string `json:"id"`
				} `json:"device"`
				Gaps  []Gap             `json:"gaps"`
				Forks []json.RawMessage `json:"forks"`
			}
			json.Unmarshal(n.Status, &st)
			if len(st.Forks) > 0 {
				c.fail("fork", "%s: status reports forks during the withhold phase (a tampered envelope froze an honest author?): %s", n.Name, joinRaw(st.Forks))
			}
			if n.Relay || st.Device.ID == h.Gap.Author {
				continue
			}
			exact := false
			for _, g := range st.Gaps {
				if g.Author != h.Gap.Author {
					continue
				}
				if g == h.Gap {
					exact = true
				} else {
					c.fail("withheld-gap", "%s: status shows gap %s %d..%d of the withheld author; the relay withheld %d..%d", n.Name, g.Author, g.From, g.To, h.Gap.From, h.Gap.To)
				}
			}
			if exact {
				out.GapSeenBy = append(out.GapSeenBy, n.Name)
			} else {
				c.fail("withheld-gap", "%s: status does not show the withheld range %s %d..%d (gaps: %v)", n.Name, h.Gap.Author, h.Gap.From, h.Gap.To, st.Gaps)
			}
			// No altered value visible: every value shown is one a client wrote.
			for id, b := range n.Records {
				var rec record
				if len(b) == 0 || json.Unmarshal(b, &rec) != nil {
					continue
				}
				for f, fv := range rec.Fields {
					for _, s := range fv.Siblings {
						if c.byVal[s.Value] == nil {
							c.fail("phantom", "%s: during the withhold phase %s.%s shows %q, which no client wrote", n.Name, id, f, s.Value)
						}
					}
				}
			}
		}
		if out.PhaseRejected != out.PhaseAltered {
			c.fail("tamper", "withhold phase: the relay altered %d envelopes, the receivers rejected %d as altered (%v): each altered envelope sent must be rejected exactly once", out.PhaseAltered, out.PhaseRejected, TamperReasons)
		}
		if out.PhaseAltered == 0 {
			out.Notes = append(out.Notes, "withhold phase: the relay altered nothing this time")
		}
	}
	if !h.HonestPath {
		c.fail("honest-path", "the agents did not converge once officers reached each other directly, the relay still withholding: %s", h.HonestPathError)
	}
	for k, n := range c.counts {
		if n > maxPerKind {
			c.res.Violations = append(c.res.Violations, Violation{Kind: k, Detail: fmt.Sprintf("... and %d more of this kind", n-maxPerKind)})
		}
	}
	*res = c.res
	return out
}
