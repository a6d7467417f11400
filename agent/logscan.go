package agent

import (
	"errors"
	"slices"

	"fieldsync/crypto"
	fsync "fieldsync/sync"
)

// scanToSend calls fn with the envelopes of the space above have, up to
// heads, each author's in seq order. An envelope corrupt in this store ends
// that author's run (the receiver would see a gap): onCorrupt counts it.
func (a *Agent) scanToSend(space crypto.SpaceID, have map[crypto.DeviceID]uint64, heads fsync.Vector, fn func([]byte) error, onCorrupt func()) error {
	authors := make([]fsync.PeerID, 0, len(heads))
	for author, seq := range heads {
		if seq > have[crypto.DeviceID(author)] {
			authors = append(authors, author)
		}
	}
	slices.SortFunc(authors, func(x, y fsync.PeerID) int { return x.Compare(y) })
	for _, author := range authors {
		dev := crypto.DeviceID(author)
		corrupt, err := a.readLog(space, dev, have[dev]+1, heads[author], fn)
		if corrupt {
			onCorrupt()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// readLog calls fn with the envelopes of author in space from seq from to
// seq to, in order. An envelope corrupt in the store is counted and ends
// the run: corrupt is true.
func (a *Agent) readLog(space crypto.SpaceID, author crypto.DeviceID, from, to uint64, fn func(env []byte) error) (corrupt bool, err error) {
	err = a.db.kv.ScanFrom(envAuthorPrefix(space, author), envKey(space, author, from), func(k, sealed []byte) error {
		_, _, seq, ok := parseEnvKey(k)
		if !ok || seq > to {
			return errStopScan
		}
		env, err := a.db.open(k, sealed)
		if err != nil {
			a.countCorrupt(k)
			corrupt = true
			return errStopScan
		}
		return fn(env)
	})
	if errors.Is(err, errStopScan) {
		err = nil
	}
	return corrupt, err
}
