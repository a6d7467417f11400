package agent

import (
	"slices"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
)

// resolutionOf reads the op behind a dot from its envelope and returns its
// resolution, or nil when the op is not a resolve (or cannot be read here).
// stateMu held (the space's keys).
func (a *Agent) resolutionOf(sp *spaceState, dot crdt.Dot) *api.Resolution {
	author := crypto.DeviceID(dot.Replica)
	env, err := a.db.get(envKey(sp.id, author, dot.Seq))
	if err != nil {
		return nil
	}
	cert := a.trustNow().certs[author]
	if cert == nil {
		return nil
	}
	if _, _, err := crypto.Verify(env, cert.Device); err != nil {
		return nil
	}
	oc, err := openChange(env, sp) // either envelope version (segments.go)
	if err != nil || oc.ch == nil {
		return nil
	}
	ch := oc.ch
	i := int(dot.Op)
	if ch.OpIndex != nil { // some segments erased: find the op by its index
		i = slices.Index(ch.OpIndex, dot.Op)
	}
	if i < 0 || i >= len(ch.Ops) {
		return nil
	}
	op := ch.Ops[i]
	if op.Kind != crdt.OpResolve {
		return nil
	}
	r := &api.Resolution{Resolves: make([]string, 0, len(op.Seen)), Reason: op.Reason}
	for _, d := range op.Seen {
		r.Resolves = append(r.Resolves, d.String())
	}
	return r
}

// withResolutions fills in the resolution of each sibling written by one.
func (a *Agent) withResolutions(sp *spaceState, in []crdt.Sibling, out []api.Sibling) []api.Sibling {
	for i := range out {
		out[i].Resolution = a.resolutionOf(sp, in[i].Dot)
	}
	return out
}

// valueWithheld reports whether the op behind a dot is held here without
// its value (its values segment cut or malformed: segments.go).
func (a *Agent) valueWithheld(space crypto.SpaceID, keys crypto.Keyring, dot crdt.Dot) bool {
	env, err := a.db.get(envKey(space, crypto.DeviceID(dot.Replica), dot.Seq))
	if err != nil {
		return false
	}
	oc, err := openChange(env, keys)
	if err != nil || oc.ch == nil || oc.withheld == nil {
		return false
	}
	i := int(dot.Op)
	if oc.ch.OpIndex != nil {
		i = slices.Index(oc.ch.OpIndex, dot.Op)
	}
	return i >= 0 && i < len(oc.withheld) && oc.withheld[i]
}
