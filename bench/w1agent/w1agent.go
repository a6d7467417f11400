// Package w1agent runs BENCH.md's W1 workload on the agent layer: two real
// agent processes (sealed, signed changes in Badger, synced over memberlist
// on 127.0.0.1), driven through the local API with the reference
// generator of package w1.
//
// `fieldsync bench w1 --layer agent [--size S|L] [--json]` calls Run.
package w1agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"fieldsync/agent/api"
	"fieldsync/bench/w1"
	"fieldsync/internal/harness"
	"fieldsync/internal/platform"
)

// Result is w1.Result plus the agent layer's figures.
type Result struct {
	w1.Result
	SealedBytes int64 `json:"sealed_bytes"` // the sealed envelopes of the delta, both sides
	HeldBytes   int64 `json:"held_bytes"`   // every sealed envelope a side holds at the end
	StoreBytes  int64 `json:"store_bytes"`  // A's data directory after the delta sync
	Clients     int   `json:"clients"`      // concurrent API clients per side
}

// Clients is the number of concurrent API clients each side writes with.
const Clients = 32

// Run runs W1 on two agents started from the fieldsync binary exe.
func Run(ctx context.Context, exe string, size w1.Size, out io.Writer, jsonOut bool) (Result, error) {
	res := Result{Clients: Clients}
	if alt := os.Getenv("FIELDSYNC_BENCH_AGENT_EXE"); alt != "" {
		exe = alt // another build's agents under this build's harness (before/after comparisons)
	}
	res.Workload, res.Size, res.Layer = "W1", size.Name, "agent"
	res.Nproc, res.GoVersion = runtime.NumCPU(), runtime.Version()
	res.Records, res.Updates = size.Records, size.Updates
	root, err := os.MkdirTemp("", "fieldsync-w1-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(root)
	cl, err := harness.New(ctx, exe, root, "OMN")
	if err != nil {
		return res, err
	}
	defer cl.StopAll()
	a, err := cl.Add(ctx, "a", "Officer A", false)
	if err != nil {
		return res, err
	}
	b, err := cl.Add(ctx, "b", "Officer B", false)
	if err != nil {
		return res, err
	}
	w := w1.Generate(size)
	res.ExpectedConflicts = len(w.Conflicts)
	peak := map[string]float64{}
	trace := os.Getenv("FIELDSYNC_BENCH_TRACE") != ""
	notePeak := func(n *harness.Node) {
		v := n.PeakRSSMB()
		if v > peak[n.Name] {
			peak[n.Name] = v
		}
		if trace { // which phase sets the peak
			fmt.Fprintf(os.Stderr, "peak RSS of %s so far: %.1f MB\n", n.Name, v)
		}
	}

	prof := newProfiler()
	mem := newMemSampler(ctx, prof, a, b)
	defer mem.report(os.Stderr)
	mem.setPhase("create")

	// Step 2: A creates every record, one change per record.
	if err := cl.Start(ctx, a, ""); err != nil {
		return res, err
	}
	ca := a.Client()
	space, err := ca.SpaceCreate(ctx, api.SpaceCreateRequest{Name: "w1"})
	if err != nil {
		return res, err
	}
	err = Parallel(len(w.Initial), func(i int) error {
		fields := make([]api.FieldValue, len(w1.Fields))
		for f, name := range w1.Fields {
			fields[f] = api.FieldValue{Name: name, Value: w.Initial[i][f]}
		}
		_, err := ca.RecordPut(ctx, api.RecordPutRequest{Space: space.ID, Record: w1.RecordID(i), Fields: fields})
		return err
	}, func(i int) int { return i })
	if err != nil {
		return res, fmt.Errorf("create records: %w", err)
	}

	// Step 3: initial sync A -> B.
	d0, err := a.Client().SpaceDigest(ctx, api.SpaceRef{Space: space.ID})
	if err != nil {
		return res, err
	}
	mem.setPhase("init")
	cpuA := cpuMS(a)
	t0 := time.Now()
	if err := cl.Start(ctx, b, "", a.Bind); err != nil {
		return res, err
	}
	prof.start(ctx, "init", a, b)
	if err := waitConverged(ctx, "initial sync", space.ID, a, b, 0, d0.Count); err != nil {
		return res, err
	}
	res.InitSyncMS = ms(time.Since(t0))
	res.InitSyncCPUMS = cpuMS(a) - cpuA + cpuMS(b)
	prof.heap(ctx, "init", a, b)
	sa, _ := a.Client().Status(ctx)
	sb, _ := b.Client().Status(ctx)
	res.InitSyncBytes = int64(sa.Sync.BytesOut + sb.Sync.BytesOut)
	notePeak(a)
	notePeak(b)

	// Step 4: offline phase. Each side writes alone; updates to one
	// (record, field) pair stay in generator order (one client per pair).
	pairClient := func(p w1.Pick) int { return p.Record*len(w1.Fields) + p.Field }
	update := func(c *api.Client, picks []w1.Pick) error {
		return Parallel(len(picks), func(i int) error {
			p := picks[i]
			_, err := c.RecordPut(ctx, api.RecordPutRequest{Space: space.ID, Record: w1.RecordID(p.Record),
				Fields: []api.FieldValue{{Name: w1.Fields[p.Field], Value: p.Value}}})
			return err
		}, func(i int) int { return pairClient(picks[i]) })
	}
	if err := cl.Stop(b); err != nil {
		return res, err
	}
	before := map[string]int64{}
	counts := map[string]int{}
	for _, n := range []*harness.Node{a, b} {
		d, err := digestOf(ctx, cl, n, space.ID)
		if err != nil && n == a {
			return res, err
		}
		before[n.Name] = d.Bytes
		counts[n.Name] = d.Count
	}
	mem.setPhase("updates")
	cpuA = cpuMS(a)
	t0 = time.Now()
	if err := update(a.Client(), w.A); err != nil {
		return res, fmt.Errorf("A's updates: %w", err)
	}
	res.UpdatesPerS = float64(len(w.A)) / time.Since(t0).Seconds()
	res.UpdatesCPUMS = cpuMS(a) - cpuA
	notePeak(a)
	dA, err := a.Client().SpaceDigest(ctx, api.SpaceRef{Space: space.ID})
	if err != nil {
		return res, err
	}
	if err := cl.Stop(a); err != nil {
		return res, err
	}
	if err := cl.Start(ctx, b, ""); err != nil {
		return res, err
	}
	if d, err := b.Client().SpaceDigest(ctx, api.SpaceRef{Space: space.ID}); err == nil {
		before["b"] = d.Bytes
	}
	if err := update(b.Client(), w.B); err != nil {
		return res, fmt.Errorf("B's updates: %w", err)
	}
	notePeak(b)
	dB, err := b.Client().SpaceDigest(ctx, api.SpaceRef{Space: space.ID})
	if err != nil {
		return res, err
	}

	// Step 5: delta sync both ways, from A's agent joining B until both
	// hold everything, applied.
	mem.setPhase("delta")
	cpuB := cpuMS(b)
	t0 = time.Now()
	if err := cl.Start(ctx, a, "", b.Bind); err != nil {
		return res, err
	}
	prof.start(ctx, "delta", a, b)
	stopTrace := traceProgress(ctx, t0, a, b)
	if err := waitConverged(ctx, "delta sync", space.ID, a, b, dB.Count-counts["a"], dA.Count-counts["a"]); err != nil {
		return res, err
	}
	res.DeltaSyncMS = ms(time.Since(t0))
	res.DeltaSyncCPUMS = cpuMS(a) + cpuMS(b) - cpuB
	stopTrace()
	prof.heap(ctx, "delta", a, b)
	res.Converged = true
	sa, _ = a.Client().Status(ctx)
	sb, _ = b.Client().Status(ctx)
	res.DeltaBytesAB = int64(sa.Sync.BytesOut)
	res.DeltaBytesBA = int64(sb.Sync.BytesOut)
	da, _ := a.Client().SpaceDigest(ctx, api.SpaceRef{Space: space.ID})
	// Both sides now hold the same envelopes: the delta is what both wrote
	// offline (each side held the same base before).
	res.SealedBytes = da.Bytes - before["a"]
	res.HeldBytes = da.Bytes
	notePeak(a)
	notePeak(b)

	mem.setPhase("after")

	// Conflicts, matched pair by pair against the generator.
	res.Conflicts, res.ConflictsMatch, err = checkConflicts(ctx, a.Client(), space.ID, w)
	if err != nil {
		return res, err
	}
	res.PeakRSSMB = max(peak["a"], peak["b"])
	cl.StopAll()
	res.StoreBytes = DirSize(a.Dir)
	res.StateBytes = res.StoreBytes
	Print(out, res)
	if jsonOut {
		j, _ := json.Marshal(res)
		fmt.Fprintf(out, "%s\n", j)
	}
	return res, nil
}

func digestOf(ctx context.Context, cl *harness.Cluster, n *harness.Node, space string) (api.Digest, error) {
	if !n.Running() {
		return api.Digest{}, fmt.Errorf("%s not running", n.Name)
	}
	return n.Client().SpaceDigest(ctx, api.SpaceRef{Space: space})
}

// Parallel runs fn(0..n-1) on Clients goroutines; items with the same
// key(i) go to the same goroutine, in order. It returns the first error.
func Parallel(n int, fn func(i int) error, key func(i int) int) error {
	var wg sync.WaitGroup
	errs := make(chan error, Clients)
	for c := 0; c < Clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < n; i++ {
				if key(i)%Clients != c {
					continue
				}
				if err := fn(i); err != nil {
					errs <- err
					return
				}
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func checkConflicts(ctx context.Context, c *api.Client, space string, w *w1.Workload) (int, bool, error) {
	list, err := c.ConflictsList(ctx, api.ConflictsListRequest{Space: space})
	if err != nil {
		return 0, false, err
	}
	got := map[string][]string{}
	for _, cf := range list {
		var vals []string
		for _, s := range cf.Siblings {
			vals = append(vals, s.Value)
		}
		got[cf.Record+"/"+cf.Field] = vals
	}
	ok := len(list) == len(w.Conflicts)
	for _, e := range w.Conflicts {
		vals := got[w1.RecordID(e.Record)+"/"+w1.Fields[e.Field]]
		if len(vals) != 2 || !(vals[0] == e.ValueA && vals[1] == e.ValueB || vals[0] == e.ValueB && vals[1] == e.ValueA) {
			ok = false
		}
	}
	return len(list), ok, nil
}

// DirSize is the disk space the files under dir use (allocated blocks, as
// du counts them: Badger's memory-mapped files are sparse).
func DirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += platform.AllocatedBytes(fi)
			}
		}
		return nil
	})
	return n
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Print prints the figures of BENCH.md for people.
func Print(out io.Writer, r Result) {
	w1.PrintTable(out, r.Result)
	row := func(k, v string) { fmt.Fprintf(out, "  %-26s %s\n", k, v) }
	wire := r.DeltaBytesAB + r.DeltaBytesBA
	row("sealed envelopes (delta)", fmt.Sprintf("%.2f MB; wire/sealed = %.2f", float64(r.SealedBytes)/1e6, float64(wire)/float64(max(r.SealedBytes, 1))))
	row("store", fmt.Sprintf("%.2f MB (%.2f× the %.2f MB of sealed envelopes it holds)", float64(r.StoreBytes)/1e6, float64(r.StoreBytes)/float64(max(r.HeldBytes, 1)), float64(r.HeldBytes)/1e6))
	row("API clients per side", strconv.Itoa(r.Clients))
}

// waitConverged waits until a and b hold the same envelopes and state
// (harness.Converged). A digest scans every envelope and record of the
// space, so polling it every 50 ms would take a large share of the CPU
// the agents are being measured on: it is computed once each agent's sync
// counters say it received what it lacked (needA, needB envelopes), and
// every 5 s regardless (should a counter fall short).
func waitConverged(ctx context.Context, what, space string, a, b *harness.Node, needA, needB int) error {
	last := time.Now()
	_, err := harness.WaitUntil(ctx, 30*time.Minute, what, func() (bool, error) {
		if time.Since(last) < 5*time.Second {
			sa, err := a.Client().Status(ctx)
			if err != nil || sa.Sync == nil || sa.Sync.EnvelopesAdded < uint64(needA) {
				return false, err
			}
			sb, err := b.Client().Status(ctx)
			if err != nil || sb.Sync == nil || sb.Sync.EnvelopesAdded < uint64(needB) {
				return false, err
			}
		}
		last = time.Now()
		return harness.Converged(ctx, space, a, b)
	})
	return err
}
