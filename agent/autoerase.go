package agent

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
)

// Automatic erasure (docs/design.md §2, "Retention"): a record whose space's
// retention policy has an erase-after period, and whose review clock is
// older than it, is lapsed and erased (ReviewLapse with Erase) by the
// officer devices of the owning bureau, the only ones that may erase
// (erasableSpace), without a person: `review` lists it as erase_due until
// then. Several such devices may do it at once; the CRDT and the erasure
// markers take that.
//
// A laptop's clock can be wrong by years. Erasing is not undoable, so the
// time a record is judged by is the earlier of this device's clock and
// othersHLC: the newest HLC of a change another device wrote that this
// device applied while that HLC was within the allowed drift of its own
// clock (causal.go). A laptop whose clock jumped ahead erases nothing by
// itself until other devices' writes date the erase-after period as passed
// too; a write that came from a clock running ahead of ours (one device's
// fault, or a hostile member's HLC) never counts, even once our clock has
// jumped to meet it; a device that has seen nobody else's writes since it
// was upgraded to this rule erases nothing.
//
// An HLC is also its author's word about when it wrote. A record's review
// clock is its oldest live write (retention.go), so a member who may not
// erase could add a backdated value to make a record due: automatic
// erasure takes only records whose live values and notes were all written
// by officer devices of the owning bureau, who may erase it anyway. The
// others stay listed as erase due (`review`), for a person to lapse.
const (
	autoEraseEvery = time.Hour
	// autoEraseFirst is when the first pass runs after the agent starts:
	// not during the start's own work, soon enough for a laptop that is
	// only opened now and then.
	autoEraseFirst = time.Minute
)

// autoEraseResult is what one pass did.
type autoEraseResult struct {
	Erased int // records lapsed and erased
	// Held are records due by this device's clock but not yet by the
	// newest write of another device (the clocks disagree, or nobody
	// else wrote since).
	Held int
	// Foreign are records due but holding a live write of a device that
	// may not erase (above): left to a person.
	Foreign int
	Failed  int
}

// startAutoErase runs autoErasePass after autoEraseFirst and then every
// autoEraseEvery until ctx ends or stop is called; stop waits for a pass in
// progress. A relay, or an agent with Config.NoAutoErase, runs none.
func (a *Agent) startAutoErase(ctx context.Context) (stop func()) {
	if a.cfg.Relay || a.cfg.NoAutoErase {
		return func() {}
	}
	return every(ctx, autoEraseFirst, autoEraseEvery, func() { a.autoErasePass() })
}

// autoErasePass lapses and erases every record due for erasure in the
// spaces this device may erase in, judged by the corroborated time (above).
func (a *Agent) autoErasePass() (res autoEraseResult, err error) {
	if a.cfg.Relay || a.cfg.NoAutoErase {
		return res, nil
	}
	defer func() {
		a.statMu.Lock()
		defer a.statMu.Unlock()
		a.retentionStat.LastPass = a.cfg.now().UTC().Format(time.RFC3339)
		a.retentionStat.Erased += res.Erased
		a.retentionStat.Failed += res.Failed
		a.retentionStat.Held = res.Held
		a.retentionStat.Foreign = res.Foreign
	}()
	var spaces []*spaceState
	a.withRead(func() error {
		for _, sp := range a.sortedSpaces() {
			if p := sp.meta.Retention; p == nil || p.EraseDays == 0 || p.ReviewDays == 0 {
				continue
			}
			if _, err := a.erasableSpace(sp.id.String()); err == nil && sp.current != nil {
				spaces = append(spaces, sp)
			}
		}
		return nil
	})
	if len(spaces) == 0 {
		return res, nil
	}
	if err := a.eraseOwedAll(&res); err != nil {
		return res, err
	}
	now := a.cfg.now()
	var judged time.Time // zero: nobody else's clock, nothing is due
	a.withRead(func() error {
		if a.othersHLC.Wall > 0 {
			judged = time.UnixMilli(a.othersHLC.Wall)
		}
		return nil
	})
	if judged.After(now) {
		judged = now
	}
	for _, sp := range spaces {
		pol, in, err := a.reviewInputs(sp)
		if err != nil {
			return res, err
		}
		if pol == nil {
			continue
		}
		var ownerFP string
		a.withRead(func() error { ownerFP = sp.meta.OwnerFP; return nil })
		owner := a.ownerOfficer(ownerFP)
		byJudged, foreign := map[string]bool{}, map[string]bool{}
		for _, d := range dueForReview(judged, pol.ReviewDays, pol.EraseDays, in) {
			byJudged[d.Record] = d.EraseDue
		}
		for _, r := range in {
			foreign[r.record] = r.foreign
		}
		reason := fmt.Sprintf("retention: erase after %d days (automatic)", pol.EraseDays)
		for _, d := range dueForReview(now, pol.ReviewDays, pol.EraseDays, in) {
			if !d.EraseDue {
				continue
			}
			if foreign[d.Record] {
				res.Foreign++
				continue
			}
			if !byJudged[d.Record] {
				res.Held++
				continue
			}
			// Judged again as the lapse is written: a review extended (or
			// a value written, by anyone) since the records were judged
			// above keeps it.
			limit := time.Duration(pol.EraseDays) * day
			stillDue := func(r *crdt.Record) error {
				in, ok := reviewInputOf(sp.id, r, owner)
				if ok && !in.foreign && now.Sub(in.since) >= limit && judged.Sub(in.since) >= limit {
					return nil
				}
				return errNoLongerDue
			}
			if a.ownMarkersCapped() {
				// Every replica would refuse the marker (recerase.go,
				// maxRecordErasuresPerAuthor): lapsing the record would
				// delete it without erasing it.
				res.Failed++
				a.log.Warn("record due for erasure kept: this device holds the most record-erase markers one device may; let another officer device of the bureau erase it, or erase the space", "space", d.Space, "record", d.Record)
				continue
			}
			owed := a.owedEraseKey(sp.id, d.Record)
			if err := a.withWrite(func(t *tx) error { t.put(a.db.entry(owed, []byte(reason))); return nil }); err != nil {
				return res, err
			}
			_, err := a.reviewLapse(api.ReviewActionRequest{Space: d.Space, Record: d.Record, Reason: reason}, stillDue)
			if err == nil {
				err = a.eraseOwed(sp.id, d.Record, reason, owed, true)
			}
			switch {
			case errors.Is(err, ErrClosed):
				return res, err
			case errors.Is(err, errNoLongerDue):
				a.dropOwed(owed)
				continue
			case err != nil:
				res.Failed++
				a.log.Warn("erasing a record due under its space's retention policy (tried again at the next pass)", "space", d.Space, "record", d.Record, "err", err)
			default:
				res.Erased++
				a.log.Info("record erased: its space's retention policy's erase-after period passed", "space", d.Space, "record", d.Record,
					"erase_after_days", pol.EraseDays, "since", d.Since)
			}
		}
		// One purge (dropping old versions, rebuilding the state) for
		// all the records erased in the space.
		if err := a.purgeStaged(sp.id); err != nil {
			return res, err
		}
	}
	if res.Held > 0 {
		a.log.Warn("records due for erasure by this device's clock are kept until other devices' writes date it too (is this clock ahead?)",
			"records", res.Held, "clock", now.UTC().Format(time.RFC3339), "others_newest", judged.UTC().Format(time.RFC3339))
	}
	return res, nil
}

// Owed erasures. A pass lapses (deletes) a record, then erases it; if the
// erasure fails or is cut short (the agent stopping between the two), the
// record would stay deleted but not erased, and later passes skip deleted
// records. So the pass notes the erasure as owed (M erase-owed/SPACE/TAG ->
// the reason) before the lapse, and drops the note once the record is
// erased; every pass first erases the owed records that are deleted. A
// note whose record is still live (the lapse never happened) is dropped:
// the record is judged again like any other. TAG is a keyed hash of the
// record ID, so the note's old versions in Badger's files name no record
// after its erasure.
const owedErasePrefix = "erase-owed/"

func (a *Agent) owedEraseKey(space crypto.SpaceID, record string) []byte {
	m := hmac.New(sha256.New, a.db.key[:])
	m.Write([]byte("fieldsync owed erasure v1\x00"))
	m.Write(space[:])
	m.Write([]byte(record))
	return metaKey(owedErasePrefix + space.String() + "/" + hex.EncodeToString(m.Sum(nil)[:16]))
}

// autoEraseBeforeErase, when set (tests only), runs before each erasure a
// pass owes and fails it with its error.
var autoEraseBeforeErase func() error

// eraseOwed erases a lapsed record and drops its owed note. A refusal that
// another try cannot change (a version 1 change, the device no longer
// allowed, nothing held) drops the note too, and is returned. With
// deferPurge the space's purge is left to the caller (purgeStaged); a stop
// before it is finished at the next start.
func (a *Agent) eraseOwed(space crypto.SpaceID, record, reason string, owed []byte, deferPurge bool) error {
	if autoEraseBeforeErase != nil {
		if err := autoEraseBeforeErase(); err != nil {
			return err
		}
	}
	_, err := a.eraseRecord(api.RecordEraseRequest{Space: space.String(), Record: record, Reason: reason}, deferPurge)
	if err == nil || errors.Is(err, ErrForbidden) || errors.Is(err, ErrNotFound) {
		a.dropOwed(owed)
	}
	if err != nil {
		return fmt.Errorf("the record lapsed (deleted) but was not erased: %w", err)
	}
	return nil
}

func (a *Agent) dropOwed(owed []byte) {
	if err := a.withWrite(func(t *tx) error { t.put(kvEntry{Key: owed, Del: true}); return nil }); err != nil && !errors.Is(err, ErrClosed) {
		a.log.Warn("dropping an owed erasure note", "err", err)
	}
}

// eraseOwedAll erases the records earlier passes lapsed but did not erase.
func (a *Agent) eraseOwedAll(res *autoEraseResult) error {
	type owedErasure struct {
		key            []byte
		space          crypto.SpaceID
		record, reason string
	}
	notes := map[string]string{} // key -> reason
	spaces := map[crypto.SpaceID]bool{}
	prefix := metaKey(owedErasePrefix)
	err := a.db.scan(prefix, func(k, v []byte) error {
		notes[string(k)] = string(v)
		rest := string(k[len(prefix):])
		if i := strings.IndexByte(rest, '/'); i > 0 {
			if space, err := crypto.ParseSpaceID(rest[:i]); err == nil {
				spaces[space] = true
			}
		}
		return nil
	}, a.countCorrupt)
	if err != nil || len(notes) == 0 {
		return err
	}
	// The deleted records of those spaces whose tag a note holds.
	var owed []owedErasure
	for space := range spaces {
		var sp *spaceState
		a.withRead(func() error { sp = a.spaces[space]; return nil })
		if sp == nil {
			continue
		}
		err := a.eachRecord(sp, func(r *crdt.Record) {
			k := string(a.owedEraseKey(space, string(r.ID())))
			if reason, ok := notes[k]; ok {
				if del, _ := r.Deleted(); del {
					owed = append(owed, owedErasure{key: []byte(k), space: space, record: string(r.ID()), reason: reason})
					delete(notes, k)
				}
			}
		})
		if err != nil {
			return err
		}
	}
	for k := range notes {
		a.dropOwed([]byte(k)) // the record is live again, or gone (erased, or with its space)
	}
	for _, o := range owed {
		switch err := a.eraseOwed(o.space, o.record, o.reason, o.key, false); {
		case errors.Is(err, ErrClosed):
			return err
		case err != nil:
			res.Failed++
			a.log.Warn("erasing a record lapsed under its space's retention policy (tried again at the next pass)", "space", o.space.String(), "record", o.record, "err", err)
		default:
			res.Erased++
			a.log.Info("record erased: lapsed by an earlier pass under its space's retention policy", "space", o.space.String(), "record", o.record)
		}
	}
	return nil
}

// ownMarkersCapped reports whether this device's own record-erase markers
// held here have reached the cap every replica applies to one device.
func (a *Agent) ownMarkersCapped() bool {
	a.recErMu.Lock()
	defer a.recErMu.Unlock()
	return a.recErasedLocked().byAuthor[a.dev].markers >= maxRecordErasuresPerAuthor
}
