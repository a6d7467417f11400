package sync_test

import (
	"context"
	"testing"
	"time"

	fsync "fieldsync/sync"
	"fieldsync/sync/synctest"
)

// TestRoundDurationsCountRounds: a round run with SyncWith lands in the
// initiator's "initiator, completed" histogram and in the responder's
// "responder, completed" one, and the histograms' counts agree with Stats.
func TestRoundDurationsCountRounds(t *testing.T) {
	c := synctest.NewCluster(t)
	nodes := c.Start(2, synctest.Options{SyncInterval: -1, DisableHints: true})
	a, b := nodes[0], nodes[1]
	if !synctest.WaitMembers(10*time.Second, a, b) {
		t.Fatal("no membership")
	}
	a.Write(synctest.NewSpace(), []byte("one"))
	before := find(t, a.Engine.RoundDurations(), true, true).Count
	if _, err := a.Engine.SyncWith(context.Background(), b.Dev.ID); err != nil {
		t.Fatal(err)
	}
	h := find(t, a.Engine.RoundDurations(), true, true)
	// (a join round may have run meanwhile: at least ours is counted)
	if h.Count < before+1 || h.Sum <= 0 {
		t.Fatalf("initiator histogram after one round: count %d (before %d), sum %v", h.Count, before, h.Sum)
	}
	cum := h.Cumulative()
	if got := cum[fsync.RoundDurationBuckets[len(fsync.RoundDurationBuckets)-1]]; got > h.Count {
		t.Fatalf("cumulative count %d above total %d", got, h.Count)
	}
	// Completed rounds in the histograms equal Stats.Rounds (read between
	// two equal Stats, so that no round ended in between).
	agree := false
	for try := 0; try < 20 && !agree; try++ {
		s1 := a.Engine.Stats().Rounds
		var total uint64
		for _, rh := range a.Engine.RoundDurations() {
			if rh.OK {
				total += rh.Count
			}
		}
		if s2 := a.Engine.Stats().Rounds; s1 == s2 {
			if total != s1 {
				t.Fatalf("Stats.Rounds %d, histograms of completed rounds hold %d", s1, total)
			}
			agree = true
		}
	}
	if !agree {
		t.Fatal("rounds kept ending while reading the counters")
	}
	// The responder books the same round once its side ends.
	if !synctest.WaitFor(10*time.Second, func() bool { return find(t, b.Engine.RoundDurations(), false, true).Count > 0 }) {
		t.Fatal("responder histogram stayed empty")
	}
}

func find(t *testing.T, hs []fsync.RoundHistogram, initiator, ok bool) fsync.RoundHistogram {
	t.Helper()
	if len(hs) != 4 {
		t.Fatalf("%d round histograms, want 4", len(hs))
	}
	for _, h := range hs {
		if h.Initiator == initiator && h.OK == ok {
			if len(h.Counts) != len(h.Bounds)+1 {
				t.Fatalf("histogram with %d counts for %d bounds", len(h.Counts), len(h.Bounds))
			}
			return h
		}
	}
	t.Fatalf("no histogram for initiator=%v ok=%v", initiator, ok)
	return fsync.RoundHistogram{}
}
