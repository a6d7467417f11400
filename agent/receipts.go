package agent

// Signed delivery receipts (issue 16 item 4; docs/design.md §8,
// docs/format.md "Receipt and receipt policy").
//
// A receipt is an envelope of the receiving device's own log in the space,
// of kind change and sealed under the space's epoch key like any change:
// relays and non-members see a change envelope (size, time), never who read
// what. Its plaintext is not a crdt change but an agent body whose first
// byte is ≥ 0x80 (bodyReceiptV1), which crdt never uses as a change
// version: an agent before receipts reads it as a change of a newer format
// and keeps it waiting for an upgrade (docs/design.md §5), which blocks
// nothing (no change names a receipt as seen). The space's receipt policy
// is a second agent body (bodyPolicyV1), written only by officers of the
// owning bureau, last writer wins by (HLC, device). A third, the space's
// retention policy (bodyRetentionV1, 0x82), follows the same rules
// (retention.go); 0x83 and above are newer bodies waiting for an upgrade.

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
)

// Agent bodies sealed as changes: their first byte is their format and
// version; crdt's change versions stay below 0x80.
const (
	bodyReceiptV1 = 0x80 // a delivery receipt
	bodyPolicyV1  = 0x81 // a space's receipt policy
	// bodyRetentionV1 is a space's retention policy (retention.go); 0x83
	// and above are free: an agent that does not know one keeps it
	// waiting for an upgrade.
	bodyRetentionV1 = 0x82
	// agentBodyMin is the first byte from which a change's plaintext is an
	// agent body rather than a crdt change.
	agentBodyMin = 0x80
)

// maxReceiptRanges bounds the ranges of one receipt (and so its size:
// ≤ 256 × ~55 bytes); a batch that names more is split.
const maxReceiptRanges = 256

// maxReceiptDue bounds the changes a space keeps noted for receipts between
// two batches; beyond it, changes get no receipt (logged).
const maxReceiptDue = 1 << 16

// pfxOwed keys the receipts a device owes and has not written yet, per
// space: o space author seq(8) -> the envelope ID (32) of that change. The
// note is stored in the transaction that applies the change and deleted in
// the one that writes its receipt, so an agent stopped between the two
// (killed, a commit failure, a crash) writes it after its next start.
const pfxOwed = 'o'

func owedKey(space crypto.SpaceID, author crypto.DeviceID, seq uint64) []byte {
	k := append(append([]byte{pfxOwed}, space[:]...), author[:]...)
	return binary.BigEndian.AppendUint64(k, seq)
}

// loadOwed reads the receipts owed into the spaces being loaded; a note of
// a space not held (its state gone) is ignored, a malformed one skipped.
// It reports whether any is owed.
func (a *Agent) loadOwed(m spaceSet, erased map[crypto.SpaceID]bool) (bool, error) {
	owed := false
	err := a.db.scan([]byte{pfxOwed}, func(k, v []byte) error {
		if len(k) != 1+16+16+8 || len(v) != 32 || ofErased(erased, k) {
			return nil
		}
		var id crypto.SpaceID
		var d dueReceipt
		copy(id[:], k[1:17])
		copy(d.author[:], k[17:33])
		d.seq = binary.BigEndian.Uint64(k[33:])
		copy(d.id[:], v)
		sp := m[id]
		if sp == nil || len(sp.receiptDue) >= maxReceiptDue {
			return nil
		}
		sp.receiptDue = append(sp.receiptDue, d)
		owed = true
		return nil
	}, a.countCorrupt)
	return owed, err
}

// owedDeletes are the entries that delete the notes of receipts now written
// (or no longer owed: the policy was turned off).
func owedDeletes(space crypto.SpaceID, due []dueReceipt) []kvEntry {
	out := make([]kvEntry, 0, len(due))
	for _, d := range due {
		out = append(out, kvEntry{Key: owedKey(space, d.author, d.seq), Del: true})
	}
	return out
}

// receiptFlushBatch bounds the receipts written in one transaction.
const receiptFlushBatch = 512

// pfxReceipt keys the receipts held, per space:
// r space receiptAuthor seq(8) -> hlc(8) ‖ receipt body.
const pfxReceipt = 'r'

func receiptKey(space crypto.SpaceID, author crypto.DeviceID, seq uint64) []byte {
	k := append(append([]byte{pfxReceipt}, space[:]...), author[:]...)
	return binary.BigEndian.AppendUint64(k, seq)
}

// receiptRange names author's log from first to last; id is the envelope ID
// of last, which binds the whole range: each envelope's header names its
// predecessor's ID (docs/crypto.md §2).
type receiptRange struct {
	author      crypto.DeviceID
	first, last uint64
	id          [32]byte
}

// Receipt policy modes as stored in the policy body.
const (
	policyOff       = 0
	policyPerChange = 1
	policyPerBatch  = 2
)

var policyNames = map[byte]string{policyOff: api.ReceiptsOff, policyPerChange: api.ReceiptsPerChange, policyPerBatch: api.ReceiptsPerBatch}

func parsePolicyName(s string) (byte, bool) {
	for m, n := range policyNames {
		if n == s {
			return m, true
		}
	}
	return 0, false
}

var errReceiptBody = errors.New("malformed receipt body")

func marshalReceipt(rs []receiptRange) []byte {
	b := []byte{bodyReceiptV1}
	b = binary.AppendUvarint(b, uint64(len(rs)))
	for _, r := range rs {
		b = append(b, r.author[:]...)
		b = binary.AppendUvarint(b, r.first)
		b = binary.AppendUvarint(b, r.last)
		b = append(b, r.id[:]...)
	}
	return b
}

// parseReceipt decodes a receipt body strictly: 1..maxReceiptRanges
// ranges, sorted by (author, first), not overlapping, first ≥ 1, last ≥
// first, minimal uvarints, no trailing bytes. It never panics.
func parseReceipt(b []byte) ([]receiptRange, error) {
	if len(b) == 0 || b[0] != bodyReceiptV1 {
		return nil, fmt.Errorf("%w: not a receipt", errReceiptBody)
	}
	b = b[1:]
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 || n != len(binary.AppendUvarint(nil, v)) {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	n, ok := uv()
	if !ok || n == 0 || n > maxReceiptRanges || n > uint64(len(b))/(16+1+1+32) {
		return nil, fmt.Errorf("%w: bad range count", errReceiptBody)
	}
	rs := make([]receiptRange, 0, n)
	for i := uint64(0); i < n; i++ {
		var r receiptRange
		if len(b) < 16 {
			return nil, fmt.Errorf("%w: truncated", errReceiptBody)
		}
		copy(r.author[:], b[:16])
		b = b[16:]
		var ok1, ok2 bool
		r.first, ok1 = uv()
		r.last, ok2 = uv()
		if !ok1 || !ok2 || r.first == 0 || r.last < r.first || len(b) < 32 {
			return nil, fmt.Errorf("%w: bad range", errReceiptBody)
		}
		copy(r.id[:], b[:32])
		b = b[32:]
		if i > 0 {
			p := rs[i-1]
			c := bytes.Compare(p.author[:], r.author[:])
			if c > 0 || (c == 0 && p.last >= r.first) {
				return nil, fmt.Errorf("%w: ranges not sorted or overlapping", errReceiptBody)
			}
		}
		rs = append(rs, r)
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes", errReceiptBody)
	}
	return rs, nil
}

func marshalPolicy(mode byte) []byte { return []byte{bodyPolicyV1, mode} }

func parsePolicy(b []byte) (byte, error) {
	if len(b) != 2 || b[0] != bodyPolicyV1 || b[1] > policyPerBatch {
		return 0, errors.New("malformed receipt policy body")
	}
	return b[1], nil
}

// receiptPolicy is a space's receipt policy in spaceMeta: the mode and the
// policy envelope that set it (last writer wins by HLC, then device bytes).
type receiptPolicy struct {
	Mode   string `json:"mode"`
	HLC    uint64 `json:"hlc"`
	Author string `json:"author"` // device ID bytes, hex (orders ties)
}

func (m *spaceMeta) receiptMode() byte {
	if m.Receipts == nil {
		return policyOff
	}
	mode, _ := parsePolicyName(m.Receipts.Mode)
	return mode
}

// setPolicy applies a policy envelope to the space's metadata if it is
// newer than the one in force: the same result in any order.
func (m *spaceMeta) setPolicy(mode byte, hlc uint64, author crypto.DeviceID) {
	a := hex.EncodeToString(author[:])
	if p := m.Receipts; p != nil && (p.HLC > hlc || (p.HLC == hlc && p.Author >= a)) {
		return
	}
	m.Receipts = &receiptPolicy{Mode: policyNames[mode], HLC: hlc, Author: a}
}

// dueReceipt is a received change this device opened and owes a receipt.
type dueReceipt struct {
	author crypto.DeviceID
	seq    uint64
	id     [32]byte
}

// applyAgentBody applies a change envelope whose plaintext is an agent body
// (receipt or policy); entries are what applyChange has so far. Every
// outcome is the same on every replica that holds the key. stateMu held.
func (a *Agent) applyAgentBody(sp *spaceState, h crypto.Header, body []byte, entries []kvEntry) ([]kvEntry, bool, error) {
	switch body[0] {
	case bodyReceiptV1:
		sp.ctx.Add(crdt.Dot{Replica: crdt.ReplicaID(h.Author), Seq: h.Seq})
		rs, err := parseReceipt(body)
		if err != nil {
			a.noopEnvelope(sp, h, RejectUndecoded, err)
			return entries, false, nil
		}
		for _, r := range rs {
			if r.author == h.Author {
				a.noopEnvelope(sp, h, RejectMismatch, errors.New("a receipt names its own author's changes"))
				return entries, false, nil
			}
		}
		v := binary.BigEndian.AppendUint64(nil, h.HLC)
		return append(entries, a.db.entry(receiptKey(sp.id, h.Author, h.Seq), append(v, body...))), false, nil
	case bodyPolicyV1:
		sp.ctx.Add(crdt.Dot{Replica: crdt.ReplicaID(h.Author), Seq: h.Seq})
		mode, err := parsePolicy(body)
		if err != nil {
			a.noopEnvelope(sp, h, RejectUndecoded, err)
			return entries, false, nil
		}
		cert := a.trustNow().certs[h.Author]
		if cert == nil || cert.Bureau.Fingerprint() != sp.meta.OwnerFP {
			a.noopEnvelope(sp, h, RejectMismatch, errors.New("a receipt policy by a device not of the space's owning bureau"))
			return entries, false, nil
		}
		sp.meta.setPolicy(mode, h.HLC, h.Author)
		return entries, false, nil
	case bodyRetentionV1:
		return a.applyRetention(sp, h, body, entries)
	}
	// A newer agent body: kept, applied after an upgrade.
	return append(entries, a.db.entry(pendingKey(sp.id, h.Author, h.Seq), []byte{waitUpgrade})), true, nil
}

// knownAgentBody reports whether a change plaintext is an agent body this
// build applies (rebuild marks those seen, as the apply path does).
func knownAgentBody(body []byte) bool {
	return len(body) > 0 && (body[0] == bodyReceiptV1 || body[0] == bodyPolicyV1 || body[0] == bodyRetentionV1)
}

// noteReceiptDue notes that this device applied a received change, if the
// space's policy asks for receipts and the change is of another bureau's
// device. Receipts and policies never come here (no receipt of a receipt),
// nor does anything on a relay. It returns the entry that notes the debt on
// disk, to be stored with the change. stateMu held.
func (a *Agent) noteReceiptDue(sp *spaceState, h crypto.Header, env []byte) []kvEntry {
	if a.cfg.Relay || sp.meta.receiptMode() == policyOff || h.Author == a.dev {
		return nil
	}
	cert := a.trustNow().certs[h.Author]
	if cert == nil || cert.Bureau.Fingerprint() == a.cert.Bureau.Fingerprint() {
		return nil
	}
	if len(sp.receiptDue) >= maxReceiptDue {
		a.log.Warn("too many changes owe a receipt; this one gets none", "space", sp.id.String(), "author", h.Author.String(), "seq", h.Seq)
		return nil
	}
	d := dueReceipt{author: h.Author, seq: h.Seq, id: crypto.Hash(env)}
	sp.receiptDue = append(sp.receiptDue, d)
	a.receiptsDue.Store(true)
	return []kvEntry{a.db.entry(owedKey(sp.id, d.author, d.seq), d.id[:])}
}

// receiptBodies groups the due changes into receipt bodies: one per change,
// or (per batch) one per maxReceiptRanges runs of consecutive seqs of an
// author.
func receiptBodies(mode byte, due []dueReceipt) [][]byte {
	slices.SortFunc(due, func(x, y dueReceipt) int {
		if c := bytes.Compare(x.author[:], y.author[:]); c != 0 {
			return c
		}
		return cmp.Compare(x.seq, y.seq)
	})
	due = slices.CompactFunc(due, func(x, y dueReceipt) bool { return x.author == y.author && x.seq == y.seq })
	var out [][]byte
	if mode == policyPerChange {
		for _, d := range due {
			out = append(out, marshalReceipt([]receiptRange{{author: d.author, first: d.seq, last: d.seq, id: d.id}}))
		}
		return out
	}
	var rs []receiptRange
	for _, d := range due {
		if n := len(rs); n > 0 && rs[n-1].author == d.author && rs[n-1].last+1 == d.seq {
			rs[n-1].last, rs[n-1].id = d.seq, d.id
			continue
		}
		if len(rs) == maxReceiptRanges {
			out = append(out, marshalReceipt(rs))
			rs = nil
		}
		rs = append(rs, receiptRange{author: d.author, first: d.seq, last: d.seq, id: d.id})
	}
	if len(rs) > 0 {
		out = append(out, marshalReceipt(rs))
	}
	return out
}

// receiptsIfDue writes the receipts owed for the changes applied since it
// last ran. It runs at the end of each batch of received envelopes (a sync
// frame, a bundle), like wrapIfDue: per-batch receipts name what that batch
// applied. What is owed is noted on disk with each change (pfxOwed), so
// receipts owed when the agent stops or a commit fails are written after
// the next start.
func (a *Agent) receiptsIfDue() {
	if a.cfg.Relay || !a.receiptsDue.Swap(false) {
		return
	}
	wrote := false
	for {
		more := false
		err := a.withWrite(func(t *tx) error {
			n := 0
			for _, sp := range a.sortedSpaces() {
				if len(sp.receiptDue) == 0 {
					continue
				}
				mode := sp.meta.receiptMode()
				if mode == policyOff {
					t.changed()
					t.put(owedDeletes(sp.id, sp.receiptDue)...)
					sp.receiptDue = nil
					continue
				}
				if sp.current == nil {
					continue // no key to seal with yet: kept for later
				}
				if n >= receiptFlushBatch {
					more = true
					break
				}
				take := min(len(sp.receiptDue), (receiptFlushBatch-n)*maxReceiptRanges)
				if mode == policyPerChange {
					take = min(take, receiptFlushBatch-n)
				}
				due := sp.receiptDue[:take]
				sp.receiptDue = slices.Clone(sp.receiptDue[take:])
				if len(sp.receiptDue) > 0 {
					more = true
				}
				t.changed()
				bodies := receiptBodies(mode, due)
				entries, err := a.agentBodyEntries(sp, bodies)
				if err != nil {
					return err
				}
				t.put(entries...)
				t.put(owedDeletes(sp.id, due)...)
				n += len(bodies)
			}
			wrote = wrote || n > 0
			return nil
		})
		if err != nil {
			if !errors.Is(err, ErrClosed) {
				a.log.Warn("writing delivery receipts", "err", err)
			}
			return
		}
		if !more {
			break
		}
	}
	if wrote {
		a.notify()
	}
}

// agentBodyEntries seals and signs agent bodies as the next change
// envelopes of this device's log in the space (its profile first, a new
// epoch first if the current key is held by a device no longer entitled,
// as any write) and returns their store entries, context and clock
// included. stateMu held; the caller marked the transaction changed.
func (a *Agent) agentBodyEntries(sp *spaceState, bodies [][]byte) ([]kvEntry, error) {
	var entries []kvEntry
	if a.needsRotation(sp) {
		rot, err := a.rotateEpoch(sp)
		if err != nil {
			return nil, err
		}
		shares, _, err := a.shareEntries(sp, a.knownCerts())
		if err != nil {
			return nil, err
		}
		entries = append(append(entries, rot...), shares...)
	}
	prof, err := a.ensureProfile(sp)
	if err != nil {
		return nil, err
	}
	entries = append(entries, prof...)
	for _, body := range bodies {
		hlc := a.clock.Now(a.physMillis())
		env, err := a.appendEnvelope(sp, crypto.KindChange, body, sp.current, hlc)
		if err != nil {
			return nil, err
		}
		entries = append(entries, env...)
		h := crypto.Header{Space: sp.id, Author: a.dev, Seq: sp.heads[a.dev].Seq, HLC: hlc.Pack()}
		more, _, err := a.applyAgentBody(sp, h, body, nil)
		if err != nil {
			return nil, err
		}
		entries = append(entries, more...)
	}
	ctxBytes, err := sp.ctx.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return append(entries, a.db.entry(ctxKey(sp.id), ctxBytes), a.db.entry(spaceKey(sp.id), sp.meta.marshal()), a.hlcEntry()), nil
}

// SetReceiptPolicy is `space receipts SPACE MODE`: only officers of the
// space's owning bureau may set it (as the release list); it travels as a
// sealed policy envelope, so relays never learn it.
func (a *Agent) SetReceiptPolicy(req api.ReceiptPolicyRequest) (api.Space, error) {
	if a.cfg.Relay {
		return api.Space{}, fmt.Errorf("%w: a relay cannot set a space's receipt policy", ErrForbidden)
	}
	mode, ok := parsePolicyName(req.Receipts)
	if !ok {
		return api.Space{}, fmt.Errorf("%w: receipt policy %q: want %s, %s or %s", ErrBadRequest, req.Receipts, api.ReceiptsOff, api.ReceiptsPerChange, api.ReceiptsPerBatch)
	}
	view, changed, err := a.setSpacePolicy(req.Space, "receipt policy",
		func(m *spaceMeta) bool { return m.receiptMode() == mode && m.Receipts != nil },
		marshalPolicy(mode))
	if err == nil && changed {
		a.log.Info("set a space's receipt policy", "space", view.ID, "receipts", req.Receipts)
	}
	return view, err
}

// setSpacePolicy writes a policy body (receipts, retention) into the space,
// as the owning bureau's officers alone may, unless inForce says the space
// already has it. changed: a policy envelope was written (peers notified).
func (a *Agent) setSpacePolicy(space, what string, inForce func(*spaceMeta) bool, body []byte) (view api.Space, changed bool, err error) {
	err = a.withWrite(func(t *tx) error {
		sp, err := a.resolveSpace(space)
		if err != nil {
			return err
		}
		if sp.meta.OwnerFP != a.cert.Bureau.Fingerprint() {
			return fmt.Errorf("%w: only officers of the owning bureau (%s) may set the %s of space %s", ErrForbidden, sp.meta.Owner, what, sp.id)
		}
		if sp.current == nil {
			return fmt.Errorf("%w: this device holds no key for space %s yet", ErrForbidden, sp.id)
		}
		if inForce(&sp.meta) {
			view = spaceView(sp.meta)
			return nil
		}
		t.changed()
		entries, err := a.agentBodyEntries(sp, [][]byte{body})
		if err != nil {
			return err
		}
		t.put(entries...)
		view, changed = spaceView(sp.meta), true
		return nil
	})
	if err != nil {
		return api.Space{}, false, err
	}
	if changed {
		a.notify()
	}
	return view, changed, nil
}

// receiptRow is one range of one stored receipt, judged.
type receiptRow struct {
	api.Receipt
	author crypto.DeviceID
	hlc    uint64
}

// loadReceipts reads and judges every receipt held in the space: its author
// must be a known device whose log there is still valid at the receipt's
// seq (revocation cut-off, fork); each range must name another device's
// log, and the envelope ID of its last seq must be the one held (valid), or
// that envelope is not held yet (unverified). A receipt by a device of a
// bureau the space was never released to never got here: ingest refuses
// its envelope (not_entitled).
func (a *Agent) loadReceipts(sp *spaceState) ([]receiptRow, error) {
	held := a.heldEnvelope(sp, nil)
	var rows []receiptRow
	prefix := append([]byte{pfxReceipt}, sp.id[:]...)
	err := a.db.scan(prefix, func(k, v []byte) error {
		if len(k) != len(prefix)+16+8 || len(v) < 8 {
			return nil
		}
		var dev crypto.DeviceID
		copy(dev[:], k[len(prefix):])
		seq := binary.BigEndian.Uint64(k[len(prefix)+16:])
		if seq > a.validUpTo(sp.id, dev) {
			return nil // cut: its envelope is gone or going
		}
		hlc := binary.BigEndian.Uint64(v[:8])
		ts := crdt.UnpackTimestamp(hlc)
		base := api.Receipt{Space: sp.id.String(), Device: dev.String(), ReceiptSeq: seq,
			HLC: formatHLC(ts), Time: time.UnixMilli(ts.Wall).UTC().Format(time.RFC3339),
			Bureau: a.bureauOf(dev), Officer: a.officer(sp, dev)}
		rs, err := parseReceipt(v[8:])
		if err != nil {
			return nil // the apply path stored only well-formed ones
		}
		cert := a.trustNow().certs[dev]
		for _, r := range rs {
			row := receiptRow{Receipt: base, author: r.author, hlc: hlc}
			row.Author, row.FromSeq, row.ToSeq = r.author.String(), r.first, r.last
			id, ok := held(r.author, r.last)
			switch {
			case cert == nil:
				row.Status, row.Error = api.ReceiptInvalid, "the receipt's author is unknown here"
			case r.author == dev:
				row.Status, row.Error = api.ReceiptInvalid, "a receipt for its own author's changes"
			case !ok:
				row.Status, row.Error = api.ReceiptUnverified, "names changes this device does not hold yet"
			case id != r.id:
				row.Status, row.Error = api.ReceiptInvalid, "names an envelope other than the one held"
			default:
				row.Status = api.ReceiptValid
			}
			rows = append(rows, row)
		}
		return nil
	}, a.countCorrupt)
	return rows, err
}

// Receipts is `receipts SPACE [RECORD]`: every receipt held for the space,
// one row per range, or, with a record, one row per change of the record
// that a receipt names.
func (a *Agent) Receipts(req api.ReceiptsRequest) ([]api.Receipt, error) {
	sp, err := a.lookupSpace(req.Space)
	if err != nil {
		return nil, err
	}
	rows, err := a.loadReceipts(sp)
	if err != nil {
		return nil, err
	}
	out := []api.Receipt{}
	if req.Record == "" {
		for _, r := range rows {
			out = append(out, r.Receipt)
		}
		sortReceipts(out)
		return out, nil
	}
	hist, err := a.History(api.RecordRef{Space: sp.id.String(), Record: req.Record})
	if err != nil {
		return nil, err
	}
	for _, e := range hist {
		for _, r := range rows {
			if r.Author == e.Author && r.FromSeq <= e.Seq && e.Seq <= r.ToSeq {
				x := r.Receipt
				x.FromSeq, x.ToSeq, x.Record = e.Seq, e.Seq, req.Record
				out = append(out, x)
			}
		}
	}
	sortReceipts(out)
	return out, nil
}

func sortReceipts(rs []api.Receipt) {
	sort.SliceStable(rs, func(i, j int) bool {
		x, y := rs[i], rs[j]
		switch {
		case x.Author != y.Author:
			return x.Author < y.Author
		case x.FromSeq != y.FromSeq:
			return x.FromSeq < y.FromSeq
		case x.HLC != y.HLC:
			return x.HLC < y.HLC
		}
		return x.Device < y.Device
	})
}

// withReceipts adds to each history entry the valid receipts of its change.
func (a *Agent) withReceipts(sp *spaceState, hist []api.HistoryEntry) error {
	if len(hist) == 0 {
		return nil
	}
	rows, err := a.loadReceipts(sp)
	if err != nil || len(rows) == 0 {
		return err
	}
	for i := range hist {
		e := &hist[i]
		for _, r := range rows {
			if r.Status == api.ReceiptValid && r.Author == e.Author && r.FromSeq <= e.Seq && e.Seq <= r.ToSeq {
				e.Receipts = append(e.Receipts, api.HistoryReceipt{Device: r.Device, Bureau: r.Bureau, Officer: r.Officer, HLC: r.HLC, Time: r.Time})
			}
		}
		sort.SliceStable(e.Receipts, func(x, y int) bool { return e.Receipts[x].HLC < e.Receipts[y].HLC })
	}
	return nil
}

func init() {
	apiExtensions = append(apiExtensions, func(a *Agent, mux *http.ServeMux) {
		post(a, mux, api.PathReceipts, func(req api.ReceiptsRequest) (any, error) { return a.Receipts(req) })
		post(a, mux, api.PathSpaceReceipts, func(req api.ReceiptPolicyRequest) (any, error) { return a.SetReceiptPolicy(req) })
	})
}
