package rules

import (
	"bytes"
	"cmp"
	"maps"
	"slices"

	"fieldsync/crypto"
)

// Epoch is what a replica knows of one epoch of a space (docs/crdt.md,
// "Epochs").
type Epoch struct {
	// By maps the fingerprint of each bureau whose devices wrote key
	// shares of the epoch to the union of the epochs those shares list as
	// replaced (empty for version 1 shares).
	By map[string][]crypto.KeyID
	// Mine is set when this replica began the epoch; Own is the list it
	// gave it.
	Mine bool
	Own  []crypto.KeyID
}

// Epochs is what a replica knows of a space's epochs: what the log says of
// each, by key ID, and the space's release list, which decides whose lists
// count (a withdrawn bureau's devices cannot retire the epochs of those
// still entitled).
type Epochs struct {
	Known    map[crypto.KeyID]Epoch
	Released []string
}

// Replaces is what the epoch replaces as far as this replica knows: its
// own list if it began it, and the lists given by devices of released
// bureaus. Unique, in the order of the IDs' text form.
func (es Epochs) Replaces(id crypto.KeyID) []crypto.KeyID {
	e, ok := es.Known[id]
	if !ok {
		return nil
	}
	out := slices.Clone(e.Own)
	for b, l := range e.By {
		if slices.Contains(es.Released, b) {
			out = append(out, l...)
		}
	}
	return sortText(out)
}

// Backed reports whether an epoch may be current: this replica began it,
// or a device of a released bureau wrote a share of it. An epoch key
// wrapped only by devices not entitled to the space may open what they
// wrote, but is never written under.
func (es Epochs) Backed(id crypto.KeyID) bool {
	e, ok := es.Known[id]
	if !ok {
		return false
	}
	if e.Mine {
		return true
	}
	for b := range e.By {
		if slices.Contains(es.Released, b) {
			return true
		}
	}
	return false
}

// Order computes, for the epochs known, which are replaced (named by
// another's list) and how deep each is: depth(E) = 1 + the largest depth
// of the epochs E replaces (an epoch named but not otherwise known counts
// 1). A hostile cycle cannot loop: an epoch met again on the path counts
// 0. The epochs and each list are visited in the order of the IDs' text
// form, so the answer is the same on every replica, and the same as
// agents before this package gave on a cycle.
func (es Epochs) Order() (replaced map[crypto.KeyID]bool, depth map[crypto.KeyID]int) {
	lists := make(map[crypto.KeyID][]crypto.KeyID, len(es.Known))
	for id := range es.Known {
		lists[id] = es.Replaces(id)
	}
	replaced = map[crypto.KeyID]bool{}
	for id, l := range lists {
		for _, r := range l {
			if r != id {
				replaced[r] = true
			}
		}
	}
	depth = map[crypto.KeyID]int{}
	onPath := map[crypto.KeyID]bool{}
	var visit func(id crypto.KeyID) int
	visit = func(id crypto.KeyID) int {
		if d, ok := depth[id]; ok {
			return d
		}
		if onPath[id] {
			return 0
		}
		l, known := lists[id]
		if !known {
			return 1
		}
		onPath[id] = true
		d := 0
		for _, r := range l {
			d = max(d, visit(r))
		}
		onPath[id] = false
		depth[id] = d + 1
		return d + 1
	}
	for _, id := range sortText(slices.Collect(maps.Keys(lists))) {
		visit(id)
	}
	return replaced, depth
}

// Current settles the current epoch among the keys held: of those that
// may be current (Backed; all held if none is), those no known epoch
// replaces (all of them if every one is replaced: a hostile cycle); of
// those the deepest, then the largest key ID. It reports false when no key
// is held. Replicas holding the same keys and knowing the same lists
// settle on the same epoch, whatever order they learnt them in.
func (es Epochs) Current(held []crypto.KeyID) (crypto.KeyID, bool) {
	replaced, depth := es.Order()
	cands := slices.DeleteFunc(slices.Clone(held), func(id crypto.KeyID) bool { return !es.Backed(id) })
	if len(cands) == 0 {
		cands = held
	}
	heads := slices.DeleteFunc(slices.Clone(cands), func(id crypto.KeyID) bool { return replaced[id] })
	if len(heads) == 0 {
		heads = cands
	}
	if len(heads) == 0 {
		return crypto.KeyID{}, false
	}
	return slices.MaxFunc(heads, func(x, y crypto.KeyID) int {
		return cmp.Or(cmp.Compare(depth[x], depth[y]), bytes.Compare(x[:], y[:]))
	}), true
}

// Heads lists what a new epoch replaces: the current epoch first (none if
// current is the zero ID), then every other epoch held that nothing known
// replaces, deepest first, then by descending key ID; at most
// crypto.MaxReplaces.
func (es Epochs) Heads(held []crypto.KeyID, current crypto.KeyID) []crypto.KeyID {
	replaced, depth := es.Order()
	var out []crypto.KeyID
	for _, id := range held {
		if !current.IsZero() && id == current || replaced[id] {
			continue
		}
		out = append(out, id)
	}
	slices.SortFunc(out, func(x, y crypto.KeyID) int {
		return cmp.Or(cmp.Compare(depth[y], depth[x]), bytes.Compare(y[:], x[:]))
	})
	out = slices.Compact(out)
	if !current.IsZero() {
		out = append([]crypto.KeyID{current}, out...)
	}
	if len(out) > crypto.MaxReplaces {
		out = out[:crypto.MaxReplaces]
	}
	return out
}

// ShareList is the list a key share of the epoch carries: what this
// replica knows the epoch replaces, itself left out, sorted by key ID, at
// most crypto.MaxReplaces (the smallest if a hostile author made it
// longer).
func (es Epochs) ShareList(id crypto.KeyID) []crypto.KeyID {
	out := slices.DeleteFunc(es.Replaces(id), func(k crypto.KeyID) bool { return k == id })
	slices.SortFunc(out, func(x, y crypto.KeyID) int { return bytes.Compare(x[:], y[:]) })
	if len(out) > crypto.MaxReplaces {
		out = out[:crypto.MaxReplaces]
	}
	return out
}

// sortText sorts key IDs by their text form (which is not the order of
// their bytes: the base32 alphabet puts digits after letters) and removes
// duplicates, in place.
func sortText(ids []crypto.KeyID) []crypto.KeyID {
	if len(ids) < 2 {
		return ids
	}
	text := make(map[crypto.KeyID]string, len(ids))
	for _, id := range ids {
		if _, ok := text[id]; !ok {
			text[id] = id.String()
		}
	}
	slices.SortFunc(ids, func(x, y crypto.KeyID) int { return cmp.Compare(text[x], text[y]) })
	return slices.Compact(ids)
}
