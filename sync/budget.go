package sync

import (
	"time"
)

// Priority and byte budgets (docs/sync.md "Priority and budgets"). A round
// sends mesh objects (certificates, revocations) first, then every small
// envelope — changes, key shares — and only then large ones (register
// values of photos and scans). On a metered link the sender also keeps to a
// budget per session and per day; what it holds back waits for a later
// round and is shown in Stats.

// LargeEnvelope is the size above which an envelope goes last in a round and
// counts against the daily budget's large allowance.
const LargeEnvelope = 64 << 10

// Budget bounds what this node sends in sync rounds. Zero fields are
// unlimited.
type Budget struct {
	// SessionBytes bounds the envelope bytes one round sends; the rest
	// waits for the next round. A round that has sent nothing yet may
	// always send one envelope, so a value larger than the budget still
	// goes — whole, unless the stream resumes envelopes (fieldsync-sync/3):
	// then a part of it within the budget goes and the rest waits
	// (docs/sync.md "Resumable envelopes").
	SessionBytes int64
	// DailyBytes bounds the sync bytes on the wire per UTC day (both
	// directions, all peers). Once spent, large envelopes wait for the
	// next day; mesh objects, summaries and small envelopes still go.
	DailyBytes int64
}

// roundBudget is one round's view of the budgets.
type roundBudget struct {
	e        *Engine
	session  int64 // envelope bytes this round may still send (<0: unlimited)
	sent     int64
	heldEnvs uint64
	heldSize int64
}

func (e *Engine) newRoundBudget() roundBudget {
	b := roundBudget{e: e, session: -1}
	if e.cfg.Budget.SessionBytes > 0 {
		b.session = e.cfg.Budget.SessionBytes
	}
	return b
}

// allow reports whether an envelope of n bytes may be sent now. large:
// it counts against the daily budget (second pass only).
func (b *roundBudget) allow(n int, large bool) bool {
	if b.e == nil {
		return true
	}
	if b.session >= 0 && b.sent > 0 && b.sent+int64(n) > b.session {
		return false
	}
	if large && b.e.dailySpent() {
		return false
	}
	b.sent += int64(n)
	return true
}

// room returns the envelope bytes the session budget still allows this
// round (-1: no session budget).
func (b *roundBudget) room() int64 {
	if b.e == nil || b.session < 0 {
		return -1
	}
	return max(b.session-b.sent, 0)
}

// spend counts n bytes sent outside allow (part of a resumable envelope).
func (b *roundBudget) spend(n int) { b.sent += int64(n) }

// hold notes an envelope (and with it the rest of its author's log in this
// round) held back.
func (b *roundBudget) hold(env Envelope) {
	b.heldEnvs++
	b.heldSize += int64(len(env.Data))
}

// dailySpent reports whether today's (UTC) sync bytes reached DailyBytes.
func (e *Engine) dailySpent() bool {
	if e.cfg.Budget.DailyBytes <= 0 {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rollDayLocked(time.Now())
	return e.dayBytes >= uint64(e.cfg.Budget.DailyBytes)
}

// rollDayLocked starts a new day's count at UTC midnight. e.mu held.
func (e *Engine) rollDayLocked(now time.Time) {
	if d := now.UTC().Format(time.DateOnly); d != e.day {
		e.day, e.dayBytes = d, 0
	}
}

// bookBudgetLocked adds a round's wire bytes to today's count and, for a
// completed round, records what it held back. e.mu held.
func (e *Engine) bookBudgetLocked(s *session, wire uint64, round bool) {
	e.rollDayLocked(time.Now())
	e.dayBytes += wire
	if !round {
		return
	}
	if s.budget.heldEnvs > 0 {
		if e.stats.HeldBackEnvelopes == 0 {
			e.stats.HeldBackSince = time.Now()
		}
		e.stats.HeldBackEnvelopes = s.budget.heldEnvs
		e.stats.HeldBackBytes = uint64(s.budget.heldSize)
	} else {
		e.stats.HeldBackEnvelopes, e.stats.HeldBackBytes, e.stats.HeldBackSince = 0, 0, time.Time{}
	}
}
