package crdt

import (
	"slices"
	"sort"
	"unique"
)

// Context is a space's causal context: the set of changes applied (or
// marked seen), kept compactly as a version vector plus the seqs seen out of
// order, and the op-level dots that some applied change overwrote before
// their own change arrived ("partial" dots, each bound to the record it was
// overwritten in). The zero Context is empty and ready to use.
type Context struct {
	vv    map[ReplicaID]uint64
	extra map[ReplicaID][]uint64 // sorted, all > vv[r]+1
	// partial is a set per (replica, seq): a hostile change may name many
	// ops of one seq, and a list scanned on every insert made that
	// quadratic (100k dots froze an agent for seconds).
	partial map[ReplicaID]map[uint64]map[partialDot]struct{}
	// keys caches the interned (register name, author) handles of the
	// last few register writes applied: a space has a few fields and
	// applies runs of changes by one author, and interning costs a lookup
	// in a global table. It is not part of the context's value.
	keys [8]struct {
		name string
		rep  ReplicaID
		h    unique.Handle[regKey]
	}
	nextKey uint8
}

// key returns the interned handle of (name, r).
func (c *Context) key(name string, r ReplicaID) unique.Handle[regKey] {
	for i := range c.keys {
		k := &c.keys[i]
		if k.h != (unique.Handle[regKey]{}) && k.rep == r && k.name == name {
			return k.h
		}
	}
	h := makeKey(name, r)
	k := &c.keys[c.nextKey%uint8(len(c.keys))]
	c.nextKey++
	k.name, k.rep, k.h = h.Value().name, r, h
	return h
}

type partialDot struct {
	op  uint32
	rec RecordID
}

// NewContext returns an empty context.
func NewContext() *Context { return &Context{} }

// Contains reports whether the change (d.Replica, d.Seq) has been applied or
// marked seen. d.Op is ignored.
func (c *Context) Contains(d Dot) bool { return c.hasChange(d.Replica, d.Seq) }

func (c *Context) hasChange(r ReplicaID, seq uint64) bool {
	if seq == 0 {
		return false
	}
	if seq <= c.vv[r] {
		return true
	}
	ex := c.extra[r]
	if len(ex) == 0 {
		return false
	}
	_, ok := slices.BinarySearch(ex, seq)
	return ok
}

// Add records the change (d.Replica, d.Seq) as seen (d.Op is ignored). The
// agent calls it, through Space.MarkSeen or directly, for seqs that carried
// no CRDT operations (key shares, profiles, routing records), so that the
// vector stays gap-free. Add of seq 0 does nothing.
func (c *Context) Add(d Dot) { c.addChange(d.Replica, d.Seq) }

// addChange adds a whole change and drops the partial dots it covers. It
// reports whether the change was new.
func (c *Context) addChange(r ReplicaID, seq uint64) bool {
	if seq == 0 {
		return false
	}
	if c.vv == nil {
		c.vv = make(map[ReplicaID]uint64)
	}
	cur := c.vv[r]
	if seq <= cur {
		return false
	}
	if seq == cur+1 {
		cur = seq
		if ex := c.extra[r]; len(ex) > 0 {
			i := 0
			for i < len(ex) && ex[i] == cur+1 {
				cur++
				i++
			}
			if i == len(ex) {
				delete(c.extra, r)
			} else if i > 0 {
				c.extra[r] = slices.Clone(ex[i:])
			}
		}
		c.vv[r] = cur
	} else {
		ex := c.extra[r]
		i, found := slices.BinarySearch(ex, seq)
		if found {
			return false
		}
		if c.extra == nil {
			c.extra = make(map[ReplicaID][]uint64)
		}
		c.extra[r] = slices.Insert(ex, i, seq)
	}
	if len(c.partial) > 0 {
		if m := c.partial[r]; m != nil {
			delete(m, seq)
			if len(m) == 0 {
				delete(c.partial, r)
			}
		}
	}
	return true
}

// addPartial records that op dot d of record rec was overwritten before its
// change arrived. The caller checks that d's change is not yet in c.
func (c *Context) addPartial(d Dot, rec RecordID) {
	if c.partial == nil {
		c.partial = make(map[ReplicaID]map[uint64]map[partialDot]struct{})
	}
	m := c.partial[d.Replica]
	if m == nil {
		m = make(map[uint64]map[partialDot]struct{})
		c.partial[d.Replica] = m
	}
	set := m[d.Seq]
	if set == nil {
		set = make(map[partialDot]struct{}, 1)
		m[d.Seq] = set
	}
	set[partialDot{d.Op, rec}] = struct{}{}
}

func (c *Context) hasPartial(d Dot, rec RecordID) bool {
	if len(c.partial) == 0 {
		return false
	}
	_, ok := c.partial[d.Replica][d.Seq][partialDot{d.Op, rec}]
	return ok
}

// covers reports whether op dot d, located in record rec, is in the context:
// its whole change is, or it was overwritten there before arriving.
func (c *Context) covers(d Dot, rec RecordID) bool {
	return c.hasChange(d.Replica, d.Seq) || c.hasPartial(d, rec)
}

// Vector returns a copy of the contiguous prefix per replica.
func (c *Context) Vector() VersionVector {
	v := make(VersionVector, len(c.vv))
	for r, s := range c.vv {
		v[r] = s
	}
	return v
}

// Outstanding returns, per replica, the seqs seen beyond the contiguous
// prefix (the gaps' far side), sorted. Replicas without any are absent.
func (c *Context) Outstanding() map[ReplicaID][]uint64 {
	m := make(map[ReplicaID][]uint64, len(c.extra))
	for r, ex := range c.extra {
		m[r] = slices.Clone(ex)
	}
	return m
}

// Missing returns the seqs of replica r below its highest seen seq that
// have not been seen, at most max of them (max <= 0: all).
func (c *Context) Missing(r ReplicaID, max int) []uint64 {
	var out []uint64
	next := c.vv[r] + 1
	for _, s := range c.extra[r] {
		for ; next < s; next++ {
			if max > 0 && len(out) >= max {
				return out
			}
			out = append(out, next)
		}
		next = s + 1
	}
	return out
}

// Clone returns a deep copy of c.
func (c *Context) Clone() *Context {
	n := &Context{}
	n.Join(c)
	return n
}

// Join adds everything o contains to c.
func (c *Context) Join(o *Context) {
	for r, s := range o.vv {
		if s > c.vv[r] {
			if c.vv == nil {
				c.vv = make(map[ReplicaID]uint64)
			}
			// Everything up to s is seen: fold in c's extras up to s.
			c.vv[r] = s
			if ex := c.extra[r]; len(ex) > 0 {
				i := sort.Search(len(ex), func(i int) bool { return ex[i] > s })
				if i == len(ex) {
					delete(c.extra, r)
				} else {
					c.extra[r] = slices.Clone(ex[i:])
				}
				c.compact(r)
			}
		}
	}
	for r, ex := range o.extra {
		for _, s := range ex {
			c.addChange(r, s)
		}
	}
	for r, m := range o.partial {
		for seq, ps := range m {
			if c.hasChange(r, seq) {
				continue
			}
			for p := range ps {
				c.addPartial(Dot{r, seq, p.op}, p.rec)
			}
		}
	}
	c.dropCoveredPartials()
}

// compact absorbs extras that have become contiguous with vv[r].
func (c *Context) compact(r ReplicaID) {
	ex := c.extra[r]
	cur := c.vv[r]
	i := 0
	for i < len(ex) && ex[i] <= cur+1 {
		if ex[i] == cur+1 {
			cur++
		}
		i++
	}
	c.vv[r] = cur
	if i == len(ex) {
		delete(c.extra, r)
	} else if i > 0 {
		c.extra[r] = slices.Clone(ex[i:])
	}
}

func (c *Context) dropCoveredPartials() {
	for r, m := range c.partial {
		for seq := range m {
			if c.hasChange(r, seq) {
				delete(m, seq)
			}
		}
		if len(m) == 0 {
			delete(c.partial, r)
		}
	}
}

// Equal reports whether c and o contain exactly the same dots.
func (c *Context) Equal(o *Context) bool {
	a, _ := c.MarshalBinary()
	b, _ := o.MarshalBinary()
	return string(a) == string(b)
}

func sortedReplicas[V any](m map[ReplicaID]V) []ReplicaID {
	ids := make([]ReplicaID, 0, len(m))
	for r := range m {
		ids = append(ids, r)
	}
	slices.SortFunc(ids, func(a, b ReplicaID) int { return a.Compare(b) })
	return ids
}
