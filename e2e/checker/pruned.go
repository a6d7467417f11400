package checker

import "encoding/json"

// Pruned values (docs/design.md §7, "Bounded storage"): a device that ran
// `fieldsync compact` lists a superseded op in `history` with "pruned": true
// and no value or reason. The oracle names ops by their values, and
// compares histories between devices byte for byte, so restorePruned fills
// each pruned op's value and reason in from a device that still holds that
// envelope whole (same author, seq, record and position: the ops of a
// change are listed in the same order everywhere) and drops the flag. What
// is still checked on the pruning device: the op's kind, field, resolves
// and dot, its state, and that a pruned op is one some device holds whole.
// A pruned op no device holds whole keeps its empty value, and the oracle
// then reports it (as a phantom, or its write as lost): unverifiable.
func restorePruned(nodes []Node) (filled, missing int) {
	type slot struct {
		author string
		seq    float64
		record string
		i      int
	}
	parse := func(b []byte) []map[string]any {
		var h []map[string]any
		if json.Unmarshal(b, &h) != nil {
			return nil
		}
		return h
	}
	ops := func(e map[string]any) []any { o, _ := e["ops"].([]any); return o }
	key := func(e map[string]any, rec string, i int) slot {
		a, _ := e["author"].(string)
		s, _ := e["seq"].(float64)
		return slot{a, s, rec, i}
	}
	whole := map[slot]map[string]any{}
	for _, n := range nodes {
		for rec, b := range n.Histories {
			for _, e := range parse(b) {
				for i, o := range ops(e) {
					op, _ := o.(map[string]any)
					if p, _ := op["pruned"].(bool); op != nil && !p {
						whole[key(e, rec, i)] = op
					}
				}
			}
		}
	}
	for _, n := range nodes {
		for rec, b := range n.Histories {
			h := parse(b)
			changed := false
			for _, e := range h {
				for i, o := range ops(e) {
					op, _ := o.(map[string]any)
					if p, _ := op["pruned"].(bool); op == nil || !p {
						continue
					}
					w := whole[key(e, rec, i)]
					if w == nil {
						missing++
						continue
					}
					for _, f := range []string{"value", "value_base64", "reason"} {
						if v, ok := w[f]; ok {
							op[f] = v
						}
					}
					delete(op, "pruned")
					filled++
					changed = true
				}
			}
			if changed {
				if out, err := json.Marshal(h); err == nil { // decoded JSON: it re-encodes
					n.Histories[rec] = out
				}
			}
		}
	}
	return filled, missing
}
