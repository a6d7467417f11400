package w1agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"fieldsync/internal/datadir"
	"fieldsync/internal/harness"
)

// profiler captures the agents' CPU profiles over their sockets (the
// agent serves Go's profiler there) while a phase runs, when
// FIELDSYNC_BENCH_PPROF names a directory: <dir>/<phase>-<node>.cpu.pprof
// and, at the end of the phase, <dir>/<phase>-<node>.heap.pprof.
// FIELDSYNC_BENCH_PPROF_SECONDS bounds the CPU profile (default 10).
type profiler struct {
	dir  string
	secs int
	wg   sync.WaitGroup
}

func newProfiler() *profiler {
	dir := os.Getenv("FIELDSYNC_BENCH_PPROF")
	if dir == "" {
		return nil
	}
	secs, _ := strconv.Atoi(os.Getenv("FIELDSYNC_BENCH_PPROF_SECONDS"))
	if secs <= 0 {
		secs = 10
	}
	os.MkdirAll(dir, 0o755)
	return &profiler{dir: dir, secs: secs}
}

// start begins CPU profiles of the nodes for the phase.
func (p *profiler) start(ctx context.Context, phase string, nodes ...*harness.Node) {
	if p == nil {
		return
	}
	for _, n := range nodes {
		p.wg.Add(1)
		go func(n *harness.Node) {
			defer p.wg.Done()
			p.fetch(ctx, n, "/debug/pprof/profile?seconds="+strconv.Itoa(p.secs), phase+"-"+n.Name+".cpu.pprof")
		}(n)
	}
}

// heap saves the nodes' heap profiles and waits for the CPU profiles.
func (p *profiler) heap(ctx context.Context, phase string, nodes ...*harness.Node) {
	if p == nil {
		return
	}
	for _, n := range nodes {
		p.fetch(ctx, n, "/debug/pprof/heap", phase+"-"+n.Name+".heap.pprof")
	}
	p.wg.Wait()
}

func (p *profiler) fetch(ctx context.Context, n *harness.Node, path, name string) {
	sock := datadir.Layout{Dir: n.Dir}.Socket()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://agent"+path, nil)
	resp, err := hc.Do(req)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pprof %s: %v\n", name, err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(filepath.Join(p.dir, name))
	if err != nil {
		return
	}
	defer f.Close()
	io.Copy(f, resp.Body)
}

// traceProgress prints, when FIELDSYNC_BENCH_TRACE is set, each node's
// sync counters every 250 ms to stderr (where the time of a phase goes).
func traceProgress(ctx context.Context, t0 time.Time, nodes ...*harness.Node) (stop func()) {
	if os.Getenv("FIELDSYNC_BENCH_TRACE") == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(250 * time.Millisecond):
			}
			line := fmt.Sprintf("%7.2fs", time.Since(t0).Seconds())
			for _, n := range nodes {
				st, err := n.Client().Status(ctx)
				if err != nil || st.Sync == nil {
					line += fmt.Sprintf("  %s: -", n.Name)
					continue
				}
				line += fmt.Sprintf("  %s: rounds %d added %d sent %d dups %d in %d", n.Name, st.Sync.Rounds, st.Sync.EnvelopesAdded, st.Sync.EnvelopesSent, st.Sync.Duplicates, st.Sync.BytesIn)
			}
			fmt.Fprintln(os.Stderr, line)
		}
	}()
	return func() { close(done) }
}

// cpuMS is the CPU time (user + system) the node's agent worker has used
// since it started, in ms; 0 where /proc cannot tell. A phase's CPU is the
// difference over it, summed over both agents: unlike wall time, it hardly
// depends on what else the machine runs.
func cpuMS(n *harness.Node) float64 {
	pid := n.WorkerPid()
	if pid == 0 {
		pid = n.Pid()
	}
	return harness.ProcessCPUMillis(pid)
}
