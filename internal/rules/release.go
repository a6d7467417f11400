package rules

import (
	"cmp"
	"slices"

	"fieldsync/crypto"
)

// Routing is one routing record of a space as the release list needs it:
// its place in its author's log, the bureaus it releases (fingerprints,
// the owner's included, as its writer means the whole list), and the
// routing records it names as replaced.
type Routing struct {
	Author     string // device ID
	Seq        uint64
	Released   []string
	Supersedes []Ref
}

// Ref names a routing record by its place in its author's log.
type Ref struct {
	Author string
	Seq    uint64
}

func (r Routing) ref() Ref { return Ref{r.Author, r.Seq} }

// replacements returns, for each record, the records it replaces directly:
// those it names in Supersedes and its author's earlier records. A record
// never replaces one at its own place in the log (a copy of itself, or a
// record naming itself): records are taken as a set, so duplicates change
// nothing.
func replacements(recs []Routing) [][]int {
	at := make(map[Ref][]int, len(recs))
	for i, r := range recs {
		at[r.ref()] = append(at[r.ref()], i)
	}
	replaces := make([][]int, len(recs))
	for i, r := range recs {
		for _, s := range r.Supersedes {
			if s != r.ref() {
				replaces[i] = append(replaces[i], at[s]...)
			}
		}
		for j, o := range recs {
			if o.Author == r.Author && o.Seq < r.Seq {
				replaces[i] = append(replaces[i], j)
			}
		}
	}
	return replaces
}

// ReleaseList computes a space's release list from its routing records
// (docs/crdt.md, "Release lists"). A record replaces the records it names
// in Supersedes and its author's earlier records; the records nothing
// replaces are the heads. A bureau is released when a head releases it and
// no head withdrew it — a head withdraws a bureau when it leaves out a
// bureau that a record it replaced (directly or not) had released. So a
// withdrawal wins over a concurrent release of the same bureau (fail
// closed, docs/design.md §2), while concurrent releases of different
// bureaus both stand. The owner is always released. The result is sorted
// and depends only on the set of records: not on their order, nor on
// duplicates.
func ReleaseList(owner string, recs []Routing) []string {
	replaces := replacements(recs)
	replaced := make([]bool, len(recs))
	for _, l := range replaces {
		for _, j := range l {
			replaced[j] = true
		}
	}
	// past(i): every bureau released by a record in i's past.
	past := func(i int) map[string]bool {
		seen := map[int]bool{}
		out := map[string]bool{}
		stack := slices.Clone(replaces[i])
		for len(stack) > 0 {
			j := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[j] {
				continue
			}
			seen[j] = true
			for _, b := range recs[j].Released {
				out[b] = true
			}
			stack = append(stack, replaces[j]...)
		}
		return out
	}
	var heads []int
	for i := range recs {
		if !replaced[i] {
			heads = append(heads, i)
		}
	}
	pasts := make([]map[string]bool, len(heads))
	for k, i := range heads {
		pasts[k] = past(i)
	}
	released := map[string]bool{owner: true}
	for _, i := range heads {
	candidates:
		for _, b := range recs[i].Released {
			for k, h := range heads {
				if pasts[k][b] && !slices.Contains(recs[h].Released, b) {
					continue candidates // head h withdrew it
				}
			}
			released[b] = true
		}
	}
	out := make([]string, 0, len(released))
	for b := range released {
		out = append(out, b)
	}
	slices.Sort(out)
	return out
}

// RoutingHeads returns the routing records nothing replaces, sorted and
// unique: what a new routing record supersedes.
func RoutingHeads(recs []Routing) []Ref {
	replaces := replacements(recs)
	replaced := make([]bool, len(recs))
	for _, l := range replaces {
		for _, j := range l {
			replaced[j] = true
		}
	}
	var out []Ref
	for i, r := range recs {
		if !replaced[i] {
			out = append(out, r.ref())
		}
	}
	slices.SortFunc(out, func(x, y Ref) int {
		return cmp.Or(cmp.Compare(x.Author, y.Author), cmp.Compare(x.Seq, y.Seq))
	})
	return slices.Compact(out)
}

// Entitled reports whether a certificate's device may read a space with
// the given release list: an officer of a released bureau (never a relay).
func Entitled(c *crypto.Certificate, released []string) bool {
	return c.Role == crypto.RoleOfficer && slices.Contains(released, c.Bureau.Fingerprint())
}

// EverReleased reports whether a certificate's device is an officer of a
// bureau some routing record of the space released: the owner's, or one
// any record names. It decides who may write in a space: a withdrawal
// does not make a bureau's earlier writes invalid (docs/crypto.md, "Known
// limits"), and every replica holding the same records decides alike.
func EverReleased(c *crypto.Certificate, owner string, recs []Routing) bool {
	if c.Role != crypto.RoleOfficer {
		return false
	}
	fp := c.Bureau.Fingerprint()
	if fp == owner {
		return true
	}
	for _, r := range recs {
		if slices.Contains(r.Released, fp) {
			return true
		}
	}
	return false
}
