package w1agent

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
	"fieldsync/internal/harness"
)

// JoinOptions shape the join bench (issue 15: "a new officer joining a
// space of 10,000 envelopes, 12 authors").
type JoinOptions struct {
	Envelopes int // change envelopes in the space (default 10,000)
	Authors   int // officer devices that wrote them (default 12)
}

// DefaultJoinOptions are issue 15's figures.
func DefaultJoinOptions() JoinOptions { return JoinOptions{Envelopes: 10_000, Authors: 12} }

// JoinResult is what the join bench measures.
type JoinResult struct {
	Workload    string  `json:"workload"` // "join"
	Authors     int     `json:"authors"`
	Envelopes   int     `json:"envelopes"`    // every envelope of the space (changes, key shares, profiles, routing)
	SealedBytes int64   `json:"sealed_bytes"` // their total size
	JoinMS      float64 `json:"join_ms"`      // agent start → holds every envelope, state equal to the hub's
	SyncMS      float64 `json:"sync_ms"`      // API answering → the same point (the sync alone)
	StartMS     float64 `json:"start_ms"`     // agent start → API answering (keystore, store, memberlist)
	CPUMS       float64 `json:"cpu_ms"`       // CPU of the new device's and the hub's workers over JoinMS
	BytesIn     int64   `json:"bytes_in"`     // sync bytes the new device received
	PeakRSSNew  float64 `json:"peak_rss_new_mb"`
	PeakRSSHub  float64 `json:"peak_rss_hub_mb"`
	Nproc       int     `json:"nproc"`
	GoVersion   string  `json:"go_version"`
}

// RunJoin builds a space of o.Envelopes change envelopes written by
// o.Authors officer devices (one record of two fields each, W1's values),
// all of it gathered on the first author (the hub), then enrolls a new
// officer device, starts it joined to the hub alone and times its first
// full sync: from the start of its agent until it holds every envelope
// of the space and its state digest equals the hub's (the hub wraps the
// space's key to it as soon as it learns its certificate). Real agent
// processes on 127.0.0.1 started from exe.
func RunJoin(ctx context.Context, exe string, o JoinOptions, out io.Writer, jsonOut bool) (JoinResult, error) {
	res := JoinResult{Workload: "join", Authors: o.Authors, Nproc: runtime.NumCPU(), GoVersion: runtime.Version()}
	if o.Envelopes < o.Authors || o.Authors < 1 {
		return res, fmt.Errorf("join bench: need at least one envelope per author (%d envelopes, %d authors)", o.Envelopes, o.Authors)
	}
	if alt := os.Getenv("FIELDSYNC_BENCH_AGENT_EXE"); alt != "" {
		exe = alt
	}
	root, err := os.MkdirTemp("", "fieldsync-join-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(root)
	cl, err := harness.New(ctx, exe, root, "OMN")
	if err != nil {
		return res, err
	}
	defer cl.StopAll()

	// The space, written by the authors one after the other: each joins
	// the hub, receives the space (and its key), writes its share, and
	// stops once the hub holds it.
	hub, err := cl.Add(ctx, "hub", "Officer 1", false)
	if err != nil {
		return res, err
	}
	if err := cl.Start(ctx, hub, ""); err != nil {
		return res, err
	}
	ch := hub.Client()
	space, err := ch.SpaceCreate(ctx, api.SpaceCreateRequest{Name: "join"})
	if err != nil {
		return res, err
	}
	arabic, latin := w1.Vocabulary()
	record := func(i int) api.RecordPutRequest {
		return api.RecordPutRequest{Space: space.ID, Record: w1.RecordID(i), Fields: []api.FieldValue{
			{Name: "given_name", Value: latin[i%len(latin)] + " " + arabic[(i*7)%len(arabic)]},
			{Name: "village", Value: arabic[(i*13)%len(arabic)] + " " + latin[(i*31)%len(latin)]},
		}}
	}
	next := 0
	for k := 0; k < o.Authors; k++ {
		share := o.Envelopes / o.Authors
		if k < o.Envelopes%o.Authors {
			share++
		}
		n := hub
		if k > 0 {
			if n, err = cl.Add(ctx, fmt.Sprintf("author%d", k+1), fmt.Sprintf("Officer %d", k+1), false); err != nil {
				return res, err
			}
			if err := cl.Start(ctx, n, "", hub.Bind); err != nil {
				return res, err
			}
			first := record(next)
			if _, err := harness.WaitUntil(ctx, 2*time.Minute, n.Name+" receiving the space", func() (bool, error) {
				_, err := n.Client().RecordPut(ctx, first)
				return err == nil, nil
			}); err != nil {
				return res, err
			}
			next++
			share--
		}
		// One client, one write at a time: concurrent writes to one space
		// are combined into shared envelopes (docs/design.md §4), and the
		// space must hold o.Envelopes of them.
		c := n.Client()
		for i := 0; i < share; i++ {
			if _, err := c.RecordPut(ctx, record(next)); err != nil {
				return res, fmt.Errorf("%s writing: %w", n.Name, err)
			}
			next++
		}
		if n != hub {
			if _, err := harness.WaitUntil(ctx, 5*time.Minute, "the hub receiving "+n.Name+"'s records", func() (bool, error) {
				return harness.Converged(ctx, space.ID, hub, n)
			}); err != nil {
				return res, err
			}
			if err := cl.Stop(n); err != nil {
				return res, err
			}
		}
	}
	d, err := ch.SpaceDigest(ctx, api.SpaceRef{Space: space.ID})
	if err != nil {
		return res, err
	}
	res.Envelopes, res.SealedBytes = d.Count, d.Bytes

	// The new officer's device: enrolled, never started, then joined to
	// the hub alone.
	nd, err := cl.Add(ctx, "new", "Officer New", false)
	if err != nil {
		return res, err
	}
	cpuHub := cpuMS(hub)
	prof := newProfiler()
	t0 := time.Now()
	if err := cl.Start(ctx, nd, "", hub.Bind); err != nil {
		return res, err
	}
	tAPI := time.Now()
	prof.start(ctx, "join", hub, nd)
	cn := nd.Client()
	trace := os.Getenv("FIELDSYNC_BENCH_TRACE") != ""
	// Poll the cheap status (every 50 ms, WaitUntil); compute the digests
	// (a scan of the whole space on both sides) only once it says the new
	// device may have everything.
	_, err = harness.WaitUntil(ctx, 10*time.Minute, "the new device's first full sync", func() (bool, error) {
		st, err := cn.Status(ctx)
		if trace && err == nil && st.Sync != nil { // where the time goes (status only: cheap)
			unreadable := 0
			for _, u := range st.Unreadable {
				unreadable += u.Envelopes
			}
			fmt.Fprintf(os.Stderr, "%7.2fs new: rounds %d in %d B added %d unreadable %d\n",
				time.Since(t0).Seconds(), st.Sync.Rounds, st.Sync.BytesIn, st.Sync.EnvelopesAdded, unreadable)
		}
		// Necessary, not sufficient (Converged decides): every sealed byte
		// of the space came in, and nothing held is waiting for a key.
		if err != nil || st.Sync == nil || st.Sync.BytesIn < uint64(d.Bytes) || len(st.Unreadable) > 0 {
			return false, nil
		}
		return harness.Converged(ctx, space.ID, hub, nd)
	})
	if err != nil {
		return res, err
	}
	done := time.Now()
	res.JoinMS, res.SyncMS, res.StartMS = ms(done.Sub(t0)), ms(done.Sub(tAPI)), ms(tAPI.Sub(t0))
	res.CPUMS = cpuMS(nd) + cpuMS(hub) - cpuHub
	prof.heap(ctx, "join", hub, nd)
	if st, err := cn.Status(ctx); err == nil && st.Sync != nil {
		res.BytesIn = int64(st.Sync.BytesIn)
	}
	res.PeakRSSNew, res.PeakRSSHub = nd.PeakRSSMB(), hub.PeakRSSMB()
	PrintJoin(out, res)
	if jsonOut {
		j, _ := json.Marshal(res)
		fmt.Fprintf(out, "%s\n", j)
	}
	return res, nil
}

// PrintJoin prints the join bench's figures for people.
func PrintJoin(out io.Writer, r JoinResult) {
	fmt.Fprintf(out, "join: a new device's first full sync of a space of %d envelopes (%.2f MB) by %d authors (nproc %d, %s)\n",
		r.Envelopes, float64(r.SealedBytes)/1e6, r.Authors, r.Nproc, r.GoVersion)
	row := func(k, v string) { fmt.Fprintf(out, "  %-26s %s\n", k, v) }
	row("first full sync", fmt.Sprintf("%.1f ms (agent start %.1f ms + sync %.1f ms)", r.JoinMS, r.StartMS, r.SyncMS))
	row("per 10,000 envelopes", fmt.Sprintf("%.1f ms", r.JoinMS*10_000/float64(max(r.Envelopes, 1))))
	row("CPU (new device + hub)", fmt.Sprintf("%.0f ms", r.CPUMS))
	row("received", fmt.Sprintf("%.2f MB", float64(r.BytesIn)/1e6))
	row("peak RSS", fmt.Sprintf("new device %.1f MB, hub %.1f MB", r.PeakRSSNew, r.PeakRSSHub))
}
