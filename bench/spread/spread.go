// Package spread runs issue 15's 1,000-agent simulation: N sync engines in
// one process, each with its own memberlist and sync listener on its own
// loopback address (127.1.x.y), real TLS sync sessions and real gossip, an
// in-memory verifying store per engine (sync/synctest). One engine writes;
// the bench measures how long the write takes to reach each engine
// (median, p99, max over every delivery of every write), how many sessions
// each engine ran for it and how many bytes it sent.
//
// It runs the sync engine's fan-out (a hint names a holder; receivers pull
// from it and pass the hint on once they hold the change: docs/sync.md
// "Fan-out") and, for comparison in the same run, the behaviour before it
// (every receiver pulls from the writer: sync.Config.PullFromWriter).
//
// The anti-entropy interval is off by default (an hour), so the figures are
// the hint path alone (a node the hints miss stays behind: Reached says so);
// each engine runs its first few join rounds while the mesh forms. Agents'
// Badger, envelope crypto and CRDT work are not in it: the W-mesh bench
// covers those with 50 agent processes.
//
// What two cores cannot carry, and what the bench does about it: engines
// join in batches of 50, each once the mesh has taken in the last; the
// profile is lan, with memberlist's failure detector slowed (probe every
// 5 s, 3 s timeout). With local's timings a few hundred engines in one
// process miss probe acks, suspect healthy members and gossip suspicions
// and refutations until the mesh never forms (measured: stuck near 400).
// Sessions per node and bytes per node do not depend on that; spread time
// does, since every engine's CPU is this machine's.
//
// FIELDSYNC_BENCH_PPROF=DIR writes a CPU profile of each mode there.
//
// `fieldsync bench spread [--agents N] [--writes W] [--mode fanout|writer|both] [--json]` calls Run.
package spread

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	fsync "fieldsync/sync"
	"fieldsync/sync/synctest"
)

// Options are the bench's knobs.
type Options struct {
	Agents   int           // engines (default 1,000)
	Writes   int           // writes timed per mode (default 5)
	Mode     string        // fanout, writer or both (default both)
	Interval time.Duration // anti-entropy interval; ≤ 0: off (default)
	Limit    time.Duration // per write: give up on engines the write has not reached (default 60 s)
	Form     time.Duration // how long to wait for full membership (default 3 min)
	Profile  string        // sync profile (default lan: see Run)
}

// ModeResult is one mode's figures.
type ModeResult struct {
	Mode          string  `json:"mode"`
	FormS         float64 `json:"form_s"`      // time to start the engines and form the mesh
	MembersMin    int     `json:"members_min"` // fewest live members any engine saw when the writes began
	MedianMS      float64 `json:"median_ms"`   // over every (write, engine) delivery
	P99MS         float64 `json:"p99_ms"`
	MaxMS         float64 `json:"max_ms"`
	Reached       float64 `json:"reached"` // deliveries within Limit / (writes × (N-1))
	WriterSess    float64 `json:"writer_sessions"`
	SessMedian    float64 `json:"sessions_per_node_median"` // sessions an engine ran per write (either end)
	SessP99       float64 `json:"sessions_per_node_p99"`
	SessMax       float64 `json:"sessions_per_node_max"`
	BytesMedian   float64 `json:"bytes_per_node_median"` // bytes an engine sent per write (sync streams and gossip)
	BytesP99      float64 `json:"bytes_per_node_p99"`
	BytesMax      float64 `json:"bytes_per_node_max"`
	HintPullsFail uint64  `json:"hint_pulls_failed"` // pulls that failed (busy holder, refused): retried from another holder
	Refused       uint64  `json:"streams_refused"`
}

// Result is what the bench reports.
type Result struct {
	Workload  string       `json:"workload"`
	Agents    int          `json:"agents"`
	Writes    int          `json:"writes"`
	Interval  string       `json:"anti_entropy_interval"`
	Profile   string       `json:"profile"`
	Modes     []ModeResult `json:"modes"`
	Nproc     int          `json:"nproc"`
	GoVersion string       `json:"go_version"`
}

// Run runs the simulation and prints a table (and a JSON line if jsonOut).
func Run(ctx context.Context, o Options, out io.Writer, jsonOut bool) (Result, error) {
	if o.Agents == 0 {
		o.Agents = 1000
	}
	if o.Writes == 0 {
		o.Writes = 5
	}
	if o.Mode == "" {
		o.Mode = "both"
	}
	if o.Limit == 0 {
		o.Limit = time.Minute
	}
	if o.Form == 0 {
		o.Form = 3 * time.Minute
	}
	if o.Profile == "" {
		// local's memberlist timings (200 ms probe timeout) suspect healthy
		// engines when a thousand share two cores, and the suspicion
		// gossip feeds itself; lan's (500 ms, gossip every 100 ms to 5)
		// hold.
		o.Profile = string(fsync.ProfileLAN)
	}
	if o.Agents < 2 || o.Agents > 60_000 {
		return Result{}, fmt.Errorf("spread: --agents must be 2..60000")
	}
	res := Result{Workload: "W-spread", Agents: o.Agents, Writes: o.Writes, Interval: "off", Profile: o.Profile,
		Nproc: runtime.NumCPU(), GoVersion: runtime.Version()}
	if o.Interval > 0 {
		res.Interval = o.Interval.String()
	}
	var modes []string
	switch o.Mode {
	case "both":
		modes = []string{"fanout", "writer"}
	case "fanout", "writer":
		modes = []string{o.Mode}
	default:
		return res, fmt.Errorf("spread: --mode must be fanout, writer or both, not %q", o.Mode)
	}
	for _, m := range modes {
		fmt.Fprintf(out, "W-spread %s: starting %d engines...\n", m, o.Agents)
		mr, err := runMode(ctx, o, m, out)
		if err != nil {
			return res, err
		}
		res.Modes = append(res.Modes, mr)
	}
	fmt.Fprintf(out, "\nW-spread: one write reaching %d sync engines in one process (real memberlist and TLS sessions on loopback, in-memory stores), profile %s, anti-entropy %s, %d writes per mode (nproc %d, %s)\n",
		o.Agents, o.Profile, res.Interval, o.Writes, res.Nproc, res.GoVersion)
	fmt.Fprintf(out, "%-7s %7s %8s %8s %8s %8s %7s %12s %16s %18s %8s\n", "mode", "form s", "median", "p99", "max", "reached", "writer", "sess/node", "sess/node p99,max", "KB/node med,p99,max", "failed")
	for _, m := range res.Modes {
		fmt.Fprintf(out, "%-7s %7.1f %6.0fms %6.0fms %6.0fms %7.1f%% %7.0f %12.1f %8.0f,%-7.0f %5.1f,%5.1f,%6.1f %8d\n",
			m.Mode, m.FormS, m.MedianMS, m.P99MS, m.MaxMS, 100*m.Reached, m.WriterSess, m.SessMedian, m.SessP99, m.SessMax,
			m.BytesMedian/1e3, m.BytesP99/1e3, m.BytesMax/1e3, m.HintPullsFail)
	}
	if jsonOut {
		b, _ := json.Marshal(res)
		fmt.Fprintf(out, "%s\n", b)
	}
	return res, nil
}

// benchTB lets a synctest cluster run outside go test: failures become the
// bench's error (through panic/recover in runMode), cleanups run at the end.
type benchTB struct {
	mu       sync.Mutex
	cleanups []func()
}

type benchFailure struct{ msg string }

func (b *benchTB) Helper()                         {}
func (b *benchTB) Logf(format string, args ...any) {}
func (b *benchTB) Fatalf(format string, args ...any) {
	panic(benchFailure{fmt.Sprintf(format, args...)})
}
func (b *benchTB) Cleanup(f func()) {
	b.mu.Lock()
	b.cleanups = append(b.cleanups, f)
	b.mu.Unlock()
}

// close runs the cleanups (engine closes) in parallel: each Close waits up
// to 200 ms to leave the mesh.
func (b *benchTB) close() {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, f := range b.cleanups {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f()
		}()
	}
	wg.Wait()
}

// addrOf gives engine i its own loopback address: every engine is a
// distinct host to memberlist and to the per-address limits.
func addrOf(i int) string { return fmt.Sprintf("127.1.%d.%d:0", i/250, i%250+1) }

func runMode(ctx context.Context, o Options, mode string, out io.Writer) (mr ModeResult, err error) {
	mr.Mode = mode
	if dir := os.Getenv("FIELDSYNC_BENCH_PPROF"); dir != "" {
		// A CPU profile of the whole mode (forming the mesh and the writes).
		f, err := os.Create(filepath.Join(dir, "spread-"+mode+".cpu.pprof"))
		if err != nil {
			return mr, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return mr, err
		}
		defer pprof.StopCPUProfile()
	}
	// A thousand engines' state is this process's heap (GBs): the default
	// GC pace spent a quarter of the CPU marking it, starving memberlist.
	// And a soft limit, so that a mesh that fails to settle makes the GC
	// work harder instead of the kernel killing the process (a writer-mode
	// run at 1,000 reached 23 GB once while its mesh formed).
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(8 << 30))
	tb := &benchTB{}
	defer tb.close()
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(benchFailure)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("spread %s: %s", mode, f.msg)
		}
	}()
	// "Off" is an hour: the budget of join rounds refills by one per
	// quarter interval, and the mesh of this bench forms all at once (no
	// engine holds anything yet, so join rounds would only load the box).
	interval := o.Interval
	if interval <= 0 {
		interval = time.Hour
	}
	c := synctest.NewCluster(tb)
	start := time.Now()
	nodes := make([]*synctest.Node, o.Agents)
	for i := range nodes {
		if ctx.Err() != nil {
			return mr, ctx.Err()
		}
		var join []string
		if i > 0 {
			// Through a random engine: one seed answering a thousand
			// push-pulls of the whole member list is a hot spot.
			join = []string{nodes[rand.IntN(i)].Engine.LocalAddr()}
		}
		nodes[i] = c.Add(synctest.Options{
			Join:         join,
			SyncInterval: interval,
			Profile:      fsync.Profile(o.Profile),
			BindAddr:     addrOf(i),
			Tweak: func(cfg *fsync.Config) {
				cfg.PullFromWriter = mode == "writer"
				// Every engine dials from 127.0.0.1 (the kernel's source
				// for loopback): lift the per-address bound, as a relay
				// behind which many laptops share one address would.
				cfg.Limits.ConnsPerIP = 1 << 20
				// memberlist's failure detector probes one member a
				// second with a 500 ms timeout: a thousand engines on two
				// cores miss acks, suspect healthy members and gossip the
				// suspicions and refutations to everyone, which starves
				// the next probes. Slower probes keep the mesh stable; the
				// gossip that carries hints (interval, fan-out,
				// retransmits) is the profile's.
				cfg.TuneMemberlist = func(mc *memberlist.Config) {
					mc.ProbeInterval = 5 * time.Second
					mc.ProbeTimeout = 3 * time.Second
					mc.SuspicionMult = 8
				}
			},
		})
		// Engines join in batches, each once every engine sees 99% of
		// the others (or a minute passed): memberlist gossips every join to
		// every member, and a thousand joins at once on two cores back its
		// queues up until probes time out and suspicion feeds more gossip.
		if (i+1)%formBatch == 0 || i+1 == len(nodes) {
			// Polled every 500 ms: reading every engine's member list
			// costs N² at a thousand engines.
			synctest.WaitEvery(time.Minute, 500*time.Millisecond, func() bool { return ctx.Err() != nil || membersOf(nodes[:i+1]) >= i-i/100 })
			fmt.Fprintf(out, "  %d engines in the mesh (%.0f s)\n", i+1, time.Since(start).Seconds())
		}
	}
	members := func() int { return membersOf(nodes) }
	// Every engine holds every certificate, as in a mesh enrolled long
	// ago: a session between engines whose sets differ carries the whole
	// set (docs/sync.md, Phases, 3), which would measure the forming
	// of the mesh rather than the spread of a write.
	certs := make([][]byte, len(nodes))
	for i, n := range nodes {
		certs[i] = n.Dev.Cert
	}
	for _, n := range nodes {
		n.Auth.Know(certs...)
	}
	synctest.WaitEvery(o.Form, 500*time.Millisecond, func() bool { return ctx.Err() != nil || members() >= o.Agents-1 })
	synctest.Quiesce(500*time.Millisecond, 30*time.Second, nodes...)
	if ctx.Err() != nil {
		return mr, ctx.Err()
	}
	mr.FormS = time.Since(start).Seconds()
	mr.MembersMin = members()
	fmt.Fprintf(out, "  mesh formed in %.0f s; fewest live members seen by an engine: %d of %d\n", mr.FormS, mr.MembersMin, o.Agents-1)

	var lat, sess, sent []float64
	reached := 0
	for w := 0; w < o.Writes; w++ {
		writer := nodes[(w*7919)%len(nodes)]
		before := stats(nodes)
		counts := make([]int, len(nodes))
		for i, n := range nodes {
			counts[i] = n.Store.Count()
		}
		got := make([]time.Duration, len(nodes))
		t0 := time.Now()
		writer.Write(synctest.NewSpace(), []byte(fmt.Sprint("write ", w)))
		left := len(nodes) - 1
		for left > 0 && time.Since(t0) < o.Limit && ctx.Err() == nil {
			time.Sleep(2 * time.Millisecond)
			now := time.Since(t0)
			for i, n := range nodes {
				if n != writer && got[i] == 0 && n.Store.Count() > counts[i] {
					got[i] = now
					left--
				}
			}
		}
		synctest.Quiesce(500*time.Millisecond, 30*time.Second, nodes...)
		after := stats(nodes)
		var wl []float64
		for i, n := range nodes {
			if n == writer {
				mr.WriterSess += float64(after[i].Rounds-before[i].Rounds) / float64(o.Writes)
			} else if got[i] > 0 {
				wl = append(wl, float64(got[i].Microseconds())/1000)
			}
			sess = append(sess, float64(after[i].Rounds-before[i].Rounds))
			sent = append(sent, float64(after[i].SyncBytesOut-before[i].SyncBytesOut+after[i].GossipBytesOut-before[i].GossipBytesOut))
			mr.HintPullsFail += after[i].HintPullsFailed - before[i].HintPullsFailed
			mr.Refused += after[i].StreamsRefused - before[i].StreamsRefused
		}
		reached += len(wl)
		lat = append(lat, wl...)
		slices.Sort(wl)
		fmt.Fprintf(out, "  write %d: reached %d of %d, median %.0f ms, max %.0f ms\n", w+1, len(wl), len(nodes)-1, pct(wl, 50), pct(wl, 100))
	}
	slices.Sort(lat)
	slices.Sort(sess)
	slices.Sort(sent)
	mr.MedianMS, mr.P99MS, mr.MaxMS = pct(lat, 50), pct(lat, 99), pct(lat, 100)
	mr.Reached = float64(reached) / float64(o.Writes*(len(nodes)-1))
	mr.SessMedian, mr.SessP99, mr.SessMax = pct(sess, 50), pct(sess, 99), pct(sess, 100)
	mr.BytesMedian, mr.BytesP99, mr.BytesMax = pct(sent, 50), pct(sent, 99), pct(sent, 100)
	return mr, nil
}

// formBatch is how many engines join before the bench waits for the mesh
// to take them in.
const formBatch = 50

// membersOf is the fewest live members any of nodes sees.
func membersOf(nodes []*synctest.Node) int {
	lo := len(nodes)
	for _, n := range nodes {
		lo = min(lo, len(n.Engine.Members()))
	}
	return lo
}

func stats(nodes []*synctest.Node) []fsync.Stats {
	out := make([]fsync.Stats, len(nodes))
	for i, n := range nodes {
		out[i] = n.Engine.Stats()
	}
	return out
}

// pct is the p-th percentile of sorted xs (nearest rank; 0 when empty).
func pct(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	i := int(float64(len(xs))*p/100+0.5) - 1
	return xs[max(0, min(i, len(xs)-1))]
}
