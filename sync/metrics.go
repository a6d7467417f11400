package sync

import (
	"sort"
	"time"
)

// RoundDurationBuckets are the upper bounds, in seconds, of the buckets of
// the round-duration histograms (Engine.RoundDurations). An idle round on
// loopback takes a few milliseconds; a catch-up over a poor link, minutes.
var RoundDurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// Histogram is a snapshot of a histogram of durations in seconds.
type Histogram struct {
	Bounds []float64 // bucket upper bounds, ascending (RoundDurationBuckets)
	Counts []uint64  // Counts[i]: observations in (Bounds[i-1], Bounds[i]]; one more for +Inf
	Count  uint64    // all observations
	Sum    float64   // their sum, seconds
}

// Cumulative returns, for each upper bound, the number of observations at
// or below it (the form Prometheus exposes; +Inf is Count).
func (h Histogram) Cumulative() map[float64]uint64 {
	out := make(map[float64]uint64, len(h.Bounds))
	var n uint64
	for i, b := range h.Bounds {
		n += h.Counts[i]
		out[b] = n
	}
	return out
}

func (h *Histogram) observe(d time.Duration) {
	if h.Counts == nil {
		h.Bounds = RoundDurationBuckets
		h.Counts = make([]uint64, len(h.Bounds)+1)
	}
	s := d.Seconds()
	h.Counts[sort.SearchFloat64s(h.Bounds, s)]++
	h.Count++
	h.Sum += s
}

func (h Histogram) clone() Histogram {
	if h.Counts == nil {
		h.Bounds = RoundDurationBuckets
		h.Counts = make([]uint64, len(h.Bounds)+1)
		return h
	}
	h.Counts = append([]uint64(nil), h.Counts...)
	return h
}

// RoundHistogram is the duration histogram of one kind of anti-entropy
// round: this node's role in it and how it ended.
type RoundHistogram struct {
	Initiator bool // this node dialed the peer (else it answered)
	OK        bool // the round completed (else it failed or was cut)
	Histogram
}

// roundHistograms are the engine's round-duration histograms, indexed by
// [initiator][ok]; guarded by Engine.mu.
type roundHistograms [2][2]Histogram

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// RoundDurations returns the duration histograms of every round that got a
// stream (dial failures are counted in Stats.RoundErrors only), in a fixed
// order: initiator before responder, completed before failed.
func (e *Engine) RoundDurations() []RoundHistogram {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]RoundHistogram, 0, 4)
	for _, init := range []bool{true, false} {
		for _, ok := range []bool{true, false} {
			out = append(out, RoundHistogram{Initiator: init, OK: ok, Histogram: e.roundDur[b2i(init)][b2i(ok)].clone()})
		}
	}
	return out
}

// observeRoundLocked books one round's duration; e.mu must be held.
func (e *Engine) observeRoundLocked(initiator, ok bool, d time.Duration) {
	e.roundDur[b2i(initiator)][b2i(ok)].observe(d)
}
