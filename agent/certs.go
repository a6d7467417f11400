package agent

import (
	"fmt"

	"fieldsync/crypto"
)

// AddCertificate stores a device certificate from a trusted bureau, so that
// the device's envelopes can be verified. It reports whether it was new.
func (a *Agent) AddCertificate(blob []byte) (bool, error) {
	c, err := crypto.ParseCertificate(blob)
	if err != nil {
		return false, fmt.Errorf("certificate: %w", err)
	}
	if _, ok := a.trust.Lookup(c.Bureau.Fingerprint()); !ok {
		return false, fmt.Errorf("certificate of device %s: %w (bureau %s)", c.Device.ID(), crypto.ErrUntrusted, c.Bureau.Name)
	}
	id := c.Device.ID()
	a.statMu.Lock()
	old := a.certs[id]
	a.statMu.Unlock()
	if old != nil && string(old.MarshalBinary()) == string(c.MarshalBinary()) {
		return false, nil
	}
	if err := a.beginWrite(); err != nil {
		return false, err
	}
	a.statMu.Lock()
	a.certs[id] = c
	a.statMu.Unlock()
	if err := a.commitWrite([]kvEntry{a.db.entry(certKey(id), c.MarshalBinary())}); err != nil {
		return false, err
	}
	return true, nil
}

// Certificates returns every certificate this agent knows, binary form.
func (a *Agent) Certificates() [][]byte {
	a.statMu.Lock()
	defer a.statMu.Unlock()
	out := make([][]byte, 0, len(a.certs))
	for _, c := range a.certs {
		out = append(out, c.MarshalBinary())
	}
	return out
}
