package agent

// Retention, signed by the owning bureau (issue 16 item 1; docs/design.md
// §8, docs/format.md "Retention policy").
//
// A space's retention policy (review after N days, erase after M) is a
// third agent body (bodyRetentionV1), sealed in the space like the receipt
// policy (receipts.go) rather than in its clear routing records: relays
// need not know it, and it reuses the owner-only authority the receipt
// policy already has (applied only if its author is a device of the
// owning bureau; latest (HLC, device) wins). An agent before retention
// keeps it waiting for an upgrade, as any newer agent body.
//
// Reviews are ordinary record writes: `review extend` puts a review mark
// (api.ReviewField, a JSON object with the action and the reason) into the
// record, so history shows who reviewed it, from which device, when and
// why, and its HLC restarts the record's clock; `review lapse` puts a lapse
// mark the same way, then deletes the record.

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"
	"unicode/utf8"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
)

// maxRetentionDays bounds both durations (100 years).
const maxRetentionDays = 36500

func marshalRetention(review, erase uint32) []byte {
	b := []byte{bodyRetentionV1}
	b = binary.BigEndian.AppendUint32(b, review)
	return binary.BigEndian.AppendUint32(b, erase)
}

// parseRetention decodes a retention body strictly: review 0 is off (and
// erase must be 0 too); otherwise erase is 0 (no erasure deadline) or at
// least review; both at most maxRetentionDays.
func parseRetention(b []byte) (review, erase uint32, err error) {
	if len(b) != 9 || b[0] != bodyRetentionV1 {
		return 0, 0, errors.New("malformed retention policy body")
	}
	review, erase = binary.BigEndian.Uint32(b[1:5]), binary.BigEndian.Uint32(b[5:9])
	if err := checkRetention(int(review), int(erase)); err != nil {
		return 0, 0, err
	}
	return review, erase, nil
}

func checkRetention(review, erase int) error {
	switch {
	case review < 0 || erase < 0 || review > maxRetentionDays || erase > maxRetentionDays:
		return fmt.Errorf("retention durations are 0 to %d days", maxRetentionDays)
	case review == 0 && erase != 0:
		return errors.New("an erase-after needs a review-after")
	case erase != 0 && erase < review:
		return errors.New("erase-after is shorter than review-after")
	}
	return nil
}

// retentionPolicy is a space's retention policy in spaceMeta, with the
// envelope that set it (last writer wins by HLC, then device bytes). A
// policy set off is kept (ReviewDays 0) so that an older one cannot win.
type retentionPolicy struct {
	ReviewDays int    `json:"review_days"`
	EraseDays  int    `json:"erase_days"`
	HLC        uint64 `json:"hlc"`
	Author     string `json:"author"`
}

// setRetention applies a retention envelope if it is newer than the one in
// force: the same result in any order.
func (m *spaceMeta) setRetention(review, erase uint32, hlc uint64, author crypto.DeviceID) {
	a := hex.EncodeToString(author[:])
	if p := m.Retention; p != nil && (p.HLC > hlc || (p.HLC == hlc && p.Author >= a)) {
		return
	}
	m.Retention = &retentionPolicy{ReviewDays: int(review), EraseDays: int(erase), HLC: hlc, Author: a}
}

// retentionView is the policy in force for api.Space (nil: none).
func (m *spaceMeta) retentionView() *api.Retention {
	if m.Retention == nil || m.Retention.ReviewDays == 0 {
		return nil
	}
	return &api.Retention{ReviewAfterDays: m.Retention.ReviewDays, EraseAfterDays: m.Retention.EraseDays}
}

// applyRetention applies a retention policy envelope: a no-op unless its
// author is a device of the space's owning bureau. stateMu held.
func (a *Agent) applyRetention(sp *spaceState, h crypto.Header, body []byte, entries []kvEntry) ([]kvEntry, bool, error) {
	sp.ctx.Add(crdt.Dot{Replica: crdt.ReplicaID(h.Author), Seq: h.Seq})
	review, erase, err := parseRetention(body)
	if err != nil {
		a.noopEnvelope(sp, h, RejectUndecoded, err)
		return entries, false, nil
	}
	cert := a.trustNow().certs[h.Author]
	if cert == nil || cert.Bureau.Fingerprint() != sp.meta.OwnerFP {
		a.noopEnvelope(sp, h, RejectMismatch, errors.New("a retention policy by a device not of the space's owning bureau"))
		return entries, false, nil
	}
	sp.meta.setRetention(review, erase, h.HLC, h.Author)
	return entries, false, nil
}

// SetRetentionPolicy is `space retention SPACE`: only officers of the
// space's owning bureau may set it; it travels as a sealed envelope.
func (a *Agent) SetRetentionPolicy(req api.RetentionPolicyRequest) (api.Space, error) {
	if a.cfg.Relay {
		return api.Space{}, fmt.Errorf("%w: a relay cannot set a space's retention policy", ErrForbidden)
	}
	review, erase := req.ReviewAfterDays, req.EraseAfterDays
	if req.Off {
		review, erase = 0, 0
	} else if review == 0 {
		return api.Space{}, fmt.Errorf("%w: give a review-after of at least 1 day, or off", ErrBadRequest)
	}
	if err := checkRetention(review, erase); err != nil {
		return api.Space{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	view, changed, err := a.setSpacePolicy(req.Space, "retention policy",
		func(m *spaceMeta) bool {
			p := m.Retention
			return (p == nil && review == 0) || (p != nil && p.ReviewDays == review && p.EraseDays == erase)
		},
		marshalRetention(uint32(review), uint32(erase)))
	if err == nil && changed {
		a.log.Info("set a space's retention policy", "space", view.ID, "review_days", review, "erase_days", erase)
	}
	return view, err
}

// reviewInput is one live record for dueForReview: since is its last
// review mark's time, or (never reviewed) its oldest live value's.
// foreign is set when a live value or note of it (the review mark
// included) was written by a device other than an officer device of the
// owning bureau: its HLC is that device's word, so automatic erasure
// leaves the record to a person (autoerase.go).
type reviewInput struct {
	space, record string
	since         time.Time
	reviewed      bool
	foreign       bool
}

const day = 24 * time.Hour

// dueForReview is the review computation, pure: the records whose since
// is at least reviewDays before now, with erase_due when at least
// eraseDays (if not 0). Sorted by space, then record.
func dueForReview(now time.Time, reviewDays, eraseDays int, in []reviewInput) []api.ReviewDue {
	out := []api.ReviewDue{}
	if reviewDays <= 0 {
		return out
	}
	for _, r := range in {
		age := now.Sub(r.since)
		if age < time.Duration(reviewDays)*day {
			continue
		}
		out = append(out, api.ReviewDue{Space: r.space, Record: r.record,
			Since:    r.since.UTC().Format(time.RFC3339),
			AgeDays:  int(age / day),
			DueSince: r.since.Add(time.Duration(reviewDays) * day).UTC().Format(time.RFC3339),
			Reviewed: r.reviewed,
			EraseDue: eraseDays > 0 && age >= time.Duration(eraseDays)*day})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Space != out[j].Space {
			return out[i].Space < out[j].Space
		}
		return out[i].Record < out[j].Record
	})
	return out
}

// reviewSince is a record's review clock: the HLC time of its review
// mark's winning sibling, or else the oldest HLC among its live values and
// notes (the first change, for a record whose values were never
// overwritten).
func reviewSince(r *crdt.Record) (time.Time, bool, bool) {
	if f, ok := r.Register(api.ReviewField); ok && len(f.Siblings) > 0 {
		return time.UnixMilli(f.Siblings[0].HLC.Wall), true, true
	}
	var oldest int64
	found := false
	see := func(w int64) {
		if !found || w < oldest {
			oldest, found = w, true
		}
	}
	liveWrites(r, func(_ crdt.ReplicaID, wall int64) { see(wall) })
	return time.UnixMilli(oldest), false, found
}

// liveWrites calls fn with the author and HLC wall time of each live value
// (register sibling) and unremoved note of r.
func liveWrites(r *crdt.Record, fn func(author crdt.ReplicaID, wall int64)) {
	for _, f := range r.Registers() {
		for _, s := range f.Siblings {
			fn(s.Dot.Replica, s.HLC.Wall)
		}
	}
	for _, n := range r.Notes() {
		if !n.Removed {
			fn(n.Author, n.HLC.Wall)
		}
	}
}

// Review is `review [SPACE]`: the records due for review in the spaces
// with a retention policy, "now" from the agent's clock.
func (a *Agent) Review(req api.ReviewRequest) ([]api.ReviewDue, error) {
	if a.cfg.Relay {
		return nil, fmt.Errorf("%w: a relay reads no records", ErrForbidden)
	}
	var spaces []*spaceState
	if req.Space != "" {
		sp, err := a.lookupSpace(req.Space)
		if err != nil {
			return nil, err
		}
		spaces = []*spaceState{sp}
	} else {
		a.withRead(func() error {
			spaces = a.sortedSpaces()
			return nil
		})
	}
	now := a.cfg.now()
	out := []api.ReviewDue{}
	for _, sp := range spaces {
		pol, in, err := a.reviewInputs(sp)
		if err != nil {
			return nil, err
		}
		if pol != nil {
			out = append(out, dueForReview(now, pol.ReviewDays, pol.EraseDays, in)...)
		}
	}
	return out, nil
}

// reviewInputs is the space's retention policy (nil if none, or no review
// period) and, with one, the review clock of each live record.
func (a *Agent) reviewInputs(sp *spaceState) (*retentionPolicy, []reviewInput, error) {
	var pol *retentionPolicy
	var owner string
	a.withRead(func() error {
		if p := sp.meta.Retention; p != nil {
			c := *p
			pol = &c
		}
		owner = sp.meta.OwnerFP
		return nil
	})
	if pol == nil || pol.ReviewDays == 0 {
		return nil, nil, nil
	}
	ownerOfficer := a.ownerOfficer(owner)
	var in []reviewInput
	err := a.eachRecord(sp, func(r *crdt.Record) {
		if ri, ok := reviewInputOf(sp.id, r, ownerOfficer); ok {
			in = append(in, ri)
		}
	})
	if err != nil {
		return nil, nil, err
	}
	return pol, in, nil
}

// reviewInputOf is a live record's reviewInput; ok is false for a deleted
// record or one with no live write. ownerOfficer tells the officer
// devices of the space's owning bureau.
func reviewInputOf(space crypto.SpaceID, r *crdt.Record, ownerOfficer func(crdt.ReplicaID) bool) (reviewInput, bool) {
	if del, _ := r.Deleted(); del {
		return reviewInput{}, false
	}
	since, reviewed, ok := reviewSince(r)
	if !ok {
		return reviewInput{}, false
	}
	foreign := false
	liveWrites(r, func(author crdt.ReplicaID, _ int64) { foreign = foreign || !ownerOfficer(author) })
	return reviewInput{space: space.String(), record: string(r.ID()), since: since, reviewed: reviewed, foreign: foreign}, true
}

// ownerOfficer reports, from the trust tables as they are now, whether a
// device is an officer device of the bureau whose fingerprint is owner.
func (a *Agent) ownerOfficer(owner string) func(crdt.ReplicaID) bool {
	certs := a.trustNow().certs
	return func(author crdt.ReplicaID) bool {
		c := certs[crypto.DeviceID(author)]
		return c != nil && c.Role == crypto.RoleOfficer && owner != "" && c.Bureau.Fingerprint() == owner
	}
}

// reviewMark is the value of a review mark.
func reviewMark(action, reason string) ([]byte, error) {
	if reason == "" || len(reason) > crdt.MaxNameBytes || !utf8.ValidString(reason) {
		return nil, fmt.Errorf("%w: a review needs a reason of 1 to %d bytes of UTF-8", ErrBadRequest, crdt.MaxNameBytes)
	}
	return json.Marshal(struct {
		Action string `json:"action"`
		Reason string `json:"reason"`
	}{action, NFC(reason)})
}

// reviewWrite puts a review mark into an existing, live record.
func (a *Agent) reviewWrite(req api.ReviewActionRequest, action string) (*spaceState, crdt.RecordID, api.Record, error) {
	return a.reviewWriteIf(req, action, nil)
}

// errNoLongerDue refuses an automatic lapse of a record that is no longer
// due when it is written (autoerase.go).
var errNoLongerDue = errors.New("record no longer due for erasure")

// reviewWriteIf is reviewWrite that, with check set, writes the mark only
// if check, judging the record as it is when the mark is built, passes.
func (a *Agent) reviewWriteIf(req api.ReviewActionRequest, action string, check func(*crdt.Record) error) (*spaceState, crdt.RecordID, api.Record, error) {
	if a.cfg.Relay {
		return nil, "", api.Record{}, fmt.Errorf("%w: a relay reads no records", ErrForbidden)
	}
	mark, err := reviewMark(action, req.Reason)
	if err != nil {
		return nil, "", api.Record{}, err
	}
	sp, rid, err := a.recordRef(api.RecordRef{Space: req.Space, Record: req.Record})
	if err != nil {
		return nil, "", api.Record{}, err
	}
	rec, err := a.writeRecord(sp, rid, func(r *crdt.Record) ([]crdt.Op, error) {
		if r == nil || r.Empty() {
			return nil, noRecord(sp, rid)
		}
		if del, _ := r.Deleted(); del {
			return nil, noRecord(sp, rid)
		}
		if check != nil {
			if err := check(r); err != nil {
				return nil, err
			}
		}
		return []crdt.Op{r.Put(api.ReviewField, mark)}, nil
	})
	return sp, rid, rec, err
}

// ReviewExtend is `review extend`: a review mark restarts the record's
// review clock.
func (a *Agent) ReviewExtend(req api.ReviewActionRequest) (api.Record, error) {
	_, _, rec, err := a.reviewWrite(req, api.ReviewExtend)
	return rec, err
}

// ReviewLapse is `review lapse`: a lapse mark (for history), then the
// record's delete, which has seen the mark. It deletes the record's state;
// its past envelopes stay until the whole space is erased.
//
// With req.Erase it then erases the record (EraseRecord, with the same
// reason): its past values are cut from every envelope on every replica it
// reaches. Who may not erase (rules.MayErase: officers of the owning bureau
// only) is refused before anything is written.
func (a *Agent) ReviewLapse(req api.ReviewActionRequest) (api.Record, error) {
	return a.reviewLapse(req, nil)
}

// reviewLapse is ReviewLapse; with check set (autoerase.go), the record is
// judged again as the lapse mark is built, and nothing is written if check
// fails.
func (a *Agent) reviewLapse(req api.ReviewActionRequest, check func(*crdt.Record) error) (api.Record, error) {
	if req.Erase {
		if err := a.mayEraseIn(req.Space); err != nil {
			return api.Record{}, err
		}
	}
	sp, rid, _, err := a.reviewWriteIf(req, api.ReviewLapse, check)
	if err != nil {
		return api.Record{}, err
	}
	rec, err := a.DeleteRecord(api.RecordRef{Space: sp.id.String(), Record: string(rid)})
	if err != nil || !req.Erase {
		return rec, err
	}
	if _, err := a.EraseRecord(api.RecordEraseRequest{Space: sp.id.String(), Record: string(rid), Reason: req.Reason}); err != nil {
		return rec, fmt.Errorf("the record lapsed (deleted) but was not erased: %w; erase it with fieldsync record erase", err)
	}
	return rec, nil
}

// mayEraseIn reports whether this device may erase records in the space
// (erasableSpace).
func (a *Agent) mayEraseIn(space string) error {
	if a.cfg.Relay {
		return fmt.Errorf("%w: a relay cannot erase a record", ErrForbidden)
	}
	return a.withRead(func() error {
		_, err := a.erasableSpace(space)
		return err
	})
}

func init() {
	apiExtensions = append(apiExtensions, func(a *Agent, mux *http.ServeMux) {
		post(a, mux, api.PathSpaceRetention, func(req api.RetentionPolicyRequest) (any, error) { return a.SetRetentionPolicy(req) })
		post(a, mux, api.PathReview, func(req api.ReviewRequest) (any, error) { return a.Review(req) })
		post(a, mux, api.PathReviewExtend, func(req api.ReviewActionRequest) (any, error) { return a.ReviewExtend(req) })
		post(a, mux, api.PathReviewLapse, func(req api.ReviewActionRequest) (any, error) { return a.ReviewLapse(req) })
	})
}
