package agent

import (
	"slices"

	"fieldsync/agent/api"
	"fieldsync/crypto"
)

// unreadableIn counts the envelopes of a space this device holds but cannot
// open yet — kept for want of their epoch key (the pending markers that
// drainPending applies once it arrives) — and lists their authors' device
// IDs, sorted, and how many others wait, openable, for a dependency or an
// upgrade (causal.go). Relays keep no markers: they open nothing by design.
func (a *Agent) unreadableIn(space crypto.SpaceID) (n int, authors []string, waiting int, err error) {
	prefix := append([]byte{pfxPending}, space[:]...)
	seen := map[crypto.DeviceID]bool{}
	err = a.db.scan(prefix, func(k, v []byte) error {
		if len(k) != 1+16+16+8 {
			return nil
		}
		if len(v) > 0 && v[0] != waitKey {
			waiting++
			return nil
		}
		n++
		var dev crypto.DeviceID
		copy(dev[:], k[17:33])
		if !seen[dev] {
			seen[dev] = true
			authors = append(authors, dev.String())
		}
		return nil
	}, a.countCorrupt)
	slices.Sort(authors)
	return n, authors, waiting, err
}

// unreadable is, for every space with envelopes this device cannot open
// yet, how many and from whom (Status; docs/api.md). A space whose count
// cannot be read is left out (the store's error shows elsewhere).
func (a *Agent) unreadable() []api.UnreadableSpace {
	out := []api.UnreadableSpace{}
	if a.cfg.Relay {
		return out
	}
	for _, id := range a.SpaceIDs() {
		n, authors, waiting, err := a.unreadableIn(id)
		if err != nil || n+waiting == 0 {
			continue
		}
		if authors == nil {
			authors = []string{}
		}
		out = append(out, api.UnreadableSpace{Space: id.String(), Envelopes: n, Authors: authors, Waiting: waiting})
	}
	return out
}
