// Package wmesh runs BENCH.md's W-mesh workload: N agent processes on
// 127.0.0.1 in the local profile, joined in one mesh; one agent writes, and
// the time until every agent has the write is measured over several
// writes; then the idle traffic per agent.
//
// `fieldsync bench wmesh [--agents N] [--writes W] [--json]` calls Run.
package wmesh

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"sync"
	"time"

	"fieldsync/agent/api"
	"fieldsync/internal/harness"
)

// Result is what the benchmark reports (BENCH.md W-mesh).
type Result struct {
	Workload       string  `json:"workload"`
	Agents         int     `json:"agents"`
	Writes         int     `json:"writes"`
	MedianMS       float64 `json:"median_ms"`        // median over writes of the time until every agent has it
	MaxMS          float64 `json:"max_ms"`           // the largest of those
	IdleBytesPerS  float64 `json:"idle_bytes_per_s"` // gossip + sync bytes sent per agent per second, idle
	IdleGossipPerS float64 `json:"idle_gossip_bytes_per_s"`
	Nproc          int     `json:"nproc"`
	GoVersion      string  `json:"go_version"`
}

// Run starts n agents from the fieldsync binary exe and measures.
func Run(ctx context.Context, exe string, n, writes int, idle time.Duration, out io.Writer, jsonOut bool) (Result, error) {
	res := Result{Workload: "W-mesh", Agents: n, Writes: writes, Nproc: runtime.NumCPU(), GoVersion: runtime.Version()}
	root, err := os.MkdirTemp("", "fieldsync-wmesh-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(root)
	cl, err := harness.New(ctx, exe, root, "OMN")
	if err != nil {
		return res, err
	}
	defer cl.StopAll()
	nodes := make([]*harness.Node, n)
	for i := range nodes {
		if nodes[i], err = cl.Add(ctx, fmt.Sprintf("n%02d", i), fmt.Sprintf("Officer %d", i), false); err != nil {
			return res, err
		}
	}
	if err := cl.Start(ctx, nodes[0], ""); err != nil {
		return res, err
	}
	for _, nd := range nodes[1:] {
		if err := cl.Start(ctx, nd, "", nodes[0].Bind); err != nil {
			return res, err
		}
	}
	writer := nodes[0].Client()
	sp, err := writer.SpaceCreate(ctx, api.SpaceCreateRequest{Name: "mesh"})
	if err != nil {
		return res, err
	}
	fmt.Fprintf(out, "W-mesh: %d agents up; waiting until every one holds the space key\n", n)
	if _, err := writer.RecordPut(ctx, api.RecordPutRequest{Space: sp.ID, Record: "warmup", Fields: []api.FieldValue{{Name: "f", Value: "0"}}}); err != nil {
		return res, err
	}
	if _, err := waitAll(ctx, nodes, sp.ID, "warmup", "0", 5*time.Minute); err != nil {
		return res, err
	}
	var times []float64
	for w := 0; w < writes; w++ {
		val := fmt.Sprint("v", w)
		if _, err := writer.RecordPut(ctx, api.RecordPutRequest{Space: sp.ID, Record: "probe", Fields: []api.FieldValue{{Name: "f", Value: val}}}); err != nil {
			return res, err
		}
		d, err := waitAll(ctx, nodes, sp.ID, "probe", val, time.Minute)
		if err != nil {
			return res, err
		}
		// d runs from the acknowledged write to the last agent showing it.
		times = append(times, float64(d.Microseconds())/1000)
	}
	sort.Float64s(times)
	res.MedianMS = times[len(times)/2]
	res.MaxMS = times[len(times)-1]

	// Idle traffic: bytes sent by every agent over the idle window.
	sent := func() (total, gossip uint64) {
		for _, nd := range nodes {
			st, err := nd.Client().Status(ctx)
			if err == nil && st.Sync != nil {
				total += st.Sync.GossipBytesOut + st.Sync.BytesOut
				gossip += st.Sync.GossipBytesOut
			}
		}
		return
	}
	t0, g0 := sent()
	start := time.Now()
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(idle):
	}
	t1, g1 := sent()
	secs := time.Since(start).Seconds()
	res.IdleBytesPerS = float64(t1-t0) / secs / float64(n)
	res.IdleGossipPerS = float64(g1-g0) / secs / float64(n)

	fmt.Fprintf(out, "W-mesh, %d agent processes on 127.0.0.1, profile local (nproc %d, %s)\n", n, res.Nproc, res.GoVersion)
	fmt.Fprintf(out, "  a write reaching every agent  median %.0f ms, max %.0f ms over %d writes\n", res.MedianMS, res.MaxMS, writes)
	fmt.Fprintf(out, "  idle traffic per agent        %.0f B/s (memberlist gossip %.0f B/s, the rest anti-entropy rounds)\n", res.IdleBytesPerS, res.IdleGossipPerS)
	if jsonOut {
		b, _ := json.Marshal(res)
		fmt.Fprintf(out, "%s\n", b)
	}
	return res, nil
}

// waitAll polls every node until it shows value in the record's field f,
// and returns the time until the last one did.
func waitAll(ctx context.Context, nodes []*harness.Node, space, rec, value string, limit time.Duration) (time.Duration, error) {
	t0 := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var last time.Duration
	var firstErr error
	for _, nd := range nodes {
		wg.Add(1)
		go func(nd *harness.Node) {
			defer wg.Done()
			c := nd.Client()
			for time.Since(t0) < limit {
				r, err := c.RecordGet(ctx, api.RecordRef{Space: space, Record: rec})
				if err == nil && r.Fields["f"].Value == value {
					mu.Lock()
					last = max(last, time.Since(t0))
					mu.Unlock()
					return
				}
				// 10 ms: polling 50 agents every 2 ms was 25,000 API
				// requests a second on the same two cores as the agents,
				// and slowed the spread it measured.
				time.Sleep(10 * time.Millisecond)
			}
			mu.Lock()
			if firstErr == nil {
				firstErr = fmt.Errorf("agent %s did not get %s=%s within %s", nd.Name, rec, value, limit)
			}
			mu.Unlock()
		}(nd)
	}
	wg.Wait()
	return last, firstErr
}
