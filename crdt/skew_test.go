package crdt_test

import (
	"bytes"
	"testing"

	"fieldsync/crdt"
	"fieldsync/crdt/crdttest"

	"pgregory.net/rapid"
)

const (
	day      = int64(24 * 60 * 60 * 1000)
	tenYears = 3652 * day
)

// TestClockSkew: replica 0's wall clock is 10 years behind, replica 1's a
// day ahead, replica 2 is right. Causality (the oracle) and convergence are
// unaffected; replica 2 reports replica 1 as skewed with its drift.
func TestClockSkew(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		cfg := crdttest.DefaultConfig(3)
		cfg.PhysOffsets = []int64{-tenYears, day, 0}
		sim := crdttest.NewSim(cfg)
		steps := rapid.IntRange(10, 40).Draw(rt, "steps")
		for k := 0; k < steps; k++ {
			sim.Step(rt)
			for i := range sim.Replicas {
				if sim.Closed(i) {
					if err := sim.CheckOracle(i); err != nil {
						rt.Fatalf("step %d: %v", k, err)
					}
				}
			}
		}
		// Make sure the far-ahead replica wrote something.
		sim.Write(rt, 1)
		sim.DeliverAll(rt)
		want, _ := sim.Replicas[0].Space.MarshalBinary()
		for i, r := range sim.Replicas {
			got, _ := r.Space.MarshalBinary()
			if !bytes.Equal(got, want) {
				rt.Fatalf("replica %d did not converge", i)
			}
			if err := sim.CheckOracle(i); err != nil {
				rt.Fatal(err)
			}
		}
		ahead, behind, right := sim.Replicas[1], sim.Replicas[0], sim.Replicas[2]
		drift, ok := right.Skewed[ahead.ID]
		if !ok {
			rt.Fatalf("the day-ahead replica was not reported: %v", right.Skewed)
		}
		if drift < day-60_000 || drift > day+60_000 {
			rt.Fatalf("drift %d ms, want about a day", drift)
		}
		if _, ok := right.Skewed[behind.ID]; ok {
			rt.Fatal("a replica behind was reported as ahead")
		}
		// The far-ahead timestamps never dragged the correct clock forward.
		if right.Clock.Last.Wall > sim.Now+60_000 {
			rt.Fatalf("clock dragged forward to %v (now %d)", right.Clock.Last, sim.Now)
		}
	})
}

func TestClockNowObserve(t *testing.T) {
	var c crdt.Clock
	a := c.Now(1000)
	b := c.Now(1000)
	d := c.Now(999) // wall clock stepped back
	if !(a.Compare(b) < 0 && b.Compare(d) < 0) {
		t.Fatalf("not strictly increasing: %v %v %v", a, b, d)
	}
	if a.Compare(b) >= 0 || b.Compare(a) <= 0 {
		t.Fatal("Compare not antisymmetric")
	}
	c.Last = crdt.Timestamp{Wall: 5000, Logical: 1<<16 - 1}
	if n := c.Now(10); n != (crdt.Timestamp{Wall: 5001}) {
		t.Fatalf("logical overflow: %v", n)
	}
	// Within drift: accepted and moves the clock.
	c = crdt.Clock{MaxDriftMillis: 100}
	if drift, skewed := c.Observe(crdt.Timestamp{Wall: 1050}, 1000); skewed || drift != 50 {
		t.Fatalf("within drift: %d %v", drift, skewed)
	}
	if n := c.Now(1000); n.Compare(crdt.Timestamp{Wall: 1050}) <= 0 {
		t.Fatalf("Now after observe: %v", n)
	}
	// Beyond drift: reported, Last untouched.
	last := c.Last
	if drift, skewed := c.Observe(crdt.Timestamp{Wall: 1000 + day}, 1000); !skewed || drift != day {
		t.Fatalf("beyond drift: %d %v", drift, skewed)
	}
	if c.Last != last {
		t.Fatal("a skewed timestamp moved the clock")
	}
	// Pack preserves order.
	ts := []crdt.Timestamp{{0, 0}, {0, 1}, {1, 0}, {1<<48 - 1, 5}}
	for i := range ts {
		if crdt.UnpackTimestamp(ts[i].Pack()) != ts[i] {
			t.Fatalf("pack round trip %v", ts[i])
		}
		for j := range ts {
			if (ts[i].Compare(ts[j]) < 0) != (ts[i].Pack() < ts[j].Pack()) {
				t.Fatalf("pack order %v %v", ts[i], ts[j])
			}
		}
	}
}

func TestVersionVectorCompare(t *testing.T) {
	var a, b crdt.ReplicaID
	a[0], b[0] = 1, 2
	cases := []struct {
		v, w crdt.VersionVector
		want crdt.Ordering
	}{
		{crdt.VersionVector{}, nil, crdt.Equal},
		{crdt.VersionVector{a: 1}, crdt.VersionVector{a: 1, b: 0}, crdt.Equal},
		{crdt.VersionVector{a: 2}, crdt.VersionVector{a: 1}, crdt.Greater},
		{crdt.VersionVector{a: 2, b: 1}, crdt.VersionVector{a: 3}, crdt.ConcurrentLesser},
		{crdt.VersionVector{a: 4, b: 1}, crdt.VersionVector{a: 3, b: 5}, crdt.ConcurrentGreater},
	}
	inverse := map[crdt.Ordering]crdt.Ordering{crdt.Equal: crdt.Equal, crdt.Greater: crdt.Lesser, crdt.Lesser: crdt.Greater,
		crdt.ConcurrentGreater: crdt.ConcurrentLesser, crdt.ConcurrentLesser: crdt.ConcurrentGreater}
	for _, c := range cases {
		if got := c.v.Compare(c.w); got != c.want {
			t.Errorf("%v vs %v = %v, want %v", c.v, c.w, got, c.want)
		}
		if got := c.w.Compare(c.v); got != inverse[c.want] {
			t.Errorf("%v vs %v = %v, want %v", c.w, c.v, got, inverse[c.want])
		}
	}
}

func TestContextGaps(t *testing.T) {
	var r crdt.ReplicaID
	r[0] = 7
	c := crdt.NewContext()
	for _, s := range []uint64{3, 1, 5, 3} {
		c.Add(crdt.Dot{Replica: r, Seq: s})
	}
	if c.Vector()[r] != 1 || !c.Contains(crdt.Dot{Replica: r, Seq: 5}) || c.Contains(crdt.Dot{Replica: r, Seq: 4}) {
		t.Fatalf("vector %v", c.Vector())
	}
	if m := c.Missing(r, 0); len(m) != 2 || m[0] != 2 || m[1] != 4 {
		t.Fatalf("missing %v", m)
	}
	c.Add(crdt.Dot{Replica: r, Seq: 2})
	c.Add(crdt.Dot{Replica: r, Seq: 4})
	if c.Vector()[r] != 5 || len(c.Outstanding()) != 0 {
		t.Fatalf("after filling: %v %v", c.Vector(), c.Outstanding())
	}
	b, _ := c.MarshalBinary()
	d, err := crdt.UnmarshalContext(b)
	if err != nil || !d.Equal(c) {
		t.Fatalf("round trip: %v", err)
	}
}
