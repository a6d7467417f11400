package agent

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"fieldsync/crypto"
	"fieldsync/internal/rules"
)

// Forks (docs/design.md §5): a device that signs two different envelopes for the
// same place in its log — a cloned or compromised laptop — is frozen in that
// space at the seq where its branches part. Every replica that learns the
// evidence keeps only the author's envelopes below that seq, rebuilds the
// space's state without the rest, refuses anything more from it there, and
// passes the evidence on, so all replicas converge on the same decision.
//
// Evidence is a pair of envelopes of one author in one space, both signed
// by it, that cannot both be in one honest log: the same seq with different
// contents, or consecutive seqs where the later one does not chain to the
// earlier. The freeze point is the lower seq; with several pieces of
// evidence the lowest wins.

// forkMagic starts a fork-evidence blob (a mesh object, docs/storage.md).
var forkMagic = []byte("fieldsync-fork-evidence-v1\n")

func encodeEvidence(e1, e2 []byte) []byte {
	b := append([]byte(nil), forkMagic...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(e1)))
	b = append(b, e1...)
	return append(b, e2...)
}

func parseEvidence(blob []byte) (e1, e2 []byte, err error) {
	if !bytes.HasPrefix(blob, forkMagic) {
		return nil, nil, errors.New("not fork evidence")
	}
	rest := blob[len(forkMagic):]
	if len(rest) < 4 {
		return nil, nil, errors.New("fork evidence truncated")
	}
	n := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	if uint64(n) > uint64(len(rest)) || n > crypto.MaxEnvelopeSize {
		return nil, nil, errors.New("fork evidence truncated")
	}
	return rest[:n], rest[n:], nil
}

// forkPoint checks that two envelopes prove a fork and returns where the
// author's log parts. Both must verify against the author's certificate.
func (a *Agent) forkPoint(e1, e2 []byte) (crypto.Header, uint64, error) {
	h1, err := crypto.ParseHeader(e1)
	if err != nil {
		return h1, 0, err
	}
	h2, err := crypto.ParseHeader(e2)
	if err != nil {
		return h1, 0, err
	}
	if h1.Seq > h2.Seq {
		e1, e2, h1, h2 = e2, e1, h2, h1
	}
	if h1.Space != h2.Space || h1.Author != h2.Author {
		return h1, 0, errors.New("fork evidence: envelopes of different logs")
	}
	cert := a.trustNow().certs[h1.Author]
	if cert == nil {
		return h1, 0, fmt.Errorf("fork evidence: no certificate for device %s", h1.Author)
	}
	for _, e := range [][]byte{e1, e2} {
		if _, _, err := crypto.Verify(e, cert.Device); err != nil {
			return h1, 0, fmt.Errorf("fork evidence: %w", err)
		}
	}
	seq, err := rules.ForkPoint(h1, crypto.Hash(e1), h2, crypto.Hash(e2))
	return h1, seq, err
}

// frozenAt returns the seq from which the author is frozen in the space (0: not frozen).
func (a *Agent) frozenAt(space crypto.SpaceID, author crypto.DeviceID) uint64 {
	return a.trustNow().frozen[gapKey{space, author}]
}

// freeze applies fork evidence: it keeps the evidence, truncates the
// author's log in the space below the fork, and rebuilds the space's state.
// It reports whether the evidence moved the freeze point. stateMu held, with
// nothing of this agent in flight (the caller ran beginWrite); it reloads.
func (a *Agent) freeze(e1, e2 []byte) (bool, error) {
	h, seq, err := a.forkPoint(e1, e2)
	if err != nil {
		return false, err
	}
	if e := a.erasedSpace(h.Space); e != nil {
		return false, a.rejectErased(h.Space, e) // its envelopes are not kept, evidence included
	}
	if _, moved := rules.FreezePoint(a.frozenAt(h.Space, h.Author), seq); !moved {
		return false, nil
	}
	// Settle everything in flight before editing the log directly.
	a.com.Barrier()
	evidence := []kvEntry{a.db.entry(forkKey(h.Space, h.Author, 0), encodeEvidence(e1, e2))}
	a.editTrustLocked(func(tt *trustTables) { tt.frozen[gapKey{h.Space, h.Author}] = seq })
	if sp := a.spaces[h.Space]; sp != nil {
		if err := a.cutLog(sp, h.Author, seq, evidence); err != nil {
			return false, fmt.Errorf("freeze: %w", err)
		}
	} else if errs := a.db.kv.CommitGroups([][]kvEntry{evidence}); errs[0] != nil {
		return false, errs[0]
	}
	a.log.Error("forked device frozen in a space: two different envelopes signed for one place in its log (a cloned or compromised device)",
		"device", h.Author.String(), "from_seq", seq)
	return true, a.reload()
}

// ingestEvidence is the mesh-object path of fork evidence.
func (a *Agent) ingestEvidence(blob []byte) (bool, error) {
	e1, e2, err := parseEvidence(blob)
	if err != nil {
		return false, err
	}
	var moved bool
	err = a.withWrite(func(*tx) error {
		moved, err = a.freeze(e1, e2) // freeze writes and reloads itself
		return err
	})
	return moved, err
}

// evidenceBlobs returns the fork evidence this agent holds.
func (a *Agent) evidenceBlobs() [][]byte {
	var out [][]byte
	a.db.scan([]byte{pfxFork}, func(k, v []byte) error {
		out = append(out, v)
		return nil
	}, a.countCorrupt)
	return out
}
