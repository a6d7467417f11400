package agent

import (
	"fieldsync/crdt"
	"fieldsync/crypto"
)

// Resolution says that a value was written by `resolve`: which siblings it
// replaced and the reason given. With the sibling's author, officer and
// bureau, it makes a resolution accountable across bureaus.
type Resolution struct {
	Resolves []string `json:"resolves"`         // the dots of the siblings it replaced
	Reason   string   `json:"reason,omitempty"` // as given to `resolve --reason`
}

// ResolvedField is a field whose current value came from a resolution.
type ResolvedField struct {
	Field    string    `json:"field"`
	Siblings []Sibling `json:"siblings"` // the live values written by resolutions
}

// resolutionOf reads the op behind a dot from its envelope and returns its
// resolution, or nil when the op is not a resolve (or cannot be read here).
// writeMu held (the space's keys).
func (a *Agent) resolutionOf(sp *spaceState, dot crdt.Dot) *Resolution {
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
	r := &Resolution{Resolves: make([]string, 0, len(op.Seen)), Reason: op.Reason}
	for _, d := range op.Seen {
		r.Resolves = append(r.Resolves, d.String())
	}
	return r
}

// withResolutions fills in the resolution of each sibling written by one.
func (a *Agent) withResolutions(sp *spaceState, in []crdt.Sibling, out []Sibling) []Sibling {
	for i := range out {
		out[i].Resolution = a.resolutionOf(sp, in[i].Dot)
	}
	return out
}
