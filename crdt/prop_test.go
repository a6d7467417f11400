package crdt_test

import (
	"bytes"
	"flag"
	"sync"
	"testing"

	"fieldsync/crdt"
	"fieldsync/crdt/crdttest"

	"pgregory.net/rapid"
)

var propSteps = flag.Int("crdt.steps", 60, "max random steps per property-test history (raise for long runs, with -rapid.checks)")

type counter struct {
	mu sync.Mutex
	crdttest.Counts
}

func (c *counter) add(n crdttest.Counts) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ConcurrentWrites += n.ConcurrentWrites
	c.DeleteVsEdit += n.DeleteVsEdit
	c.AddRemoveRace += n.AddRemoveRace
	c.Resolves += n.Resolves
	c.Merges += n.Merges
	c.Changes += n.Changes
}

func (c *counter) check(t *testing.T) {
	t.Logf("generated: %d changes, %d concurrent same-field writes, %d delete-vs-edit, %d add/remove races, %d resolves, %d state merges",
		c.Changes, c.ConcurrentWrites, c.DeleteVsEdit, c.AddRemoveRace, c.Resolves, c.Merges)
	if c.ConcurrentWrites == 0 || c.DeleteVsEdit == 0 || c.AddRemoveRace == 0 || c.Resolves == 0 || c.Merges == 0 {
		t.Errorf("the generator failed to produce every kind of race: %+v", c.Counts)
	}
}

func encode(t *rapid.T, s *crdt.Space) []byte {
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// applyAll builds a space by applying the changes a replica holds, in
// history order: the reference that Merge must agree with.
func applyAll(t *rapid.T, sim *crdttest.Sim, known map[crdttest.Key]bool) *crdt.Space {
	s := crdt.NewSpace()
	for _, ev := range sim.History {
		if known[crdttest.Key{Author: ev.Change.Author, Seq: ev.Change.Seq}] {
			if err := s.Apply(ev.Change); err != nil {
				t.Fatal(err)
			}
		}
	}
	return s
}

func union(a, b map[crdttest.Key]bool) map[crdttest.Key]bool {
	u := map[crdttest.Key]bool{}
	for k := range a {
		u[k] = true
	}
	for k := range b {
		u[k] = true
	}
	return u
}

// TestConvergenceProperty: 3–5 replicas apply random operations delivered
// in random orders with duplicates, delays and gaps, and sometimes merge
// whole states. Checks: the oracle at every causally closed state and at
// the end; merge commutative, associative, idempotent and equal to applying
// the union of changes; byte-identical encodings at the end.
// Replay a failure with the -rapid.seed it prints.
func TestConvergenceProperty(t *testing.T) {
	var total counter
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(3, 5).Draw(rt, "replicas")
		sim := crdttest.NewSim(crdttest.DefaultConfig(n))
		steps := rapid.IntRange(10, *propSteps).Draw(rt, "steps")
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
		// Merge laws on the divergent intermediate states.
		sp := make([]*crdt.Space, n)
		for i, r := range sim.Replicas {
			sp[i] = r.Space
		}
		a, b, c := sp[0], sp[1], sp[2]
		ab, ba := crdt.Merge(a, b), crdt.Merge(b, a)
		if !bytes.Equal(encode(rt, ab), encode(rt, ba)) {
			rt.Fatal("merge is not commutative")
		}
		if !bytes.Equal(encode(rt, crdt.Merge(ab, c)), encode(rt, crdt.Merge(a, crdt.Merge(b, c)))) {
			rt.Fatal("merge is not associative")
		}
		if !bytes.Equal(encode(rt, crdt.Merge(a, a)), encode(rt, a)) {
			rt.Fatal("merge is not idempotent")
		}
		if !bytes.Equal(encode(rt, crdt.Merge(ab, b)), encode(rt, ab)) {
			rt.Fatal("merge is not idempotent (absorption)")
		}
		ra, rb := sim.Replicas[0], sim.Replicas[1]
		if !bytes.Equal(encode(rt, ab), encode(rt, applyAll(rt, sim, union(ra.Known, rb.Known)))) {
			rt.Fatal("merge disagrees with applying the union of changes")
		}
		// Everyone gets everything, in its own random order.
		sim.DeliverAll(rt)
		want := encode(rt, sim.Replicas[0].Space)
		for i, r := range sim.Replicas {
			if got := encode(rt, r.Space); !bytes.Equal(got, want) {
				rt.Fatalf("replica %d did not converge", i)
			}
			if err := sim.CheckOracle(i); err != nil {
				rt.Fatalf("final: %v", err)
			}
		}
		if !bytes.Equal(encode(rt, applyAll(rt, sim, sim.Replicas[0].Known)), want) {
			rt.Fatal("in-order application disagrees")
		}
		total.add(sim.Counts())
	})
	total.check(t)
}
