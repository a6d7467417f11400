package agent

import (
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
	_, body, err := crypto.Open(env, cert.Device, sp)
	if err != nil {
		return nil
	}
	ch, err := crdt.UnmarshalChange(body)
	if err != nil || int(dot.Op) >= len(ch.Ops) {
		return nil
	}
	op := ch.Ops[dot.Op]
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
