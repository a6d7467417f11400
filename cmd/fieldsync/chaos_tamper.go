//go:build fieldsync_chaos

package main

// The hostile relay of the e2e chaos test (issue 6), compiled in only with
// `-tags fieldsync_chaos`: agent.Config.Tamper rewrites every envelope the
// agent sends to a peer. Rules, one a line, in the file named by
// FIELDSYNC_CHAOS_TAMPER_FILE (re-read at most every 100 ms; # comments;
// unknown lines ignored; a missing file means an honest relay):
//
//	flip P                  with probability P, flip one bit of the envelope
//	truncate P              with probability P, cut it short (1 byte .. len-1)
//	splice P                with probability P, its first bytes and the rest of
//	                        another envelope of the same author
//	replay P                with probability P, also send again an older
//	                        envelope of the same author (one the peer holds)
//	withhold AUTHOR FROM TO never send AUTHOR's seqs FROM..TO (any space)
//
// P is a probability (0..1). At most one alteration is drawn per envelope
// sent (flip, then truncate, then splice). Every decision is a hash of the
// seed, the envelope's (space, author, seq) and how many times this relay
// has sent it, so a given envelope's fate on its Nth sending is fixed by the
// seed; which peer gets it, and when, is not.
//
// The receiver skips the rest of an author's log for the session after
// rejecting one of its envelopes (sync's receiveEnvelopes: the rest would
// only fail the chain). So within one round (one space sent to one peer),
// once the relay has altered an envelope of an author, or sent the first
// envelope after a withheld one (rejected as a gap), it sends nothing more
// of that author in that round: each alteration that leaves the relay is
// then ingested, and rejected, exactly once, and the test can hold the
// receivers' reject counters to the relay's log. An alteration is logged
// once its send succeeded.
//
// Every alteration, withheld envelope (once per envelope) and replay is
// appended as a JSON line to FIELDSYNC_CHAOS_TAMPER_LOG:
//
//	{"time":"…","kind":"flip","space":"…","author":"…","seq":7,"attempt":0}
//
// The relay's own store is never modified: only what leaves it.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"hash/fnv"
	"os"
	"strconv"
	"strings"
	gosync "sync"
	"time"

	fsync "fieldsync/sync"
)

// tamperKeep is how many recent envelopes of each author the relay keeps
// for splices and replays.
const tamperKeep = 32

type tamperRules struct {
	flip, truncate, splice, replay float64
	withhold                       map[string][][2]uint64 // author -> ranges
}

type envID struct {
	space  fsync.SpaceID
	author fsync.PeerID
	seq    uint64
}

type spaceAuthor struct {
	space  fsync.SpaceID
	author fsync.PeerID
}

// tamperer is the hostile relay's state; safe for concurrent use (sync
// sessions to several peers run at once).
type tamperer struct {
	seed    uint64
	path    string
	logPath string

	mu       gosync.Mutex
	read     time.Time
	raw      []byte
	rules    tamperRules
	attempts map[envID]uint64
	withheld map[envID]bool
	recent   map[spaceAuthor][]fsync.Envelope
	log      *os.File
}

func newTamperer(seed uint64, path, logPath string) *tamperer {
	t := &tamperer{seed: seed, path: path, logPath: logPath,
		attempts: map[envID]uint64{}, withheld: map[envID]bool{},
		recent: map[spaceAuthor][]fsync.Envelope{}}
	if logPath != "" {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err == nil {
			t.log = f
		}
	}
	return t
}

// parseTamperRules reads the rules; malformed lines are ignored.
func parseTamperRules(b []byte) tamperRules {
	r := tamperRules{withhold: map[string][][2]uint64{}}
	for _, line := range strings.Split(string(b), "\n") {
		w := strings.Fields(line)
		if len(w) == 0 || strings.HasPrefix(w[0], "#") {
			continue
		}
		switch {
		case len(w) == 2 && (w[0] == "flip" || w[0] == "truncate" || w[0] == "splice" || w[0] == "replay"):
			p, err := strconv.ParseFloat(w[1], 64)
			if err != nil || p < 0 || p > 1 {
				continue
			}
			switch w[0] {
			case "flip":
				r.flip = p
			case "truncate":
				r.truncate = p
			case "splice":
				r.splice = p
			case "replay":
				r.replay = p
			}
		case len(w) == 4 && w[0] == "withhold":
			from, err1 := strconv.ParseUint(w[2], 10, 64)
			to, err2 := strconv.ParseUint(w[3], 10, 64)
			if err1 == nil && err2 == nil && from <= to {
				r.withhold[w[1]] = append(r.withhold[w[1]], [2]uint64{from, to})
			}
		}
	}
	return r
}

func (t *tamperer) refresh(now time.Time) {
	if !t.read.IsZero() && now.Sub(t.read) < chaosReread {
		return
	}
	t.read = now
	var b []byte
	if t.path != "" {
		b, _ = chaosReadFile(t.path, chaosMaxFile)
	}
	if t.rules.withhold != nil && bytes.Equal(b, t.raw) {
		return
	}
	t.raw = b
	t.rules = parseTamperRules(b)
}

func (t *tamperer) isWithheld(e fsync.Envelope) bool {
	for _, rg := range t.rules.withhold[e.Author.String()] {
		if e.Seq >= rg[0] && e.Seq <= rg[1] {
			return true
		}
	}
	return false
}

// draw is the decision stream of one sending of one envelope.
type draw struct{ x uint64 }

func (d *draw) next() uint64 {
	d.x = splitmix(d.x)
	return d.x
}

// float returns a number in [0, 1).
func (d *draw) float() float64 { return float64(d.next()>>11) / (1 << 53) }

func (d *draw) intn(n int) int {
	if n <= 0 {
		return 0
	}
	return int(d.next() % uint64(n))
}

func (t *tamperer) drawFor(id envID, attempt uint64) *draw {
	h := fnv.New64a()
	h.Write(id.space[:])
	h.Write(id.author[:])
	binary.Write(h, binary.BigEndian, id.seq)
	binary.Write(h, binary.BigEndian, attempt)
	return &draw{x: t.seed ^ h.Sum64()}
}

type tamperEvent struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"` // flip, truncate, splice (alterations), withhold, replay
	Space   string    `json:"space"`
	Author  string    `json:"author"`
	Seq     uint64    `json:"seq"`
	Attempt uint64    `json:"attempt"`
}

func (t *tamperer) note(kind string, e fsync.Envelope, attempt uint64) {
	if t.log == nil {
		return
	}
	b, _ := json.Marshal(tamperEvent{Time: time.Now().UTC(), Kind: kind, Space: e.Space.String(), Author: e.Author.String(), Seq: e.Seq, Attempt: attempt})
	t.log.Write(append(b, '\n'))
}

// tamperRound is what the relay knows of one round: the authors the
// receiver will skip for the rest of it.
type tamperRound struct {
	skipped  map[spaceAuthor]bool
	withheld map[spaceAuthor]bool // an envelope of the author was withheld this round
}

func newTamperRound() *tamperRound {
	return &tamperRound{skipped: map[spaceAuthor]bool{}, withheld: map[spaceAuthor]bool{}}
}

// round is agent.Config.Tamper: the rewriter of one round.
func (t *tamperer) round() func(fsync.Envelope, func(fsync.Envelope) error) error {
	r := newTamperRound()
	return func(e fsync.Envelope, send func(fsync.Envelope) error) error {
		out, note := t.apply(r, e)
		for _, o := range out {
			if err := send(o); err != nil {
				return err
			}
		}
		if note != nil {
			t.mu.Lock()
			t.note(note.kind, note.env, note.attempt)
			t.mu.Unlock()
		}
		return nil
	}
}

// tamperNote is a log line to write once the round's send succeeded.
type tamperNote struct {
	kind    string
	env     fsync.Envelope
	attempt uint64
}

// apply decides what the relay sends in e's place in round r.
func (t *tamperer) apply(r *tamperRound, e fsync.Envelope) ([]fsync.Envelope, *tamperNote) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refresh(time.Now())
	id := envID{e.Space, e.Author, e.Seq}
	sa := spaceAuthor{e.Space, e.Author}
	t.remember(sa, e)
	if t.isWithheld(e) {
		if !t.withheld[id] {
			t.withheld[id] = true
			t.note("withhold", e, 0)
		}
		r.withheld[sa] = true
		return nil, nil
	}
	if r.skipped[sa] {
		return nil, nil // the receiver would skip it
	}
	if r.withheld[sa] {
		r.skipped[sa] = true // this one is rejected as a gap; the rest skipped
	}
	attempt := t.attempts[id]
	t.attempts[id] = attempt + 1
	d := t.drawFor(id, attempt)
	out := []fsync.Envelope{e}
	u := d.float()
	kind := ""
	switch rl := t.rules; {
	case u < rl.flip:
		kind = "flip"
	case u < rl.flip+rl.truncate:
		kind = "truncate"
	case u < rl.flip+rl.truncate+rl.splice:
		kind = "splice"
	}
	if kind != "" && len(e.Data) > 1 {
		data, how := t.alter(kind, e, d)
		r.skipped[sa] = true
		return []fsync.Envelope{{Space: e.Space, Author: e.Author, Seq: e.Seq, Data: data}}, &tamperNote{how, e, attempt}
	}
	if t.rules.replay > 0 && d.float() < t.rules.replay {
		var older []fsync.Envelope
		for _, o := range t.recent[sa] {
			if o.Seq < e.Seq && !t.isWithheld(o) {
				older = append(older, o)
			}
		}
		if len(older) > 0 {
			o := older[d.intn(len(older))]
			return append(out, o), &tamperNote{"replay", o, attempt}
		}
	}
	return out, nil
}

// alter returns a copy of e's data, altered, and how (a splice with no
// other envelope to take from is a flip).
func (t *tamperer) alter(kind string, e fsync.Envelope, d *draw) ([]byte, string) {
	data := append([]byte(nil), e.Data...)
	if kind == "splice" {
		var others []fsync.Envelope
		for _, o := range t.recent[spaceAuthor{e.Space, e.Author}] {
			if o.Seq != e.Seq {
				others = append(others, o)
			}
		}
		if len(others) > 0 {
			o := others[d.intn(len(others))]
			cut := 1 + d.intn(min(len(data), len(o.Data))-1)
			spliced := append(data[:cut:cut], o.Data[cut:]...)
			if !bytes.Equal(spliced, e.Data) {
				return spliced, "splice"
			}
		}
		kind = "flip"
	}
	if kind == "truncate" {
		return data[:1+d.intn(len(data)-1)], "truncate"
	}
	bit := d.intn(len(data) * 8)
	data[bit/8] ^= 1 << (bit % 8)
	return data, "flip"
}

// remember keeps the author's recent envelopes for splices and replays.
func (t *tamperer) remember(sa spaceAuthor, e fsync.Envelope) {
	rs := t.recent[sa]
	for _, o := range rs {
		if o.Seq == e.Seq {
			return
		}
	}
	rs = append(rs, fsync.Envelope{Space: e.Space, Author: e.Author, Seq: e.Seq, Data: append([]byte(nil), e.Data...)})
	if len(rs) > tamperKeep {
		rs = rs[len(rs)-tamperKeep:]
	}
	t.recent[sa] = rs
}
