package crdt

import "sort"

// Ordering is the result of comparing two version vectors. Concurrent
// vectors are split into ConcurrentGreater and ConcurrentLesser by a
// deterministic rule so that sorts stay deterministic.
type Ordering int

// The orderings of VersionVector.Compare.
const (
	Equal Ordering = iota
	Greater
	Lesser
	ConcurrentGreater
	ConcurrentLesser
)

// String returns the ordering's name.
func (o Ordering) String() string {
	switch o {
	case Equal:
		return "equal"
	case Greater:
		return "greater"
	case Lesser:
		return "lesser"
	case ConcurrentGreater:
		return "concurrent-greater"
	case ConcurrentLesser:
		return "concurrent-lesser"
	}
	return "ordering(?)"
}

// VersionVector maps each replica to the highest seq such that every seq
// from 1 to it has been seen. A missing entry is 0. The nil vector is empty.
type VersionVector map[ReplicaID]uint64

// Compare compares v with w. When they are concurrent, the tie is split at
// the smallest replica ID (by bytes) whose counters differ: the vector with
// the higher counter there is ConcurrentGreater.
func (v VersionVector) Compare(w VersionVector) Ordering {
	ids := make([]ReplicaID, 0, len(v)+len(w))
	for r := range v {
		ids = append(ids, r)
	}
	for r := range w {
		if _, ok := v[r]; !ok {
			ids = append(ids, r)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].Compare(ids[j]) < 0 })
	greater, lesser := false, false
	split := 0
	for _, r := range ids {
		a, b := v[r], w[r]
		if a > b {
			greater = true
			if split == 0 {
				split = 1
			}
		} else if a < b {
			lesser = true
			if split == 0 {
				split = -1
			}
		}
	}
	switch {
	case !greater && !lesser:
		return Equal
	case greater && !lesser:
		return Greater
	case lesser && !greater:
		return Lesser
	case split > 0:
		return ConcurrentGreater
	}
	return ConcurrentLesser
}

// Clone returns a copy of v.
func (v VersionVector) Clone() VersionVector {
	c := make(VersionVector, len(v))
	for r, s := range v {
		c[r] = s
	}
	return c
}
