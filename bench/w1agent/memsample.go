package w1agent

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"fieldsync/internal/harness"
)

// memSampler samples, when FIELDSYNC_BENCH_MEM is set, each node's agent
// worker's /proc/PID/status every 20 ms and keeps, per phase and node, the
// sample with the largest resident set, split into RssAnon (Go heap, stacks,
// Badger's Calloc buffers) and RssFile (memory-mapped tables, value log and
// the binary). VmHWM alone says how high a process went, not which phase
// took it there nor what it was made of (docs/design.md §7, memory).
// With FIELDSYNC_BENCH_PPROF also set, it saves a heap profile of a node
// whenever its RSS passed its previous peak by 8 MB (at most one a second):
// <dir>/peak-<phase>-<node>-<n>.heap.pprof (and .heap.txt, with the
// runtime's MemStats), the last is nearest the peak.
type memSampler struct {
	mu    sync.Mutex
	phase string
	peaks map[string]memSample // phase + "/" + node
	order []string
	stop  chan struct{}
	done  chan struct{}
	prof  *profiler
}

type memSample struct {
	RSS, Anon, File, HWM float64 // MB
}

func newMemSampler(ctx context.Context, prof *profiler, nodes ...*harness.Node) *memSampler {
	if os.Getenv("FIELDSYNC_BENCH_MEM") == "" {
		return nil
	}
	s := &memSampler{phase: "start", peaks: map[string]memSample{}, stop: make(chan struct{}), done: make(chan struct{}), prof: prof}
	go s.run(ctx, nodes)
	return s
}

// setPhase names the phase later samples belong to.
func (s *memSampler) setPhase(p string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
}

func (s *memSampler) run(ctx context.Context, nodes []*harness.Node) {
	defer close(s.done)
	lastProf := map[string]time.Time{}
	profPeak := map[string]float64{}
	nprof := 0
	for {
		select {
		case <-s.stop:
			return
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
		for _, n := range nodes {
			pid := n.WorkerPid()
			if pid == 0 {
				continue
			}
			m, ok := readStatus(pid)
			if !ok {
				continue
			}
			s.mu.Lock()
			k := s.phase + "/" + n.Name
			p, seen := s.peaks[k]
			if !seen {
				s.order = append(s.order, k)
			}
			if m.RSS > p.RSS {
				s.peaks[k] = m
			}
			phase := s.phase
			s.mu.Unlock()
			if s.prof != nil && m.RSS > profPeak[n.Name]+8 && time.Since(lastProf[n.Name]) > time.Second {
				profPeak[n.Name] = m.RSS
				lastProf[n.Name] = time.Now()
				nprof++
				name := fmt.Sprintf("peak-%s-%s-%02d", phase, n.Name, nprof)
				s.prof.fetch(ctx, n, "/debug/pprof/heap", name+".heap.pprof")
				s.prof.fetch(ctx, n, "/debug/pprof/heap?debug=1", name+".heap.txt") // with runtime.MemStats
			}
		}
	}
}

// report stops sampling and prints the peaks, phase by phase.
func (s *memSampler) report(out io.Writer) {
	if s == nil {
		return
	}
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := s.order
	fmt.Fprintf(out, "memory per phase (largest RSS sample, MB): %-10s %-4s %7s %7s %7s %7s\n", "phase", "node", "RSS", "anon", "file", "HWM")
	for _, k := range keys {
		p := s.peaks[k]
		i := strings.LastIndexByte(k, '/')
		fmt.Fprintf(out, "memory per phase (largest RSS sample, MB): %-10s %-4s %7.1f %7.1f %7.1f %7.1f\n", k[:i], k[i+1:], p.RSS, p.Anon, p.File, p.HWM)
	}
}

func readStatus(pid int) (memSample, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return memSample{}, false
	}
	var m memSample
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		v /= 1024 // kB → MB (as VmHWM is reported elsewhere)
		switch f[0] {
		case "VmRSS:":
			m.RSS = v
		case "RssAnon:":
			m.Anon = v
		case "RssFile:":
			m.File = v
		case "VmHWM:":
			m.HWM = v
		}
	}
	return m, m.RSS > 0
}
