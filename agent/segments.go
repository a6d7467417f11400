package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"fieldsync/crdt"
	"fieldsync/crypto"
)

// Segmented changes (docs/format.md "Change segment", docs/crypto.md §2
// "Envelope version 2"): a change this device writes is sealed as one
// segment per record it touches, so that erasing a record (docs/design.md
// §6, "Erasing one record") can replace that record's segments by their
// hashes in every envelope that carries them, leaving the signature, the
// chain and the other records' segments intact.

// segmentVersion is the first byte of a segment's plaintext in the
// first layout (one segment per record, values inside); it stays readable.
const segmentVersion = 1

// segmentVersion2 is the layout this build writes (docs/format.md, "Change
// segment (version 2)"): two segments per record, a skeleton (the ops
// without their values: kinds, fields, set elements, seen dots,
// dependencies) and its values, so that a value can be pruned — its
// segment replaced by its hash — while every seen dot stays
// (docs/design.md §7, "Bounded storage").
const segmentVersion2 = 2

// The role byte of a version 2 segment.
const (
	roleSkeleton = 1
	roleValues   = 2
)

// carriesValue reports whether an op kind's value (and a resolve's
// reason) sit in the values segment. Set elements stay in the skeleton:
// they are the set's keys, which a remove names.
func carriesValue(k crdt.OpKind) bool {
	return k == crdt.OpPut || k == crdt.OpResolve || k == crdt.OpNoteAdd
}

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
// plaintexts, two per record (docs/format.md, "Change segment (version
// 2)"): the skeleton, u8 version 2 · u8 role 1 · u32 index of the record's
// first op in ch · a crdt change of the same author, seq and HLC holding
// that record's ops without their values and the dependencies they name;
// then the values, u8 version 2 · u8 role 2 · u32 the same index ·
// uvarint n · n × (uvarint length, value · uvarint length, reason), one
// entry per op of the skeleton (empty for kinds that carry no value).
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
		skel := make([]crdt.Op, end-start)
		copy(skel, ch.Ops[start:end])
		vals := binary.BigEndian.AppendUint32([]byte{segmentVersion2, roleValues}, uint32(start))
		vals = binary.AppendUvarint(vals, uint64(len(skel)))
		for i := range skel {
			o := &skel[i]
			if carriesValue(o.Kind) {
				vals = binary.AppendUvarint(vals, uint64(len(o.Value)))
				vals = append(vals, o.Value...)
				vals = binary.AppendUvarint(vals, uint64(len(o.Reason)))
				vals = append(vals, o.Reason...)
				o.Value, o.Reason = nil, ""
			} else {
				vals = append(vals, 0, 0)
			}
		}
		part := crdt.Change{Author: ch.Author, Seq: ch.Seq, HLC: ch.HLC, Ops: skel, Deps: deps}
		b := binary.BigEndian.AppendUint32([]byte{segmentVersion2, roleSkeleton}, uint32(start))
		b, err := part.AppendBinary(b)
		if err != nil {
			return nil, err
		}
		segs = append(segs, b, vals)
		start = end
	}
	if len(segs) == 0 || len(segs) > crypto.MaxSegments {
		return nil, fmt.Errorf("%w: a change of %d records (at most %d)", ErrBadRequest, len(segs)/2, crypto.MaxSegments/2)
	}
	return segs, nil
}

// openedChange is a change envelope opened with the space's keys.
type openedChange struct {
	ch     *crdt.Change // the change (nil for an agent body)
	agent  []byte       // a version 1 envelope's agent body (receipts.go)
	erased int          // segments erased (version 2)
	recs   []crdt.RecordID
	// segRecord[i] is the record of live segment i ("" if erased). In the
	// version 2 layout both segments of a record name it while its
	// skeleton is live, its values segment even when cut.
	segRecord []crdt.RecordID
	// withheld[i] is set when op i of ch carries a value (put, resolve,
	// note) that this copy does not hold: its values segment was cut
	// (pruned: docs/design.md §7, "Bounded storage") or is malformed. The
	// op applies without its value; nil when every value is held.
	withheld []bool
	// valuesCut counts the records whose values segment is cut (pruned);
	// valuesBad those whose values segment is held but malformed.
	valuesCut, valuesBad int
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
// dependencies of the segments must agree. The layout (one segment per
// record, or a skeleton and values per record) is the version of the live
// segments; an envelope mixing them is malformed.
func joinSegments(h crypto.Header, segs []crypto.Segment) (*openedChange, error) {
	layout := byte(0)
	for _, s := range segs {
		if !s.Erased && len(s.Plain) > 0 {
			layout = s.Plain[0]
			break
		}
	}
	pairs := layout == segmentVersion2
	if pairs && len(segs)%2 != 0 {
		return nil, fmt.Errorf("%w: %d segments, not pairs", errSegments, len(segs))
	}
	out := &openedChange{segRecord: make([]crdt.RecordID, len(segs))}
	ch := &crdt.Change{Author: crdt.ReplicaID(h.Author), Seq: h.Seq, HLC: crdt.UnpackTimestamp(h.HLC)}
	var index []uint32
	next := uint32(0)
	deps := map[crdt.ReplicaID]crdt.Dep{}
	seenRec := map[crdt.RecordID]bool{}
	skelErased := 0
	step := 1
	if pairs {
		step = 2
	}
	for i := 0; i < len(segs); i += step {
		s := segs[i]
		if pairs && segs[i+1].Erased {
			out.erased++
		}
		if s.Erased {
			out.erased++
			skelErased++
			continue // a values segment without its skeleton says nothing
		}
		p := s.Plain
		var base uint32
		var body []byte
		switch {
		case len(p) == 0:
			return nil, fmt.Errorf("%w: segment %d is empty", errSegments, i)
		case p[0] == segmentVersion && !pairs:
			if len(p) < 5 {
				return nil, fmt.Errorf("%w: segment %d is %d bytes", errSegments, i, len(p))
			}
			base, body = binary.BigEndian.Uint32(p[1:5]), p[5:]
		case p[0] == segmentVersion2 && pairs:
			if len(p) < 6 || p[1] != roleSkeleton {
				return nil, fmt.Errorf("%w: segment %d is not a skeleton", errSegments, i)
			}
			base, body = binary.BigEndian.Uint32(p[2:6]), p[6:]
		case p[0] == segmentVersion || p[0] == segmentVersion2:
			return nil, fmt.Errorf("%w: segment %d mixes layouts", errSegments, i)
		default:
			return nil, fmt.Errorf("segment %d of version %d: %w", i, p[0], crdt.ErrUnknownVersion)
		}
		part, err := crdt.UnmarshalChange(body)
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
			if pairs && (len(o.Value) > 0 || o.Reason != "") && carriesValue(o.Kind) {
				return nil, fmt.Errorf("%w: skeleton %d holds a value", errSegments, i)
			}
		}
		if seenRec[rec] {
			return nil, fmt.Errorf("%w: two segments name one record", errSegments)
		}
		seenRec[rec] = true
		if base < next || (skelErased == 0 && base != next) || uint64(base)+uint64(len(part.Ops)) > crdt.MaxOpsPerChange {
			return nil, fmt.Errorf("%w: segment %d starts at op %d", errSegments, i, base)
		}
		if pairs {
			out.segRecord[i+1] = rec
			v := segs[i+1]
			switch {
			case v.Erased:
				out.valuesCut++
				out.withhold(len(ch.Ops), part.Ops)
			case !fillValues(v.Plain, base, part.Ops):
				out.valuesBad++
				out.withhold(len(ch.Ops), part.Ops)
			}
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
	if skelErased > 0 {
		ch.OpIndex = index
	}
	if out.withheld != nil && len(out.withheld) < len(ch.Ops) {
		out.withheld = append(out.withheld, make([]bool, len(ch.Ops)-len(out.withheld))...)
	}
	if err := ch.Validate(); err != nil {
		return nil, err
	}
	out.ch = ch
	return out, nil
}

// withhold marks the value-carrying ops of one record, whose first op is
// op at of the joined change, as applied without their value.
func (oc *openedChange) withhold(at int, ops []crdt.Op) {
	if len(oc.withheld) < at+len(ops) {
		oc.withheld = append(oc.withheld, make([]bool, at+len(ops)-len(oc.withheld))...)
	}
	for j := range ops {
		if carriesValue(ops[j].Kind) {
			oc.withheld[at+j] = true
		}
	}
}

// fillValues parses a version 2 values segment and, if it is well formed
// and matches its skeleton's ops (same first index, one entry per op, empty
// for kinds without a value, each value valid for its op), sets the ops'
// values and reasons; otherwise it leaves them empty and returns false. A
// malformed values segment never makes the change a no-op: a replica
// holding the envelope with that segment cut (pruned, by anyone) must
// reach the same decision, so the ops apply without values everywhere.
func fillValues(p []byte, base uint32, ops []crdt.Op) bool {
	if len(p) < 6 || p[0] != segmentVersion2 || p[1] != roleValues || binary.BigEndian.Uint32(p[2:6]) != base {
		return false
	}
	p = p[6:]
	n, k := binary.Uvarint(p)
	if k <= 0 || n != uint64(len(ops)) {
		return false
	}
	p = p[k:]
	field := func() ([]byte, bool) {
		l, k := binary.Uvarint(p)
		if k <= 0 || l > uint64(len(p)-k) {
			return nil, false
		}
		b := p[k : k+int(l)]
		p = p[k+int(l):]
		return b, true
	}
	vals := make([][2][]byte, len(ops))
	for i := range ops {
		v, ok := field()
		if !ok {
			return false
		}
		r, ok := field()
		if !ok {
			return false
		}
		o := &ops[i]
		switch {
		case !carriesValue(o.Kind) && (len(v) > 0 || len(r) > 0),
			len(v) > crdt.MaxValueBytes,
			o.Kind == crdt.OpNoteAdd && !utf8.Valid(v),
			len(r) > 0 && (o.Kind != crdt.OpResolve || len(r) > crdt.MaxNameBytes || !utf8.Valid(r)):
			return false
		}
		vals[i] = [2][]byte{v, r}
	}
	if len(p) != 0 {
		return false
	}
	for i := range ops {
		if carriesValue(ops[i].Kind) {
			ops[i].Value, ops[i].Reason = vals[i][0], string(vals[i][1])
		}
	}
	return true
}
