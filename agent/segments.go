package agent

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"fieldsync/crdt"
	"fieldsync/crypto"
)

// Segmented changes (docs/format.md "Change segment", docs/crypto.md §2
// "Envelope version 2"): a change this device writes is sealed as one
// segment per record it touches, so that erasing a record (docs/design.md
// §6, "Erasing one record") can replace that record's segments by their
// hashes in every envelope that carries them, leaving the signature, the
// chain and the other records' segments intact.

// segmentVersion is the first byte of a segment's plaintext.
const segmentVersion = 1

// errSegments marks a segmented change whose segments do not make one
// valid change (a hostile or broken writer): a no-op on every replica.
var errSegments = errors.New("malformed segmented change")

// groupOpsByRecord orders ops so that each record's ops are contiguous, in
// the order each record first appears (stable otherwise): a change's ops
// then split into one segment per record. The order of ops within a change
// means nothing but their dots, which are given after this.
func groupOpsByRecord(ops []crdt.Op) []crdt.Op {
	first := map[crdt.RecordID]int{}
	grouped := true
	for i := range ops {
		r := ops[i].Record
		if f, ok := first[r]; !ok {
			first[r] = i
		} else if f != i-1 && ops[i-1].Record != r {
			grouped = false
		}
	}
	if grouped {
		return ops
	}
	out := slices.Clone(ops)
	slices.SortStableFunc(out, func(x, y crdt.Op) int { return first[x.Record] - first[y.Record] })
	return out
}

// changeSegments splits ch (ops grouped by record) into segment
// plaintexts: u8 version · u32 index of the segment's first op in ch ·
// a crdt change of the same author, seq and HLC holding that record's ops
// and the dependencies they name.
func changeSegments(ch *crdt.Change) ([][]byte, error) {
	var segs [][]byte
	for start := 0; start < len(ch.Ops); {
		end := start + 1
		for end < len(ch.Ops) && ch.Ops[end].Record == ch.Ops[start].Record {
			end++
		}
		named := map[crdt.ReplicaID]bool{}
		for _, o := range ch.Ops[start:end] {
			for _, d := range o.Seen {
				named[d.Replica] = true
			}
		}
		var deps []crdt.Dep
		for _, d := range ch.Deps {
			if named[d.Replica] {
				deps = append(deps, d)
			}
		}
		part := crdt.Change{Author: ch.Author, Seq: ch.Seq, HLC: ch.HLC, Ops: ch.Ops[start:end], Deps: deps}
		b := binary.BigEndian.AppendUint32([]byte{segmentVersion}, uint32(start))
		b, err := part.AppendBinary(b)
		if err != nil {
			return nil, err
		}
		segs = append(segs, b)
		start = end
	}
	if len(segs) == 0 || len(segs) > crypto.MaxSegments {
		return nil, fmt.Errorf("%w: a change of %d records (at most %d)", ErrBadRequest, len(segs), crypto.MaxSegments)
	}
	return segs, nil
}

// sealChange seals ch as this device's next envelope in the space: a
// version 2 (segmented) envelope. stateMu held.
func (a *Agent) sealChange(sp *spaceState, ch *crdt.Change, key *crypto.SpaceKey) ([]kvEntry, error) {
	segs, err := changeSegments(ch)
	if err != nil {
		return nil, err
	}
	return a.appendSealed(sp, crypto.KindChange, ch.HLC, func(h crypto.Header) ([]byte, error) {
		return crypto.SealSegments(h, segs, key, a.id, rand.Reader)
	})
}

// openedChange is a change envelope opened with the space's keys.
type openedChange struct {
	ch     *crdt.Change // the change (nil for an agent body)
	agent  []byte       // a version 1 envelope's agent body (receipts.go)
	erased int          // segments erased (version 2)
	recs   []crdt.RecordID
	// segRecord[i] is the record of live segment i ("" if erased).
	segRecord []crdt.RecordID
}

// errOpen wraps a crypto error of opening: the envelope does not open under
// its epoch key (a no-op everywhere).
type errOpen struct{ err error }

func (e errOpen) Error() string { return "does not open under its epoch key: " + e.err.Error() }
func (e errOpen) Unwrap() error { return e.err }

// openChange opens and decodes a verified change envelope of either
// version. Errors: errOpen (does not open), crdt.ErrUnknownVersion (a newer
// format: wait for an upgrade), errSegments or another crdt error (a
// no-op). It does not check the change against the header: callers do.
func openChange(env []byte, keys crypto.Keyring) (*openedChange, error) {
	h, segs, err := crypto.OpenSegments(env, keys)
	if err != nil {
		return nil, errOpen{err}
	}
	if h.Version != crypto.HeaderVersion2 {
		body := segs[0].Plain
		if len(body) > 0 && body[0] >= agentBodyMin {
			return &openedChange{agent: body}, nil
		}
		ch, err := crdt.UnmarshalChange(body)
		if err != nil {
			return nil, err
		}
		return &openedChange{ch: ch}, nil
	}
	return joinSegments(h, segs)
}

// joinSegments decodes a version 2 change's live segments into one change.
// Each segment must be of the header's author, seq and HLC, name one record
// no other segment names, and start at or after the previous one's end;
// with nothing erased they must cover the ops from 0 without gaps. The
// dependencies of the segments must agree.
func joinSegments(h crypto.Header, segs []crypto.Segment) (*openedChange, error) {
	out := &openedChange{segRecord: make([]crdt.RecordID, len(segs))}
	ch := &crdt.Change{Author: crdt.ReplicaID(h.Author), Seq: h.Seq, HLC: crdt.UnpackTimestamp(h.HLC)}
	var index []uint32
	next := uint32(0)
	deps := map[crdt.ReplicaID]crdt.Dep{}
	seenRec := map[crdt.RecordID]bool{}
	for i, s := range segs {
		if s.Erased {
			out.erased++
			continue
		}
		p := s.Plain
		if len(p) < 5 {
			return nil, fmt.Errorf("%w: segment %d is %d bytes", errSegments, i, len(p))
		}
		if p[0] != segmentVersion {
			return nil, fmt.Errorf("segment %d of version %d: %w", i, p[0], crdt.ErrUnknownVersion)
		}
		base := binary.BigEndian.Uint32(p[1:5])
		part, err := crdt.UnmarshalChange(p[5:])
		if err != nil {
			return nil, err
		}
		if part.Author != ch.Author || part.Seq != ch.Seq || part.HLC != ch.HLC {
			return nil, fmt.Errorf("%w: segment %d does not match its signed header", errSegments, i)
		}
		if len(part.Ops) == 0 {
			return nil, fmt.Errorf("%w: segment %d has no op", errSegments, i)
		}
		rec := part.Ops[0].Record
		for _, o := range part.Ops {
			if o.Record != rec {
				return nil, fmt.Errorf("%w: segment %d names two records", errSegments, i)
			}
		}
		if seenRec[rec] {
			return nil, fmt.Errorf("%w: two segments name one record", errSegments)
		}
		seenRec[rec] = true
		if base < next || (out.erased == 0 && base != next) || uint64(base)+uint64(len(part.Ops)) > crdt.MaxOpsPerChange {
			return nil, fmt.Errorf("%w: segment %d starts at op %d", errSegments, i, base)
		}
		for j := range part.Ops {
			index = append(index, base+uint32(j))
		}
		next = base + uint32(len(part.Ops))
		ch.Ops = append(ch.Ops, part.Ops...)
		for _, d := range part.Deps {
			if o, ok := deps[d.Replica]; ok && o != d {
				return nil, fmt.Errorf("%w: segments disagree on a dependency", errSegments)
			}
			deps[d.Replica] = d
		}
		out.segRecord[i] = rec
		out.recs = append(out.recs, rec)
	}
	for _, d := range deps {
		ch.Deps = append(ch.Deps, d)
	}
	slices.SortFunc(ch.Deps, func(x, y crdt.Dep) int { return x.Replica.Compare(y.Replica) })
	if out.erased > 0 {
		ch.OpIndex = index
	}
	if err := ch.Validate(); err != nil {
		return nil, err
	}
	out.ch = ch
	return out, nil
}
