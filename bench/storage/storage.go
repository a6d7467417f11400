// Package storage measures what a laptop's store holds after history piles
// up (issue 16, item 3): W1's records written once, then every field of
// every record overwritten in rounds, against a fresh store that holds only
// the final state. The ratio is what compaction of superseded envelopes
// (docs/design.md §7, "Bounded storage") has to bring to ≤ 2.
//
// `fieldsync bench storage [--size S|L] [--rounds N] [--no-cold] [--json]`
// calls Run.
package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"fieldsync/agent/api"
	"fieldsync/bench/w1"
	"fieldsync/bench/w1agent"
	"fieldsync/internal/harness"
)

// Result is what one run measured.
type Result struct {
	Workload  string `json:"workload"` // "W1-storage"
	Size      string `json:"size"`
	Records   int    `json:"records"`
	Rounds    int    `json:"rounds"` // full overwrites after the first write
	Nproc     int    `json:"nproc"`
	GoVersion string `json:"go_version"`
	// The store that lived through every round, and a fresh one holding
	// only the final values, both measured after a clean stop (allocated
	// bytes of the data directory, as du counts them).
	GrownStoreBytes int64 `json:"grown_store_bytes"`
	FreshStoreBytes int64 `json:"fresh_store_bytes"`
	// The sealed envelopes each holds (the space digest's byte count).
	GrownEnvelopeBytes int64   `json:"grown_envelope_bytes"`
	FreshEnvelopeBytes int64   `json:"fresh_envelope_bytes"`
	GrownEnvelopes     int     `json:"grown_envelopes"`
	FreshEnvelopes     int     `json:"fresh_envelopes"`
	Ratio              float64 `json:"ratio"`      // grown ÷ fresh store bytes, before compaction
	SameState          bool    `json:"same_state"` // both hold the final values (a sample of records checked)
	// The grown store after `fieldsync compact --min-age 0` (superseded
	// values pruned, tables rewritten, value log collected), restarted
	// and stopped again; CompactedRatio is the aim, ≤ 2.
	CompactedStoreBytes    int64   `json:"compacted_store_bytes"`
	CompactedEnvelopeBytes int64   `json:"compacted_envelope_bytes"`
	PrunedEnvelopes        int     `json:"pruned_envelopes"`
	CompactSeconds         float64 `json:"compact_seconds"`
	CompactedRatio         float64 `json:"compacted_ratio"`
	CompactedSameState     bool    `json:"compacted_same_state"` // same final values and state digest after compaction
	// Cold is set when compaction stored the envelopes it cut in cold
	// form (docs/storage.md, "Cold envelopes"; off with --no-cold).
	// CompactedStoredEnvelopeBytes is the envelopes as stored (cold ones
	// at their cold size; before the store's own sealing), where
	// CompactedEnvelopeBytes counts them as served.
	Cold                         bool  `json:"cold"`
	FrozenEnvelopes              int   `json:"frozen_envelopes"`
	CompactedStoredEnvelopeBytes int64 `json:"compacted_stored_envelope_bytes"`
}

// Run writes the workload into two agents started from exe.
// With noCold, compaction keeps the envelopes it cuts whole.
func Run(ctx context.Context, exe string, size w1.Size, rounds int, noCold bool, out io.Writer, jsonOut bool) (Result, error) {
	res := Result{Workload: "W1-storage", Size: size.Name, Records: size.Records, Rounds: rounds, Cold: !noCold,
		Nproc: runtime.NumCPU(), GoVersion: runtime.Version()}
	root, err := os.MkdirTemp("", "fieldsync-storage-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(root)
	cl, err := harness.New(ctx, exe, root, "OMN")
	if err != nil {
		return res, err
	}
	defer cl.StopAll()
	w := w1.Generate(size)
	// value is field f of record i after round r (0: the first write).
	value := func(i, f, r int) string {
		if r == 0 {
			return w.Initial[i][f]
		}
		return fmt.Sprintf("%s · %d", w.Initial[i][f], r)
	}
	write := func(c *api.Client, space string, r int) error {
		return w1agent.Parallel(size.Records, func(i int) error {
			fields := make([]api.FieldValue, len(w1.Fields))
			for f, name := range w1.Fields {
				fields[f] = api.FieldValue{Name: name, Value: value(i, f, r)}
			}
			_, err := c.RecordPut(ctx, api.RecordPutRequest{Space: space, Record: w1.RecordID(i), Fields: fields})
			return err
		}, func(i int) int { return i })
	}
	// final checks a sample of records (every 97th) against the final
	// values, without a conflict.
	final := func(n *harness.Node, space string) (bool, error) {
		for i := 0; i < size.Records; i += 97 {
			rec, err := n.Client().RecordGet(ctx, api.RecordRef{Space: space, Record: w1.RecordID(i)})
			if err != nil {
				return false, err
			}
			for f, name := range w1.Fields {
				if got := rec.Fields[name]; got.Value != value(i, f, rounds) || got.Conflict {
					return false, nil
				}
			}
		}
		return true, nil
	}
	same := true
	// measure checks n's final state and reads its digest, stops it, then
	// sizes its directory.
	measure := func(n *harness.Node, space string) (api.Digest, int64, error) {
		ok, err := final(n, space)
		if err != nil {
			return api.Digest{}, 0, err
		}
		same = same && ok
		d, err := n.Client().SpaceDigest(ctx, api.SpaceRef{Space: space})
		if err != nil {
			return d, 0, err
		}
		if err := cl.Stop(n); err != nil {
			return d, 0, err
		}
		return d, w1agent.DirSize(n.Dir), nil
	}
	nodes := map[string]*harness.Node{}
	run := func(name string, from int) (api.Digest, int64, error) {
		n, err := cl.Add(ctx, name, "Officer "+name, false)
		if err != nil {
			return api.Digest{}, 0, err
		}
		nodes[name] = n
		if err := cl.Start(ctx, n, ""); err != nil {
			return api.Digest{}, 0, err
		}
		sp, err := n.Client().SpaceCreate(ctx, api.SpaceCreateRequest{Name: "w1"})
		if err != nil {
			return api.Digest{}, 0, err
		}
		for r := from; r <= rounds; r++ {
			if err := write(n.Client(), sp.ID, r); err != nil {
				return api.Digest{}, 0, fmt.Errorf("%s, round %d: %w", name, r, err)
			}
		}
		return measure(n, sp.ID)
	}
	dg, grown, err := run("grown", 0)
	if err != nil {
		return res, err
	}
	// The grown store again, compacted.
	gn := nodes["grown"]
	if err := cl.Start(ctx, gn, ""); err != nil {
		return res, err
	}
	zero := int64(0)
	t0 := time.Now()
	cr, err := gn.Client().Compact(ctx, api.CompactRequest{Space: dg.Space, MinAgeSeconds: &zero, NoCold: noCold})
	if err != nil {
		return res, fmt.Errorf("compact: %w", err)
	}
	res.CompactSeconds = time.Since(t0).Seconds()
	for _, s := range cr.Spaces {
		res.PrunedEnvelopes += s.Envelopes
		res.FrozenEnvelopes += s.Frozen
		res.CompactedStoredEnvelopeBytes += s.BytesAfter
	}
	same = true
	dc, compacted, err := measure(gn, dg.Space)
	if err != nil {
		return res, err
	}
	res.CompactedSameState = same && dc.Digest == dg.Digest && dc.Envelopes == dg.Envelopes
	same = true
	df, fresh, err := run("fresh", rounds)
	if err != nil {
		return res, err
	}
	res.GrownStoreBytes, res.FreshStoreBytes = grown, fresh
	res.GrownEnvelopeBytes, res.FreshEnvelopeBytes = dg.Bytes, df.Bytes
	res.GrownEnvelopes, res.FreshEnvelopes = dg.Count, df.Count
	res.Ratio = float64(grown) / float64(max(fresh, 1))
	res.SameState = same
	res.CompactedStoreBytes, res.CompactedEnvelopeBytes = compacted, dc.Bytes
	res.CompactedRatio = float64(compacted) / float64(max(fresh, 1))
	Print(out, res)
	if jsonOut {
		j, _ := json.Marshal(res)
		fmt.Fprintf(out, "%s\n", j)
	}
	return res, nil
}

// Print prints the figures for people.
func Print(out io.Writer, r Result) {
	fmt.Fprintf(out, "W1-%s storage: %d records × %d fields, written once and overwritten in full %d times (nproc %d, %s)\n",
		r.Size, r.Records, len(w1.Fields), r.Rounds, r.Nproc, r.GoVersion)
	row := func(k string, store, env int64, n int) {
		fmt.Fprintf(out, "  %-34s store %8.2f MB   envelopes %8.2f MB in %d\n", k, float64(store)/1e6, float64(env)/1e6, n)
	}
	row("after every round", r.GrownStoreBytes, r.GrownEnvelopeBytes, r.GrownEnvelopes)
	if r.Cold {
		row("after compact (pruned, cold)", r.CompactedStoreBytes, r.CompactedEnvelopeBytes, r.GrownEnvelopes)
		fmt.Fprintf(out, "  %-34s %8.2f MB as stored (%d envelopes cold)\n", "", float64(r.CompactedStoredEnvelopeBytes)/1e6, r.FrozenEnvelopes)
	} else {
		row("after compact (pruned, whole)", r.CompactedStoreBytes, r.CompactedEnvelopeBytes, r.GrownEnvelopes)
	}
	row("fresh store, final state only", r.FreshStoreBytes, r.FreshEnvelopeBytes, r.FreshEnvelopes)
	fmt.Fprintf(out, "  %-34s %.2f× before compaction; same final state: %v\n", "grown ÷ fresh", r.Ratio, r.SameState)
	fmt.Fprintf(out, "  %-34s %.2f× (aim ≤ 2×); %d envelopes pruned in %.1f s; same state and envelope IDs: %v\n",
		"compacted ÷ fresh", r.CompactedRatio, r.PrunedEnvelopes, r.CompactSeconds, r.CompactedSameState)
}
