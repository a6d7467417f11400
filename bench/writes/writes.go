// Package writes measures the local write path against what the disk
// allows (issue 15, item 2), in one run on one file system:
//
//   - raw: internal/store with one goroutine committing one small fsynced
//     group at a time (what one durable write physically costs), and 32
//     goroutines through store.Committer (the group commit's ceiling);
//   - agent: a real agent process (internal/harness) with 1 API client doing
//     `record put` of one field in a loop, then 32 clients.
//
// The clients' mix (Options.Mix) is what an officer's agent sees from its
// local API: by default ("records") every client writes its own records of
// one case file, round robin over 100 each — the UI, the CLI and a script
// or an import working on one space at once. "record" makes every client
// write one record (a hot record: its writes can never share a change),
// "spaces" gives each client a space of its own (changes cannot be shared
// across spaces, only fsyncs).
//
// `fieldsync bench writes [--json]` calls Run.
package writes

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"fieldsync/agent/api"
	"fieldsync/internal/datadir"
	"fieldsync/internal/harness"
	"fieldsync/internal/store"
)

// Options bound the run.
type Options struct {
	// Duration bounds each of the four phases; Count bounds the writes of
	// each (whichever comes first).
	Duration time.Duration
	Count    int
	// Clients is the many-client figure's number of clients (32).
	Clients int
	// Mix is what the clients write: "records" (default), "record" or
	// "spaces" (see the package comment).
	Mix string
	// CPUProfile, if set, names the files that receive the agent's CPU
	// profiles of the two phases: CPUProfile.1 and CPUProfile.32.
	CPUProfile string
}

// DefaultOptions: 4 s or 20,000 writes per phase, 32 clients.
func DefaultOptions() Options {
	return Options{Duration: 4 * time.Second, Count: 20000, Clients: 32, Mix: MixRecords}
}

// The clients' mixes (Options.Mix).
const (
	MixRecords = "records"
	MixRecord  = "record"
	MixSpaces  = "spaces"
)

// Result is the run's figures (the JSON line).
type Result struct {
	Workload            string  `json:"workload"`
	RawCommitsPerS      float64 `json:"raw_commits_per_s"`
	RawGroupCommitsPerS float64 `json:"raw_group_commits_per_s"` // acknowledged groups/s, 32 goroutines through the committer
	RawGroupFsyncsPerS  float64 `json:"raw_group_fsyncs_per_s"`
	Agent1ClientPerS    float64 `json:"agent_1_client_per_s"`
	AgentNClientsPerS   float64 `json:"agent_32_clients_per_s"`
	Agent1ClientUS      float64 `json:"agent_1_client_us"` // mean latency of one write, 1 client
	Ratio1ClientToRaw   float64 `json:"ratio_1_client_to_raw"`
	RatioNTo1           float64 `json:"ratio_32_to_1"`
	// The disk's own bounds in the same run: the raw group commit with 32
	// writers over one raw writer (what 32 agent clients could reach over
	// one raw writer), and the agent's 32 clients over that raw group
	// commit. ratio_32_to_1 = agent_32_to_raw_32 × raw_32_to_1 ÷
	// ratio_1_client_to_raw: a faster lone write lowers it.
	RawNTo1      float64 `json:"raw_32_to_1"`
	AgentNToRawN float64 `json:"agent_32_to_raw_32"`
	Clients      int     `json:"clients"`
	Mix          string  `json:"mix"` // what the clients write (Options.Mix)
	Nproc        int     `json:"nproc"`
	GoVersion    string  `json:"go_version"`
	Dir          string  `json:"dir"`    // where it ran (a temp dir)
	Rounds       int     `json:"rounds"` // slices of raw and agent alternating in each phase

	// What the agent did in each phase's agent slices: fsynced commits per
	// second, API writes per commit, local changes (atomic groups) per
	// commit, and CPU per API write of the agent's worker process and of
	// the clients' process (this one), in µs. The CPU figures come from
	// /proc (10 ms ticks, summed over the slices): 0 where it cannot tell.
	Agent1CommitsPerS      float64 `json:"agent_1_commits_per_s"`
	Agent1CPUUS            float64 `json:"agent_1_cpu_us_per_write"`
	Agent1ClientCPUUS      float64 `json:"agent_1_client_cpu_us_per_write"`
	AgentNCommitsPerS      float64 `json:"agent_32_commits_per_s"`
	AgentNWritesPerCommit  float64 `json:"agent_32_writes_per_commit"`
	AgentNChangesPerCommit float64 `json:"agent_32_changes_per_commit"`
	AgentNCPUUS            float64 `json:"agent_32_cpu_us_per_write"`
	AgentNClientCPUUS      float64 `json:"agent_32_client_cpu_us_per_write"`
}

// Run runs the benchmark with the fieldsync binary exe.
func Run(ctx context.Context, exe string, o Options, out io.Writer, jsonOut bool) (Result, error) {
	switch o.Mix {
	case "":
		o.Mix = MixRecords
	case MixRecords, MixRecord, MixSpaces:
	default:
		return Result{}, fmt.Errorf("unknown mix %q (records, record or spaces)", o.Mix)
	}
	res := Result{Workload: "writes", Mix: o.Mix, Rounds: rounds, Clients: o.Clients, Nproc: runtime.NumCPU(), GoVersion: runtime.Version()}
	root, err := os.MkdirTemp("", "fieldsync-writes-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(root)
	res.Dir = root

	if err := measure(ctx, exe, root, o, &res); err != nil {
		return res, err
	}
	res.Ratio1ClientToRaw = res.Agent1ClientPerS / res.RawCommitsPerS
	res.RatioNTo1 = res.AgentNClientsPerS / res.Agent1ClientPerS
	res.RawNTo1 = res.RawGroupCommitsPerS / res.RawCommitsPerS
	res.AgentNToRawN = res.AgentNClientsPerS / res.RawGroupCommitsPerS
	if jsonOut {
		return res, json.NewEncoder(out).Encode(res)
	}
	Print(out, res)
	return res, nil
}

// group is one small atomic group, about the size of one agent write
// (envelope, head, record, context, clock).
func group(w, i int) []store.Entry {
	es := make([]store.Entry, 5)
	for k := range es {
		v := make([]byte, 160)
		rand.Read(v)
		es[k] = store.Entry{Key: fmt.Appendf(nil, "w%02d/%08d/%d", w, i, k), Val: v}
	}
	return es
}

// loop runs fn on clients goroutines until o.Count calls in all or
// o.Duration, and returns the calls done (-1 on error) and the time taken.
func loop(clients int, o Options, fn func(client, i int) error) (int, time.Duration) {
	var done atomic.Int64
	var failed atomic.Bool
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(o.Duration)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				if done.Load() >= int64(o.Count) || time.Now().After(deadline) || failed.Load() {
					return
				}
				if err := fn(c, i); err != nil {
					failed.Store(true)
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() {
		return -1, 0
	}
	return int(done.Load()), time.Since(start)
}

// rounds is how many times the raw and the agent figures alternate within
// a phase, so that both see the same load on a shared machine.
const rounds = 4

// measure runs the two phases (1 writer, then o.Clients writers); within
// each, slices of the raw store and of the agent alternate.
func measure(ctx context.Context, exe, root string, o Options, res *Result) error {
	key := make([]byte, 32)
	rand.Read(key)
	db, err := store.Open(store.Options{Dir: filepath.Join(root, "raw"), EncryptionKey: key})
	if err != nil {
		return fmt.Errorf("raw store: %w", err)
	}
	defer db.Close()
	com := store.NewCommitter(db, nil)
	defer com.Stop()
	var seq atomic.Int64
	raw1 := func(_, _ int) error {
		// One writer, one group per fsync: what one durable write costs.
		return db.CommitGroups([][]store.Entry{group(0, int(seq.Add(1)))})[0]
	}
	var id atomic.Uint64
	rawN := func(w, _ int) error {
		return <-com.Submit(group(w+1, int(seq.Add(1))), 1, id.Add(1))
	}

	dir := filepath.Join(root, "agent")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	cl, err := harness.New(ctx, exe, dir, "OMN")
	if err != nil {
		return err
	}
	defer cl.StopAll()
	a, err := cl.Add(ctx, "a", "Officer A", false)
	if err != nil {
		return err
	}
	if err := cl.Start(ctx, a, ""); err != nil {
		return err
	}
	spaces := make([]string, 1)
	if o.Mix == MixSpaces {
		spaces = make([]string, o.Clients)
	}
	for i := range spaces {
		sp, err := a.Client().SpaceCreate(ctx, api.SpaceCreateRequest{Name: fmt.Sprintf("writes %d", i)})
		if err != nil {
			return err
		}
		spaces[i] = sp.ID
	}
	// One API client per writer, as separate `fieldsync` processes would
	// be; each keeps its connection open between requests (keep-alive).
	clients := make([]*api.Client, o.Clients)
	for i := range clients {
		clients[i] = a.Client()
	}
	var lastErr error
	var errMu sync.Mutex
	put := func(c, i int) error {
		space, record := spaces[0], fmt.Sprintf("c%02d-%03d", c, i%100)
		switch o.Mix {
		case MixRecord:
			record = "shared"
		case MixSpaces:
			space = spaces[c]
		}
		_, err := clients[c].RecordPut(ctx, api.RecordPutRequest{Space: space, Record: record,
			Fields: []api.FieldValue{{Name: "visit_note", Value: "أمينة market حلب clinic #" + strconv.Itoa(i)}}})
		if err != nil {
			errMu.Lock()
			lastErr = err
			errMu.Unlock()
		}
		return err
	}
	// Warm up both: the records exist and the connections are open.
	if n, _ := loop(o.Clients, Options{Duration: time.Second, Count: 4 * o.Clients}, put); n < 0 {
		return fmt.Errorf("agent: %w", lastErr)
	}
	if n, _ := loop(1, Options{Duration: time.Second, Count: 20}, raw1); n < 0 {
		return fmt.Errorf("raw store: commit failed")
	}

	slice := Options{Duration: o.Duration / rounds, Count: max(1, o.Count/rounds)}
	// agentStats is what the agent did in one phase's agent slices.
	type agentStats struct {
		writes                int
		secs                  float64
		commits, groups       uint64
		agentCPUms, selfCPUms float64
	}
	storeCounts := func() (uint64, uint64, error) {
		st, err := a.Client().Status(ctx)
		if err != nil || st.Store == nil {
			return 0, 0, fmt.Errorf("agent status: %v (no store counts)", err)
		}
		return st.Store.Commits, st.Store.Groups, nil
	}
	var stats agentStats
	phase := func(clients int, raw func(int, int) error, profile string) (rawRate, agentRate float64, err error) {
		stats = agentStats{}
		var prof chan error
		if profile != "" {
			prof = make(chan error, 1)
			go func() { prof <- cpuProfile(ctx, a, 2*o.Duration, profile) }()
		}
		var rn, an int
		var rd, ad time.Duration
		for range rounds {
			n, d := loop(clients, slice, raw)
			if n < 0 {
				return 0, 0, fmt.Errorf("raw store: commit failed")
			}
			rn, rd = rn+n, rd+d
			c0, g0, err := storeCounts()
			if err != nil {
				return 0, 0, err
			}
			acpu, scpu := cpuMS(a.WorkerPid()), cpuMS(os.Getpid())
			n, d = loop(clients, slice, put)
			if n < 0 {
				return 0, 0, fmt.Errorf("agent: %w", lastErr)
			}
			stats.agentCPUms += cpuMS(a.WorkerPid()) - acpu
			stats.selfCPUms += cpuMS(os.Getpid()) - scpu
			c1, g1, err := storeCounts()
			if err != nil {
				return 0, 0, err
			}
			stats.commits += c1 - c0
			stats.groups += g1 - g0
			an, ad = an+n, ad+d
		}
		stats.writes, stats.secs = an, ad.Seconds()
		if prof != nil {
			if err := <-prof; err != nil {
				return 0, 0, fmt.Errorf("cpu profile: %w", err)
			}
		}
		return float64(rn) / rd.Seconds(), float64(an) / ad.Seconds(), nil
	}
	prof1, profN := "", ""
	if o.CPUProfile != "" {
		prof1, profN = o.CPUProfile+".1", fmt.Sprintf("%s.%d", o.CPUProfile, o.Clients)
	}
	if res.RawCommitsPerS, res.Agent1ClientPerS, err = phase(1, raw1, prof1); err != nil {
		return err
	}
	res.Agent1ClientUS = 1e6 / res.Agent1ClientPerS
	res.Agent1CommitsPerS = float64(stats.commits) / stats.secs
	res.Agent1CPUUS = 1e3 * stats.agentCPUms / float64(stats.writes)
	res.Agent1ClientCPUUS = 1e3 * stats.selfCPUms / float64(stats.writes)
	c0 := com.Commits()
	t0 := time.Now()
	if res.RawGroupCommitsPerS, res.AgentNClientsPerS, err = phase(o.Clients, rawN, profN); err != nil {
		return err
	}
	// The committer's fsyncs over the phase, of which about half the time
	// was the raw slices.
	res.RawGroupFsyncsPerS = float64(com.Commits()-c0) / (time.Since(t0).Seconds() / 2)
	res.AgentNCommitsPerS = float64(stats.commits) / stats.secs
	if stats.commits > 0 {
		res.AgentNWritesPerCommit = float64(stats.writes) / float64(stats.commits)
		res.AgentNChangesPerCommit = float64(stats.groups) / float64(stats.commits)
	}
	res.AgentNCPUUS = 1e3 * stats.agentCPUms / float64(stats.writes)
	res.AgentNClientCPUUS = 1e3 * stats.selfCPUms / float64(stats.writes)
	return nil
}

// cpuMS is the CPU time (user + system) process pid has used since it
// started, in ms; 0 where /proc cannot tell (pid 0, not Linux).
func cpuMS(pid int) float64 {
	if pid == 0 {
		return 0
	}
	return harness.ProcessCPUMillis(pid)
}

// cpuProfile fetches the agent's CPU profile over its socket (GET
// /debug/pprof/profile) for about d.
func cpuProfile(ctx context.Context, n *harness.Node, d time.Duration, file string) error {
	sock := datadir.Layout{Dir: n.Dir}.Socket()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dd net.Dialer
		return dd.DialContext(ctx, "unix", sock)
	}}}
	secs := max(1, int(d/time.Second))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent/debug/pprof/profile?seconds="+strconv.Itoa(secs), nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Print prints the figures for people.
func Print(out io.Writer, r Result) {
	row := func(k, v string) { fmt.Fprintf(out, "  %-34s %s\n", k, v) }
	fmt.Fprintf(out, "writes: durable writes on one file system (%s), nproc %d, %s, clients' mix %q\n", r.Dir, r.Nproc, r.GoVersion, r.Mix)
	row("raw: 1 writer, fsync per group", fmt.Sprintf("%.0f commits/s", r.RawCommitsPerS))
	row(fmt.Sprintf("raw: %d writers, group commit", r.Clients), fmt.Sprintf("%.0f groups/s (%.0f fsyncs/s)", r.RawGroupCommitsPerS, r.RawGroupFsyncsPerS))
	row("agent: 1 API client", fmt.Sprintf("%.0f writes/s (%.0f µs each)", r.Agent1ClientPerS, r.Agent1ClientUS))
	row(fmt.Sprintf("agent: %d API clients", r.Clients), fmt.Sprintf("%.0f writes/s", r.AgentNClientsPerS))
	row("1 client / raw (aim ≥ 0.80)", fmt.Sprintf("%.2f", r.Ratio1ClientToRaw))
	row(fmt.Sprintf("%d clients / 1 client (aim ≥ 10)", r.Clients), fmt.Sprintf("%.2f", r.RatioNTo1))
	row(fmt.Sprintf("raw: %d writers / 1 writer", r.Clients), fmt.Sprintf("%.2f (agent's %d clients / raw %d writers: %.2f)", r.RawNTo1, r.Clients, r.Clients, r.AgentNToRawN))
	row("agent, 1 client: commits", fmt.Sprintf("%.0f/s; CPU per write: agent %.0f µs, client %.0f µs", r.Agent1CommitsPerS, r.Agent1CPUUS, r.Agent1ClientCPUUS))
	row(fmt.Sprintf("agent, %d clients: commits", r.Clients), fmt.Sprintf("%.0f/s, %.1f writes and %.1f changes each; CPU per write: agent %.0f µs, clients %.0f µs",
		r.AgentNCommitsPerS, r.AgentNWritesPerCommit, r.AgentNChangesPerCommit, r.AgentNCPUUS, r.AgentNClientCPUUS))
}
