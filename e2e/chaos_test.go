//go:build unix

package e2e

// TestChaos is a Jepsen-style randomized mesh test (issue 6). It runs real
// agent processes (officers and a relay) of a binary built with the
// fieldsync_chaos tag, has clients write through the CLI while a schedule of
// faults drawn from a seed runs (network partitions through the fault
// injector under memberlist, SIGKILL and restart, SIGSTOP/SIGCONT), heals
// everything, waits for convergence and a quiet period, and hands the op log
// and the CLI's --json output to e2e/checker. With -chaos.trust (the
// default) officers of a second bureau take part, a trust track withdraws
// and releases that bureau and revokes one officer (whose laptop is then
// lost for good), and bundles are carried by hand across partitions.
// docs/e2e.md says how to run it long and what a seed replays.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	gosync "sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/e2e/checker"
	"fieldsync/internal/harness"
)

var (
	chaosSeed     = flag.Int64("chaos.seed", 1, "chaos test seed (the fault schedule and the clients' choices); -1 picks one from the clock")
	chaosAgents   = flag.Int("chaos.agents", 5, "chaos test agents, one of them a relay (at least 3)")
	chaosOps      = flag.Int("chaos.ops", 200, "chaos test client operations (at most)")
	chaosDuration = flag.Duration("chaos.duration", 30*time.Second, "chaos test workload time, under faults")
	chaosClientsF = flag.Int("chaos.clients", 2, "chaos test clients per officer")
	chaosSkew     = flag.Bool("chaos.skew", true, "chaos test: skewed clocks (every officer a seeded offset from -chaos.behind to +90 s, one 15 min ahead, beyond the drift limit)")
	chaosBehind   = flag.Duration("chaos.behind", 10*365*24*time.Hour, "chaos test: how far behind a skewed clock may be (field laptops run hours or years behind)")
	chaosFail     = flag.Bool("chaos.failcommit", true, "chaos test: one officer's store fails one commit in K (K seeded, 8..24; which ones, a hash of the commit number and the seed)")
	chaosReport   = flag.String("chaos.report", "", "write the chaos run's JSON report to this file")
	chaosKeep     = flag.Bool("chaos.keep", false, "keep the chaos run's directory (logs, op log, outputs) even when it passes")
	chaosTamper   = flag.Bool("chaos.tamper", true, "chaos test: the relay is hostile (flips, truncates, splices, replays during the workload; then a replay phase and a withhold phase in which it is the officers' only path)")
	chaosTrust    = flag.Bool("chaos.trust", true, "chaos test: officers of a second bureau (KAZ), withdrawals and releases of KAZ, at most one revocation, bundles carried across partitions")
	chaosPrune    = flag.Bool("chaos.prune", true, "chaos test: after the heal, every other officer prunes every superseded value (fieldsync compact --min-age 0s): no state or envelope set may change, and the later phases sync pruned and whole copies of the same envelopes")
	chaosReturn   = flag.Bool("chaos.return", true, "chaos test: after the prune phase, an officer cut off from all writes offline while another overwrites and deletes records it holds whole and prunes them; once it returns, nothing overwritten or deleted may come back, and its own writes show as concurrent edits")
	chaosInsider  = flag.Bool("chaos.insider", true, "chaos test: after the heal (and the hostile relay's phases), an entitled officer acts as a compromised laptop and forges envelopes of its own log (future dots, 100,000 dots, undecodable bodies, key shares for random spaces)")
)

const (
	chaosRecords   = 4                       // records r0..r3
	chaosFields    = 3                       // register fields f0..f2 of each
	chaosSets      = 2                       // set fields s0, s1 of each
	chaosElements  = 4                       // set elements e0..e3: adds and removes collide (add wins)
	chaosClients   = 2                       // clients per officer
	chaosOpTimeout = 3 * time.Second         // a put taking longer is "unknown"
	chaosConverge  = 2 * time.Minute         // limit on convergence after the heal
	chaosQuiet     = 3 * time.Second         // the state must stay put this long after converging
	chaosMaxFaults = 40                      // bound on faults per run, or one per 4 s of a longer run
	chaosFaultMin  = 1000 * time.Millisecond // fault length bounds
	chaosFaultMax  = 5000 * time.Millisecond
	chaosMaxTrust  = 6                // bound on trust events (withdraw, release, revoke) per run, or one per 10 s of a longer run
	chaosTrustOp   = 15 * time.Second // a trust event or a bundle step taking longer is "unknown"
	chaosBureau    = "OMN"            // the cluster's own bureau, which owns the space
	chaosOther     = "KAZ"            // the second bureau
)

// chaosWorkloadTamper is the hostile relay's rules during the workload.
const chaosWorkloadTamper = "flip 0.03\ntruncate 0.03\nsplice 0.03\nreplay 0.1\n"

// fault is one entry of the schedule: At after the workload starts, for For.
type fault struct {
	Track string        `json:"track"` // net or proc: faults of one track never overlap
	At    time.Duration `json:"at"`
	For   time.Duration `json:"for"`
	Kind  string        `json:"kind"`            // partition, bridge (two officer groups, relay reaching both), isolate, kill, crash (worker only), pause
	Nodes []string      `json:"nodes"`           // the node (isolate, kill, pause) or one side (partition)
	Other []string      `json:"other,omitempty"` // the other side of a partition
	Jump  time.Duration `json:"jump,omitempty"`  // clockjump: how far the clock jumps (back after For)
	Carry []string      `json:"carry,omitempty"` // bundle: the officer who exports, the one who imports
	Note  string        `json:"note,omitempty"`  // what happened when it ran
}

func (f fault) String() string {
	s := fmt.Sprintf("%6.1fs +%.1fs %-9s %s", f.At.Seconds(), f.For.Seconds(), f.Kind, strings.Join(f.Nodes, ","))
	if len(f.Other) > 0 {
		s += " | " + strings.Join(f.Other, ",")
	}
	if f.Jump != 0 {
		s += fmt.Sprintf(" by %s", f.Jump)
	}
	if len(f.Carry) == 2 {
		s += fmt.Sprintf(", a bundle carried %s -> %s", f.Carry[0], f.Carry[1])
	}
	if f.Note != "" {
		s += " (" + f.Note + ")"
	}
	return s
}

// schedule draws the faults from the seed alone, on two tracks that run at
// once: the network (partition, bridge, isolate) and the processes (kill,
// crash, pause), so a node may die or stop inside a partition. On a track
// the faults come one at a time, each healed before the next; the last of
// each lasts until the workload ends, so the final heal has something to
// heal and "converged after the heal" means something.
func schedule(seed int64, names []string, relay string, d time.Duration) []fault {
	dc := &drawCtx{names: names, relay: relay, crashes: map[string][]time.Duration{}}
	for _, n := range names {
		if n != relay {
			dc.officers = append(dc.officers, n)
		}
	}
	pick := func(name string) func(*rand.Rand, *fault) {
		var kinds []faultKind
		total := 0
		for _, k := range faultKinds {
			if k.track == name && (k.name != "bundle" || *chaosTrust) {
				kinds, total = append(kinds, k), total+k.weight
			}
		}
		drawn, seen := 0, map[string]bool{}
		return func(rng *rand.Rand, f *fault) {
			x := rng.IntN(total)
			k := kinds[0]
			for _, c := range kinds {
				if x < c.weight {
					k = c
					break
				}
				x -= c.weight
			}
			if drawn++; name == "proc" && drawn == 3 && !seen["clockjump"] {
				k, _ = faultKindNamed("clockjump") // every run has a clock jump, early enough to matter
			}
			if name == "net" && drawn == 2 && !seen["bundle"] && *chaosTrust {
				k, _ = faultKindNamed("bundle") // and, with -chaos.trust, a bundle carried by hand
			}
			f.Kind = k.name
			k.draw(rng, dc, f)
			seen[f.Kind] = true
		}
	}
	network := track(rand.New(rand.NewPCG(uint64(seed), 0x5eed)), "net", d, pick("net"))
	process := track(rand.New(rand.NewPCG(uint64(seed), 0x9a0c)), "proc", d, pick("proc"))
	out := append(network, process...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].At < out[j].At })
	return out
}

// track draws one track's faults: times from rng, kinds and nodes from pick.
func track(rng *rand.Rand, name string, d time.Duration, pick func(*rand.Rand, *fault)) []fault {
	var out []fault
	t := 1000*time.Millisecond + time.Duration(rng.Int64N(int64(time.Second)))
	limit := max(chaosMaxFaults, int(d/(4*time.Second)))
	for len(out) < limit && t+chaosFaultMin <= d {
		dur := min(chaosFaultMin+time.Duration(rng.Int64N(int64(chaosFaultMax-chaosFaultMin))), d-t)
		f := fault{At: t, For: dur, Track: name}
		pick(rng, &f)
		out = append(out, f)
		t += dur + 500*time.Millisecond + time.Duration(rng.Int64N(int64(1500*time.Millisecond)))
	}
	if len(out) > 0 {
		last := &out[len(out)-1]
		last.For = d - last.At
	}
	return out
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

// chaosRun is one run's state.
type chaosRun struct {
	t       *testing.T
	cl      *harness.Cluster
	nodes   []*harness.Node // relay first
	byName  map[string]*harness.Node
	ids     map[string]string // node name -> device ID
	space   string
	rules   string // the fault rules file every agent reads
	dir     string
	opLog   *os.File
	mu      gosync.Mutex
	ops     []checker.Op
	opID    atomic.Int64
	budget  atomic.Int64
	bytes   atomic.Uint64 // counters of agents before they were killed
	started time.Time
	// setupPlan is each node's seeded test-only configuration.
	setupPlan map[string]nodeSetup
	seed      int64
	// honestTook is how long the agents took to converge once officers
	// reached each other directly, the relay still withholding.
	honestTook time.Duration
	// Trust (-chaos.trust): each node's bureau, the second bureau's key,
	// each node's status at setup (names a device that is gone at the end),
	// the nodes stopped for good (the revoked laptop), the nodes judged
	// after the heal (the relay and the officers still entitled).
	bureau      map[string]string
	kazKey      string
	setupStatus map[string][]byte
	deadMu      gosync.Mutex
	dead        map[string]bool
	life        gosync.Mutex // a kill or restart of an agent, and a kill for good, one at a time
	judged      []*harness.Node
	bundles     atomic.Int64
	insiderSeq  atomic.Int64 // insider command IDs
}

// chaosReportT is the run's report.
type chaosReportT struct {
	Seed         int64                  `json:"seed"`
	Agents       int                    `json:"agents"`
	OpsBudget    int                    `json:"ops_budget"`
	Duration     string                 `json:"duration"`
	Setup        map[string]string      `json:"setup"` // skewed clocks, failing stores
	Faults       []fault                `json:"faults"`
	OpsOK        int                    `json:"ops_ok"`
	OpsFailed    int                    `json:"ops_failed"`
	OpsUnknown   int                    `json:"ops_unknown"`
	ConvergedIn  string                 `json:"converged_in"`                       // after the heal
	HonestPathIn string                 `json:"honest_path_converged_in,omitempty"` // after officers reached each other again, the relay still hostile
	Hostile      *checker.HostileResult `json:"hostile,omitempty"`
	Insider      *insiderReport         `json:"insider,omitempty"` // the insider phase (-chaos.insider)
	BytesSent    uint64                 `json:"bytes_sent"`        // sync streams and gossip, all agents
	Check        checker.Result         `json:"check"`
	Verdict      string                 `json:"verdict"`
	Dir          string                 `json:"dir,omitempty"`
	ReplayNotice string                 `json:"replay"`
}

func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos: skipped in -short mode")
	}
	seed := *chaosSeed
	if seed == -1 {
		seed = time.Now().UnixNano() % 1_000_000
	}
	agents, ops, dur := *chaosAgents, *chaosOps, *chaosDuration
	if agents < 3 {
		t.Fatalf("-chaos.agents %d: want at least 3 (a relay and two officers)", agents)
	}
	replay := fmt.Sprintf("go test ./e2e -run Chaos -chaos.seed %d -chaos.agents %d -chaos.clients %d -chaos.ops %d -chaos.duration %s -chaos.skew=%v -chaos.behind %s -chaos.failcommit=%v -chaos.trust=%v -chaos.insider=%v", seed, agents, *chaosClientsF, ops, dur, *chaosSkew, *chaosBehind, *chaosFail, *chaosTrust, *chaosInsider)
	t.Logf("chaos: seed %d, %d agents, %d clients each officer, %d ops, %s (replay: %s)", seed, agents, *chaosClientsF, ops, dur, replay)
	ctx, cancel := context.WithTimeout(context.Background(), dur+8*time.Minute)
	defer cancel()

	dir, err := os.MkdirTemp("", "fieldsync-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	r := &chaosRun{t: t, seed: seed, dir: dir, byName: map[string]*harness.Node{}, ids: map[string]string{}, rules: filepath.Join(dir, "faults"),
		bureau: map[string]string{}, setupStatus: map[string][]byte{}, dead: map[string]bool{}}
	keep := *chaosKeep
	defer func() {
		if keep || t.Failed() {
			t.Logf("chaos: run directory kept: %s", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()
	if err := os.MkdirAll(filepath.Join(dir, "mesh"), 0o700); err != nil {
		t.Fatal(err)
	}
	cl, err := harness.New(ctx, chaosBinary, filepath.Join(dir, "mesh"), "OMN")
	if err != nil {
		t.Fatal(err)
	}
	r.cl = cl
	defer r.cleanup()
	if r.opLog, err = os.Create(filepath.Join(dir, "ops.jsonl")); err != nil {
		t.Fatal(err)
	}
	defer r.opLog.Close()
	r.setupPlan = planSetup(seed, agents, *chaosSkew, max(*chaosBehind, 0), *chaosFail)
	setupNotes := map[string]string{}
	for _, name := range sortedKeys(r.setupPlan) {
		setupNotes[name] = r.setupPlan[name].note
		t.Logf("chaos: setup %s: %s", name, r.setupPlan[name].note)
	}
	t0 := time.Now()
	if err := r.setup(ctx, agents); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	if err := r.probeInjector(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("chaos: mesh up in %s, injector probed in %s", t1.Sub(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
	var names []string
	for _, n := range r.nodes {
		names = append(names, n.Name)
	}
	faults := schedule(seed, names, r.nodes[0].Name, dur)
	if *chaosTrust {
		faults = append(faults, trustSchedule(seed, names, r.nodes[0].Name, r.bureau, dur)...)
		sort.SliceStable(faults, func(i, j int) bool { return faults[i].At < faults[j].At })
	}

	// The workload, under faults, the relay hostile.
	if *chaosTamper {
		if err := r.writeTamper(chaosWorkloadTamper); err != nil {
			t.Fatal(err)
		}
	}
	r.budget.Store(int64(ops))
	r.started = time.Now()
	wctx, wcancel := context.WithTimeout(ctx, dur)
	var wg gosync.WaitGroup
	ci := 0
	for _, n := range r.nodes {
		if n.Relay {
			continue
		}
		for k := 0; k < *chaosClientsF; k++ {
			ci++
			wg.Add(1)
			go func(ci int, n *harness.Node) {
				defer wg.Done()
				r.client(wctx, seed, ci, n, dur, ops)
			}(ci, n)
		}
	}
	applied := r.runFaults(wctx, faults)
	wg.Wait()
	wcancel()

	// Heal, then wait for convergence and a quiet period.
	if err := r.writeTamper(""); err != nil {
		t.Fatal(err)
	}
	if err := r.healAll(ctx); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	took, convErr := r.converge(ctx, healed)
	if convErr != nil {
		t.Error(convErr)
	}

	// The hostile relay as the officers' only path, then an honest path.
	var hostile *checker.Hostile
	settled := convErr == nil // the agents converged after the last phase

	// Pruning (docs/design.md §7, "Bounded storage").
	if *chaosPrune && convErr == nil {
		if err := r.prunePhase(ctx); err != nil {
			t.Error(err)
			settled = false
		}
	}
	// A device returning with old whole envelopes after others pruned.
	if *chaosReturn && convErr == nil && settled {
		if err := r.returnPhase(ctx); err != nil {
			t.Error(err)
			settled = false
			// The phases after it start from a healed, converged mesh.
			if err := r.writeRules(""); err != nil {
				t.Fatal(err)
			}
			if _, err := r.converge(ctx, time.Now()); err != nil {
				t.Error(err)
			}
		}
	}
	if *chaosTamper && convErr == nil && len(r.judged) < 3 {
		t.Logf("chaos: hostile relay phases skipped: %d entitled officer(s) left after the trust events, and the phases need two", len(r.judged)-1)
	}
	if *chaosTamper && convErr == nil && len(r.judged) >= 3 {
		h, err := r.hostilePhases(ctx, seed)
		if err != nil {
			t.Fatal(err)
		}
		hostile = &h
		if _, err := r.converge(ctx, time.Now()); err != nil {
			t.Error(err)
			settled = false
		}
	}

	// A compromised officer laptop forges envelopes of its own log.
	var insider *insiderReport
	if *chaosInsider && settled {
		if len(r.judged) < 3 {
			insider = &insiderReport{Skipped: fmt.Sprintf("%d entitled officer(s) left after the trust events, and the phase needs two", len(r.judged)-1)}
			t.Logf("chaos: insider phase skipped: %s", insider.Skipped)
		} else {
			var err error
			if insider, err = r.insiderPhase(ctx, seed); err != nil {
				t.Fatal(err)
			}
			if _, err := r.converge(ctx, time.Now()); err != nil {
				t.Error(err)
			}
		}
	}

	// Collect what the CLI prints, and judge.
	outs, err := r.collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res := checker.Check(r.ops, outs)
	var hres *checker.HostileResult
	if hostile != nil {
		if f, err := os.Open(filepath.Join(dir, "tamper.jsonl")); err == nil {
			hostile.Log, _ = checker.ReadTamperLog(f)
			f.Close()
		}
		var alive []checker.Node
		for _, n := range outs {
			if !n.Dead {
				alive = append(alive, n)
			}
		}
		hr := checker.CheckHostile(&res, *hostile, alive, r.ops)
		hres = &hr
	}
	rep := chaosReportT{Seed: seed, Agents: agents, OpsBudget: ops, Duration: dur.String(), Setup: setupNotes, Faults: applied,
		OpsOK: res.OpsOK, OpsFailed: res.OpsFailed, OpsUnknown: res.OpsUnknown,
		ConvergedIn: took.Round(time.Millisecond).String(), BytesSent: r.bytes.Load() + r.sampleBytes(ctx), Check: res, Hostile: hres, Insider: insider,
		ReplayNotice: replay + " replays the fault schedule and each client's choices; the interleaving of real processes (timing, memberlist's gossip, which ops land in a fault) is not replayed exactly"}
	if hostile != nil {
		rep.HonestPathIn = r.honestTook.Round(time.Millisecond).String()
	}
	rep.Verdict = "valid"
	if convErr != nil {
		rep.ConvergedIn = "not converged: " + convErr.Error()
	}
	if !res.Valid() || convErr != nil || (insider != nil && len(insider.Violations) > 0) {
		rep.Verdict = "INVALID"
		rep.Dir = dir
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	os.WriteFile(filepath.Join(dir, "report.json"), b, 0o600)
	if *chaosReport != "" {
		if err := os.WriteFile(*chaosReport, b, 0o644); err != nil {
			t.Error(err)
		}
	}
	t.Logf("chaos report: seed %d; faults %d; ops ok %d, failed %d, unknown %d (%d unknown found applied); %d records, %d fields, %d writes in history, %d siblings, %d fields in conflict; %d envelopes; converged %s after the heal; %d bytes sent; verdict %s",
		seed, len(applied), res.OpsOK, res.OpsFailed, res.OpsUnknown, res.UnknownSeen, res.Records, res.Fields, res.Writes, res.Siblings, res.Conflicted, res.Envelopes, rep.ConvergedIn, rep.BytesSent, rep.Verdict)
	t.Logf("chaos: ops by kind (ok/failed/unknown): %v; sets %d elements, %d notes, %d records deleted (%d with a conflict)", res.OpsByKind, res.SetElements, res.NotesShown, res.Deleted, res.DeleteConflicts)
	if hres != nil {
		t.Logf("chaos: hostile relay: %d altered over the run (%v), %d rejected as altered; withhold phase: %d altered, %d rejected, gap %s %d..%d seen by %v; replay phase: %d replays, %d envelopes added; honest path converged in %s",
			hres.Altered, hres.ByKind, hres.Rejected, hres.PhaseAltered, hres.PhaseRejected, hres.Gap.Author, hres.Gap.From, hres.Gap.To, hres.GapSeenBy, hres.PhaseReplays, hres.ReplayEnvelopes, rep.HonestPathIn)
		for _, n := range hres.Notes {
			t.Logf("chaos: note: %s", n)
		}
	}
	if in := insider; in != nil && in.Skipped == "" {
		t.Logf("chaos: insider phase: %s forged as a compromised laptop, %s its victim: %d envelopes of its own log (%s); 2 changes naming %s's seqs %d..%d (%d dots in all), %d of %s's %d writes named, its last shown on every officer; the insider's next write %s applied everywhere; %d key shares for random spaces: %d held in memory, %d refused by the insider, skipped by the imports %v, no space more (%v), also after restarting %v (spaces in memory after the phase/restart %v); context bytes before/after %v; rejections grown %v, %s's after its restart %v; history of %s %d bytes; converged in %s",
			in.Insider, in.Victim, len(in.Forged), insiderForgedSummary(in.Forged), in.Victim, in.VictimSeqsNamed[0], in.VictimSeqsNamed[1], in.DotsNamed, in.VictimNamed, in.Victim, len(in.VictimWrites), in.HonestWrite,
			in.KeyShares, in.HeldHere, in.RefusedHer, in.Imports, in.Spaces, in.Restarted, in.Orphans, in.ContextBytes, in.Rejected, in.Victim, in.VictimRestartRejected, chaosInsiderRecord, in.HistoryBytes, in.ConvergedIn)
	}
	for _, n := range res.Notes {
		t.Logf("chaos: note: %s", n)
	}
	if tr := res.Trust; tr != nil && *chaosTrust {
		t.Logf("chaos: trust: final release list %v; revoked %q (cut-off %d; %d acknowledged writes past it, checked visible nowhere; %d undecided); %d acknowledged writes of a bureau withdrawn at the end treated as unknown; %d values written after the final withdrawal checked unreadable on %v; %d bundles carried, %d envelopes added",
			tr.Release, tr.Revoked, tr.Cutoff, tr.PastCutoff, tr.Undecided, tr.Stranded, tr.Protected, tr.WithdrawnChecked, tr.Bundles, tr.BundleAdded)
	}
	if len(res.Rejected) > 0 {
		t.Logf("chaos: envelopes rejected (from status; reported, not judged): %v", res.Rejected)
	}
	for _, v := range res.Violations {
		t.Errorf("chaos violation (seed %d): %s", seed, v)
	}
	if t.Failed() {
		t.Logf("chaos: replay the schedule with: %s (the interleaving of real processes is not replayed exactly)", replay)
	}
	if res.OpsOK == 0 {
		t.Errorf("chaos (seed %d): no operation was acknowledged: the run checked nothing", seed)
	}
}

// nodeSetup is a node's seeded test-only configuration.
type nodeSetup struct {
	env  []string
	note string
}

// planSetup draws, from the seed, which officers get a skewed clock and
// which a store that fails every Kth commit. o1 creates the space, so its
// store never fails (the setup would).
func planSetup(seed int64, agents int, skew bool, behind time.Duration, fail bool) map[string]nodeSetup {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5e7))
	out := map[string]nodeSetup{}
	add := func(name, env, note string) {
		d := out[name]
		d.env = append(d.env, env)
		if d.note != "" {
			d.note += "; "
		}
		d.note += note
		out[name] = d
	}
	if skew {
		far := 1 + rng.IntN(agents-1)
		for i := 1; i < agents; i++ {
			off := time.Duration(rng.Int64N(int64(90*time.Second+behind))) - behind
			off = off.Round(time.Millisecond)
			note := "clock " + off.String()
			if i == far {
				off, note = 15*time.Minute, "clock +15m, beyond the 10 min drift limit"
			}
			add(fmt.Sprintf("o%d", i), "FIELDSYNC_CHAOS_CLOCK_OFFSET="+off.String(), note)
		}
	}
	if fail && agents >= 3 {
		i := 2 + rng.IntN(agents-2)
		k := 8 + rng.IntN(17)
		add(fmt.Sprintf("o%d", i), fmt.Sprintf("FIELDSYNC_CHAOS_FAIL_COMMIT=%d:%d", k, rng.Uint32()), fmt.Sprintf("one store commit in %d fails", k))
	}
	return out
}

// setup enrolls and starts the agents (relay first), creates the space and
// waits until every officer reads it.
func (r *chaosRun) setup(ctx context.Context, agents int) error {
	var pubs []string
	if *chaosTrust {
		omnPub, err := r.cl.BureauPub(ctx)
		if err != nil {
			return err
		}
		kazKey, kazPub, err := r.cl.AddBureau(ctx, chaosOther)
		if err != nil {
			return err
		}
		r.kazKey, pubs = kazKey, []string{omnPub, kazPub}
	}
	for i := 0; i < agents; i++ {
		name, officer, relay := fmt.Sprintf("o%d", i), fmt.Sprintf("Officer %d", i), false
		if i == 0 {
			name, officer, relay = "relay", "Bureau relay", true
		}
		// With -chaos.trust, the even officers from o2 on but the last are
		// KAZ's (o2 alone of 4 officers), so that OMN keeps two officers
		// after a revocation for the hostile relay's phases; every device
		// trusts both bureaus.
		bureau, key := chaosBureau, r.cl.Bureau
		if *chaosTrust && i >= 2 && i%2 == 0 && (i < agents-1 || agents == 3) {
			bureau, key = chaosOther, r.kazKey
		}
		n, err := r.cl.AddEnrolled(ctx, name, officer, relay, key, pubs...)
		if err != nil {
			return err
		}
		r.bureau[name] = bureau
		n.Env = []string{"FIELDSYNC_CHAOS_FILE=" + r.rules, "FIELDSYNC_CHAOS_CLOCK_FILE=" + r.clockFile(n)}
		if *chaosInsider {
			n.Env = append(n.Env, "FIELDSYNC_CHAOS_INSIDER_FILE="+r.insiderFile(n))
		}
		if relay {
			n.Env = append(n.Env, fmt.Sprintf("FIELDSYNC_CHAOS_TAMPER=%d", r.seed),
				"FIELDSYNC_CHAOS_TAMPER_FILE="+filepath.Join(r.dir, "tamper"),
				"FIELDSYNC_CHAOS_TAMPER_LOG="+filepath.Join(r.dir, "tamper.jsonl"))
		}
		if d, ok := r.setupPlan[name]; ok {
			n.Env = append(n.Env, d.env...)
		}
		r.nodes = append(r.nodes, n)
		r.byName[name] = n
	}
	if err := r.writeRules(""); err != nil {
		return err
	}
	for i, n := range r.nodes {
		var join []string
		if i > 0 {
			join = []string{r.nodes[0].Bind}
		}
		if err := r.cl.Start(ctx, n, "", join...); err != nil {
			return err
		}
		raw, err := r.cl.CLI(ctx, n.Dir, "--json", "status")
		if err != nil {
			return err
		}
		var st api.Status
		if err := json.Unmarshal([]byte(raw), &st); err != nil {
			return err
		}
		r.ids[n.Name], r.setupStatus[n.Name] = st.Device.ID, []byte(raw)
	}
	first := r.nodes[1]
	var sp api.Space
	create := []string{"space", "create", "chaos"}
	if *chaosTrust {
		create = []string{"space", "create", "--release-to", chaosOther, "chaos"}
	}
	if err := r.cl.CLIJSON(ctx, first.Dir, &sp, create...); err != nil {
		return err
	}
	r.space = sp.ID
	if _, err := r.cl.CLI(ctx, first.Dir, "record", "put", sp.ID, "setup", "ready=yes"); err != nil {
		return err
	}
	_, err := harness.WaitUntil(ctx, 2*time.Minute, "every officer to read the space", func() (bool, error) {
		for _, n := range r.nodes[1:] {
			var rec api.Record
			if err := r.cl.CLIJSON(ctx, n.Dir, &rec, "record", "get", sp.ID, "setup"); err != nil {
				return false, err
			}
			if rec.Fields["ready"].Value != "yes" {
				return false, nil
			}
		}
		return true, nil
	})
	return err
}

// probeInjector checks that the fault injector cuts traffic, so that a
// silently inert injector cannot pass for a healthy mesh: with o1 isolated,
// a write on o1 must not reach o2 for a few sync intervals; healed, it must.
func (r *chaosRun) probeInjector(ctx context.Context) error {
	o1, o2 := r.nodes[1], r.nodes[2]
	if err := r.writeRules("isolate " + r.ids[o1.Name] + "\n"); err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond) // > the injector's 100 ms re-read
	if _, err := r.cl.CLI(ctx, o1.Dir, "record", "put", r.space, "probe", "cut=yes"); err != nil {
		return err
	}
	seen := func() (bool, error) {
		var rec api.Record
		err := r.cl.CLIJSON(ctx, o2.Dir, &rec, "record", "get", r.space, "probe")
		if err != nil && strings.Contains(err.Error(), api.CodeNotFound) {
			return false, nil
		}
		return rec.Fields["cut"].Value == "yes", err
	}
	deadline := time.Now().Add(5 * time.Second) // 2.5 mean sync intervals of the local profile
	for time.Now().Before(deadline) {
		if ok, _ := seen(); ok {
			return fmt.Errorf("fault injector: o2 read o1's write while o1 was isolated (is %s built with -tags fieldsync_chaos?)", chaosBinary)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err := r.writeRules(""); err != nil {
		return err
	}
	_, err := harness.WaitUntil(ctx, time.Minute, "o2 to read o1's write after the isolation healed", seen)
	return err
}

// writeRules replaces the fault rules file atomically.
func (r *chaosRun) writeRules(rules string) error { return writeAtomic(r.rules, rules) }

// writeTamper replaces the hostile relay's rules file atomically.
func (r *chaosRun) writeTamper(rules string) error {
	return writeAtomic(filepath.Join(r.dir, "tamper"), rules)
}

// clockFile is the file a node's clock offset jumps by (FIELDSYNC_CHAOS_CLOCK_FILE).
func (r *chaosRun) clockFile(n *harness.Node) string {
	return filepath.Join(r.dir, "clock."+n.Name)
}

// writeAtomic replaces a file that an agent reads (write, rename).
func writeAtomic(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

var errCodeRE = regexp.MustCompile(`"code":\s*"([a-z_]+)"`)

// clientState is what one client remembers between its operations.
type clientState struct {
	ci   int
	node *harness.Node
	rng  *rand.Rand
}

// opKind is one kind of client operation: how often a client draws it, the
// CLI arguments it sends (after --json; nil: nothing to do, draw a put
// instead), and what it reads from the acknowledgement. A new kind (a
// release, a revocation) is one more row.
type opKind struct {
	name   string
	weight int
	args   func(r *chaosRun, cs *clientState, op *checker.Op, k int) []string
	ack    func(r *chaosRun, cs *clientState, op *checker.Op, rec api.Record)
}

// The op kinds, as `history` names them.
var opKinds = []opKind{
	{name: "put", weight: 10,
		args: func(r *chaosRun, cs *clientState, op *checker.Op, k int) []string {
			op.Field, op.Value = fmt.Sprintf("f%d", cs.rng.IntN(chaosFields)), fmt.Sprintf("c%d-op%d", cs.ci, k)
			return []string{"record", "put", r.space, op.Record, op.Field + "=" + op.Value}
		},
		ack: ackSibling},
	{name: "set_add", weight: 3,
		args: func(r *chaosRun, cs *clientState, op *checker.Op, k int) []string {
			op.Field, op.Value = fmt.Sprintf("s%d", cs.rng.IntN(chaosSets)), fmt.Sprintf("e%d", cs.rng.IntN(chaosElements))
			return []string{"set", "add", r.space, op.Record, op.Field, op.Value}
		}},
	{name: "set_remove", weight: 2,
		args: func(r *chaosRun, cs *clientState, op *checker.Op, k int) []string {
			op.Field, op.Value = fmt.Sprintf("s%d", cs.rng.IntN(chaosSets)), fmt.Sprintf("e%d", cs.rng.IntN(chaosElements))
			return []string{"set", "remove", r.space, op.Record, op.Field, op.Value}
		}},
	{name: "note_add", weight: 2,
		args: func(r *chaosRun, cs *clientState, op *checker.Op, k int) []string {
			op.Value = fmt.Sprintf("c%d-op%d", cs.ci, k)
			return []string{"note", "add", r.space, op.Record, op.Value}
		},
		ack: func(r *chaosRun, cs *clientState, op *checker.Op, rec api.Record) {
			for _, n := range rec.Notes {
				if n.Text == op.Value {
					op.Dot = n.ID
				}
			}
		}},
	{name: "delete", weight: 1,
		args: func(r *chaosRun, cs *clientState, op *checker.Op, k int) []string {
			return []string{"record", "delete", r.space, op.Record}
		}},
	{name: "resolve", weight: 3,
		args: func(r *chaosRun, cs *clientState, op *checker.Op, k int) []string {
			op.Field, op.Reason = fmt.Sprintf("f%d", cs.rng.IntN(chaosFields)), fmt.Sprintf("c%d-op%d-why", cs.ci, k)
			// A field in conflict on this agent, when there is one (the
			// choice then depends on the state, not on the seed alone).
			x := cs.rng.IntN(1 << 20) // drawn always: the client's later choices stay the seed's
			lctx, cancel := context.WithTimeout(context.Background(), chaosOpTimeout)
			var rows []api.Conflict
			if r.cl.CLIJSON(lctx, cs.node.Dir, &rows, "conflicts", "list", r.space) == nil {
				rows = slices.DeleteFunc(rows, func(c api.Conflict) bool { return c.Field == "" || c.Record == "h0" })
				if len(rows) > 0 {
					c := rows[x%len(rows)]
					op.Record, op.Field = c.Record, c.Field
				}
			}
			cancel()
			if cs.rng.IntN(2) == 0 {
				op.Pick = 1 + cs.rng.IntN(2)
				return []string{"resolve", "--pick", fmt.Sprint(op.Pick), "--reason", op.Reason, r.space, op.Record, op.Field}
			}
			op.Value = fmt.Sprintf("c%d-op%d", cs.ci, k)
			return []string{"resolve", "--value", op.Value, "--reason", op.Reason, r.space, op.Record, op.Field}
		},
		ack: func(r *chaosRun, cs *clientState, op *checker.Op, rec api.Record) {
			if op.Pick == 0 {
				ackSibling(r, cs, op, rec)
			}
		}},
}

// ackSibling reads the dot of a register write from its acknowledgement.
func ackSibling(r *chaosRun, cs *clientState, op *checker.Op, rec api.Record) {
	for _, s := range rec.Fields[op.Field].Siblings {
		if s.Value == op.Value {
			op.Dot = s.Dot
		}
	}
}

func drawKind(rng *rand.Rand) opKind {
	total := 0
	for _, k := range opKinds {
		total += k.weight
	}
	x := rng.IntN(total)
	for _, k := range opKinds {
		if x < k.weight {
			return k
		}
		x -= k.weight
	}
	return opKinds[0]
}

// client sends random operations of every kind (opKinds) to random records
// of its officer's agent, through the CLI, with values unique over the run,
// until the budget or the time runs out.
func (r *chaosRun) client(ctx context.Context, seed int64, ci int, n *harness.Node, dur time.Duration, ops int) {
	cs := &clientState{ci: ci, node: n, rng: rand.New(rand.NewPCG(uint64(seed), uint64(ci)))}
	clients := (len(r.nodes) - 1) * *chaosClientsF
	pace := dur * time.Duration(clients) / time.Duration(max(ops, 1))
	for k := 1; ; k++ {
		if ctx.Err() != nil || r.isDead(n.Name) || r.budget.Add(-1) < 0 {
			return
		}
		kind := drawKind(cs.rng)
		op := checker.Op{Client: fmt.Sprintf("c%d", ci), Node: n.Name, Kind: kind.name, Record: fmt.Sprintf("r%d", cs.rng.IntN(chaosRecords))}
		args := kind.args(r, cs, &op, k)
		if args == nil {
			kind = opKinds[0]
			op.Kind = kind.name
			args = kind.args(r, cs, &op, k)
		}
		r.runOp(n, &op, kind, cs, args)
		r.logOp(op)
		jitter := pace/2 + time.Duration(cs.rng.Int64N(int64(pace)+1))
		select {
		case <-ctx.Done():
			return
		case <-time.After(jitter):
		}
	}
}

// runOp sends one operation through the CLI and classifies its outcome.
func (r *chaosRun) runOp(n *harness.Node, op *checker.Op, kind opKind, cs *clientState, args []string) {
	op.Op = int(r.opID.Add(1))
	op.Start = time.Now()
	// The op's own deadline does not end with the workload's: a call under
	// way finishes (or times out) and is logged.
	octx, cancel := context.WithTimeout(context.Background(), chaosOpTimeout)
	defer cancel()
	out, err := r.cl.CLI(octx, n.Dir, append([]string{"--json"}, args...)...)
	op.End = time.Now()
	switch {
	case err == nil:
		op.Outcome = checker.OK
		var got api.Record
		if kind.ack != nil && json.Unmarshal([]byte(out), &got) == nil {
			kind.ack(r, cs, op, got)
		}
	case octx.Err() != nil:
		op.Outcome, op.Error = checker.Unknown, "timed out after "+chaosOpTimeout.String()
	default:
		op.Error = err.Error()
		op.Outcome = checker.Unknown
		if strings.Contains(op.Error, "chaos: injected commit failure") {
			// The agent promises that a failed commit fails exactly
			// its writes: the checker holds it to that.
			op.Outcome = checker.Failed
		} else if m := errCodeRE.FindStringSubmatch(op.Error); m != nil {
			switch m[1] {
			case "agent_not_running", api.CodeBadRequest, api.CodeNotFound, api.CodeForbidden, api.CodeTooLarge, api.CodeConflict, "usage":
				op.Outcome = checker.Failed // refused before anything was written
			}
		}
	}
}

func (r *chaosRun) logOp(op checker.Op) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op)
	b, _ := json.Marshal(op)
	r.opLog.Write(append(b, '\n'))
}

// runFaults runs the schedule until it ends or ctx does; every fault is
// healed before the next starts. It returns the faults with what happened.
func (r *chaosRun) runFaults(ctx context.Context, faults []fault) []fault {
	var mu gosync.Mutex
	var done []fault
	var wg gosync.WaitGroup
	for _, tr := range []string{"net", "proc", "trust"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, f := range faults {
				if f.Track != tr {
					continue
				}
				if !sleepUntil(ctx, r.started.Add(f.At)) {
					break
				}
				f.Note = r.inject(ctx, f)
				r.t.Logf("chaos: %s", f)
				mu.Lock()
				done = append(done, f)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.SliceStable(done, func(i, j int) bool { return done[i].At < done[j].At })
	return done
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(time.Until(t)):
		return true
	}
}

// inject applies one fault, waits its length (or until ctx ends), and heals it.
func (r *chaosRun) inject(ctx context.Context, f fault) string {
	hold := func() {
		select {
		case <-ctx.Done():
		case <-time.After(f.For):
		}
	}
	k, ok := faultKindNamed(f.Kind)
	if !ok {
		return "unknown fault kind"
	}
	return k.inject(r, ctx, f, hold)
}

// faultKind is one kind of fault: its track, how often it is drawn there,
// how its nodes and amounts are drawn, and how it is applied, held for its
// length and healed. A new kind (a revocation, a bundle carried by hand) is
// one more row.
type faultKind struct {
	name   string
	track  string // "net" or "proc": faults of one track never overlap
	weight int
	draw   func(rng *rand.Rand, dc *drawCtx, f *fault)
	inject func(r *chaosRun, ctx context.Context, f fault, hold func()) string
}

// drawCtx is what a fault kind's draw may use.
type drawCtx struct {
	names, officers []string
	relay           string
	crashes         map[string][]time.Duration // worker crashes drawn, by node
	bureau          map[string]string          // node -> bureau (trust events)
	revoked         string                     // the officer revoked so far (trust events)
}

// split shuffles s and cuts it in two non-empty sides.
func split(rng *rand.Rand, s []string) ([]string, []string) {
	p := append([]string(nil), s...)
	rng.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
	cut := 1 + rng.IntN(len(p)-1)
	return sorted(p[:cut]), sorted(p[cut:])
}

func anyNode(rng *rand.Rand, dc *drawCtx, f *fault) {
	f.Nodes = []string{dc.names[rng.IntN(len(dc.names))]}
}

// faultKinds is the table of fault kinds (set in init: the injectors refer
// to chaosRun's methods).
var faultKinds []faultKind

func init() {
	faultKinds = []faultKind{
		{name: "partition", track: "net", weight: 3,
			draw:   func(rng *rand.Rand, dc *drawCtx, f *fault) { f.Nodes, f.Other = split(rng, dc.names) },
			inject: cutSides},
		// Officers in two groups that reach each other only through the relay.
		{name: "bridge", track: "net", weight: 2,
			draw:   func(rng *rand.Rand, dc *drawCtx, f *fault) { f.Nodes, f.Other = split(rng, dc.officers) },
			inject: cutSides},
		{name: "isolate", track: "net", weight: 2,
			draw: func(rng *rand.Rand, dc *drawCtx, f *fault) {
				f.Nodes = []string{dc.relay}
				if rng.IntN(2) == 0 {
					anyNode(rng, dc, f)
				}
			},
			inject: func(r *chaosRun, ctx context.Context, f fault, hold func()) string {
				if err := r.writeRules("isolate " + r.ids[f.Nodes[0]] + "\n"); err != nil {
					return err.Error()
				}
				hold()
				if err := r.writeRules(""); err != nil {
					r.t.Errorf("heal isolation: %v", err)
				}
				return ""
			}},
		{name: "kill", track: "proc", weight: 3, draw: anyNode, inject: func(r *chaosRun, ctx context.Context, f fault, hold func()) string {
			n := r.byName[f.Nodes[0]]
			r.life.Lock()
			if r.isDead(n.Name) {
				r.life.Unlock()
				return "skipped: revoked, stopped for good"
			}
			r.bytes.Add(r.nodeBytes(ctx, n))
			err := r.kill(n)
			r.life.Unlock()
			if err != nil {
				return err.Error()
			}
			hold()
			// Restart even when the workload ended: the heal needs every agent.
			r.life.Lock()
			defer r.life.Unlock()
			if r.isDead(n.Name) {
				return "not restarted: revoked meanwhile"
			}
			sctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			if err := r.cl.Start(sctx, n, "", r.joinFor(n)...); err != nil {
				r.t.Errorf("restart %s after SIGKILL: %v", n.Name, err)
				return "restart failed"
			}
			return ""
		}},
		// The worker alone: its supervisor restarts it. At most two per agent
		// within the supervisor's crash window, which quarantines the store
		// at five; past that, a kill.
		{name: "crash", track: "proc", weight: 1,
			draw: func(rng *rand.Rand, dc *drawCtx, f *fault) {
				anyNode(rng, dc, f)
				n, recent := f.Nodes[0], 0
				for _, c := range dc.crashes[n] {
					if f.At-c < 2*time.Minute+10*time.Second {
						recent++
					}
				}
				if recent >= 2 {
					f.Kind = "kill"
					return
				}
				dc.crashes[n] = append(dc.crashes[n], f.At)
			},
			inject: func(r *chaosRun, ctx context.Context, f fault, hold func()) string {
				n := r.byName[f.Nodes[0]]
				if r.isDead(n.Name) {
					return "skipped: revoked, stopped for good"
				}
				// Only a worker that is up: one killed while it opens the store
				// looks like a store that crashes at open, which the supervisor
				// quarantines after two in a row (by design).
				sctx, cancel := context.WithTimeout(ctx, time.Second)
				_, err := n.Client().Status(sctx)
				cancel()
				if err != nil {
					return "skipped: worker not answering"
				}
				r.bytes.Add(r.nodeBytes(ctx, n))
				if err := n.SignalWorker(syscall.SIGKILL); err != nil {
					return err.Error()
				}
				hold()
				// The supervisor restarts it after its backoff; wait for that.
				wctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				if _, err := harness.WaitUntil(wctx, 60*time.Second, n.Name+" to restart after a worker crash", func() (bool, error) {
					if r.isDead(n.Name) {
						return true, nil
					}
					_, err := n.Client().Status(wctx)
					return err == nil, err
				}); err != nil {
					r.t.Errorf("%v", err)
					return "not restarted"
				}
				return ""
			}},
		{name: "pause", track: "proc", weight: 2, draw: anyNode, inject: func(r *chaosRun, ctx context.Context, f fault, hold func()) string {
			n := r.byName[f.Nodes[0]]
			if r.isDead(n.Name) {
				return "skipped: revoked, stopped for good"
			}
			if err := n.SignalWorker(syscall.SIGSTOP); err != nil {
				return err.Error()
			}
			hold()
			if err := n.SignalWorker(syscall.SIGCONT); err != nil && !r.isDead(n.Name) {
				r.t.Errorf("SIGCONT %s: %v", n.Name, err)
			}
			return ""
		}},
		// The clock jumps (forward or back, minutes to two days) and jumps
		// back when the fault ends.
		{name: "clockjump", track: "proc", weight: 1,
			draw: func(rng *rand.Rand, dc *drawCtx, f *fault) {
				anyNode(rng, dc, f)
				f.Jump = time.Duration(1+rng.Int64N(48*60)) * time.Minute
				if rng.IntN(2) == 0 {
					f.Jump = -f.Jump
				}
			},
			inject: func(r *chaosRun, ctx context.Context, f fault, hold func()) string {
				n := r.byName[f.Nodes[0]]
				if err := writeAtomic(r.clockFile(n), f.Jump.String()); err != nil {
					return err.Error()
				}
				hold()
				if err := writeAtomic(r.clockFile(n), ""); err != nil {
					r.t.Errorf("clock of %s back: %v", n.Name, err)
				}
				return ""
			}},
		// A partition of the officers (the relay on one side) across which
		// an officer carries a bundle by hand: `bundle want` on the
		// receiver, `bundle export --want` on the sender, `bundle import`
		// on the receiver (Carry: sender, receiver). Drawn only with
		// -chaos.trust, so that the other runs keep their schedules.
		{name: "bundle", track: "net", weight: 2,
			draw: func(rng *rand.Rand, dc *drawCtx, f *fault) {
				f.Nodes, f.Other = split(rng, dc.officers)
				f.Carry = []string{f.Nodes[rng.IntN(len(f.Nodes))], f.Other[rng.IntN(len(f.Other))]}
				if rng.IntN(2) == 0 {
					f.Nodes = sorted(append(f.Nodes, dc.relay))
				} else {
					f.Other = sorted(append(f.Other, dc.relay))
				}
			},
			inject: func(r *chaosRun, ctx context.Context, f fault, hold func()) string {
				start := time.Now()
				return cutSidesAnd(r, f, hold, func() string {
					// Let the sides drift apart a little first.
					sleepUntil(ctx, start.Add(min(f.For/2, time.Second)))
					// A revoked officer carries nothing: another of its side does.
					from, to := r.alive(f.Carry[0], f.Nodes), r.alive(f.Carry[1], f.Other)
					if from == nil || to == nil {
						return "no bundle: a side has no officer left"
					}
					return r.carry(from, to)
				})
			}},
		// Trust events (track "trust", drawn by trustSchedule): an officer
		// of the owning bureau withdraws KAZ or releases it again; at most
		// once a run, an officer (not o1, which created the space) is
		// revoked through another officer's agent and its agent stopped for
		// good (a lost laptop).
		{name: "withdraw", track: "trust", weight: 0, draw: drawActor,
			inject: func(r *chaosRun, ctx context.Context, f fault, hold func()) string {
				return r.releaseOp("withdraw", f.Nodes)
			}},
		{name: "release", track: "trust", weight: 0, draw: drawActor,
			inject: func(r *chaosRun, ctx context.Context, f fault, hold func()) string {
				return r.releaseOp("release", f.Nodes)
			}},
		{name: "revoke", track: "trust", weight: 0,
			draw: func(rng *rand.Rand, dc *drawCtx, f *fault) {
				cands := dc.officers[1:] // not o1, the space's creator
				victim := cands[rng.IntN(len(cands))]
				var others []string
				for _, o := range dc.officers {
					if o != victim {
						others = append(others, o)
					}
				}
				f.Nodes, f.Other = []string{others[rng.IntN(len(others))]}, []string{victim}
				dc.revoked = victim
			},
			inject: func(r *chaosRun, ctx context.Context, f fault, hold func()) string {
				return r.revoke(r.byName[f.Nodes[0]], r.byName[f.Other[0]])
			}},
	}
}

// drawActor draws the owning bureau's officers who send a release or a
// withdrawal: one first, the others (not revoked) in turn if it is down.
func drawActor(rng *rand.Rand, dc *drawCtx, f *fault) {
	var omn []string
	for _, o := range dc.officers {
		if dc.bureau[o] == chaosBureau && o != dc.revoked {
			omn = append(omn, o)
		}
	}
	first := rng.IntN(len(omn))
	f.Nodes = append(append([]string(nil), omn[first:]...), omn[:first]...)
}

// trustSchedule draws the trust events from the seed alone (a PRNG of its
// own, so the network and process tracks stay those of a run without
// them): every 3–7 s, at most chaosMaxTrust (or one per 10 s of a longer
// run), a withdrawal of KAZ when it is released, a release when it is
// withdrawn; one of them (its place drawn) is the run's revocation; whether
// KAZ ends released is drawn too.
func trustSchedule(seed int64, names []string, relay string, bureau map[string]string, d time.Duration) []fault {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x7a57))
	dc := &drawCtx{names: names, relay: relay, bureau: bureau}
	for _, n := range names {
		if n != relay {
			dc.officers = append(dc.officers, n)
		}
	}
	limit := max(chaosMaxTrust, int(d/(10*time.Second)))
	revokeAt := rng.IntN(limit)
	var out []fault
	released := true
	t := 2*time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))
	for len(out) < limit && t+2*time.Second <= d {
		f := fault{Track: "trust", At: t, For: time.Second}
		switch {
		case len(out) == revokeAt && len(dc.officers) >= 2:
			f.Kind = "revoke"
		case released:
			f.Kind = "withdraw"
		default:
			f.Kind = "release"
		}
		if f.Kind != "revoke" {
			released = !released
		}
		k, _ := faultKindNamed(f.Kind)
		k.draw(rng, dc, &f)
		out = append(out, f)
		t += 3*time.Second + time.Duration(rng.Int64N(int64(4*time.Second)))
	}
	// Whether KAZ ends released is the seed's too (else the parity of the
	// count would decide it, and long runs would always end withdrawn):
	// if the draw differs, the last withdrawal or release is left out.
	if endReleased := rng.IntN(2) == 0; endReleased != released {
		for i := len(out) - 1; i >= 0; i-- {
			if out[i].Kind != "revoke" {
				out = append(out[:i], out[i+1:]...)
				break
			}
		}
	}
	return out
}

func faultKindNamed(name string) (faultKind, bool) {
	for _, k := range faultKinds {
		if k.name == name {
			return k, true
		}
	}
	return faultKind{}, false
}

// cutSides cuts every pair across a partition or a bridge.
func cutSides(r *chaosRun, ctx context.Context, f fault, hold func()) string {
	return cutSidesAnd(r, f, hold, nil)
}

// cutSidesAnd cuts every pair across the sides, runs during (if any) while
// they are cut, holds, and heals.
func cutSidesAnd(r *chaosRun, f fault, hold func(), during func() string) string {
	var b strings.Builder
	for _, a := range f.Nodes {
		for _, o := range f.Other {
			fmt.Fprintf(&b, "drop %s %s\ndrop %s %s\n", r.ids[a], r.ids[o], r.ids[o], r.ids[a])
		}
	}
	if err := r.writeRules(b.String()); err != nil {
		return err.Error()
	}
	note := ""
	if during != nil {
		note = during()
	}
	hold()
	if err := r.writeRules(""); err != nil {
		r.t.Errorf("heal partition: %v", err)
	}
	return note
}

// kill sends SIGKILL to the node's agent (its worker dies with it) and
// waits until the worker is gone, so that a restart finds the store free.
func (r *chaosRun) kill(n *harness.Node) error {
	w := n.WorkerPid()
	if err := r.cl.Kill(n); err != nil {
		return err
	}
	if w == 0 {
		return nil
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(w, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", w)); err == nil && strings.Contains(string(b), ") Z ") {
			return nil // a zombie holds no files
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("worker %d of %s outlived its supervisor's SIGKILL by 15s", w, n.Name)
}

// joinFor lists the addresses a restarted node joins through: everyone else.
func (r *chaosRun) joinFor(n *harness.Node) []string {
	var out []string
	for _, o := range r.nodes {
		if o != n && !r.isDead(o.Name) {
			out = append(out, o.Bind)
		}
	}
	return out
}

// healAll lifts every fault: no rules, every worker continued, every agent
// running (but the one stopped for good).
func (r *chaosRun) healAll(ctx context.Context) error {
	if err := r.writeRules(""); err != nil {
		return err
	}
	for _, n := range r.nodes {
		if r.isDead(n.Name) {
			continue
		}
		if n.Running() {
			n.SignalWorker(syscall.SIGCONT)
			continue
		}
		if err := r.cl.Start(ctx, n, "", r.joinFor(n)...); err != nil {
			return fmt.Errorf("heal: start %s: %v", n.Name, err)
		}
	}
	return nil
}

// cleanup continues any paused worker and stops every agent.
func (r *chaosRun) cleanup() {
	for _, n := range r.nodes {
		if n.Running() {
			n.SignalWorker(syscall.SIGCONT)
		}
	}
	r.cl.StopAll()
}

// digests reads `space digest --json` on the given agents (relay first).
func (r *chaosRun) digests(ctx context.Context, nodes []*harness.Node) ([]api.Digest, error) {
	var out []api.Digest
	for _, n := range nodes {
		var d api.Digest
		if err := r.cl.CLIJSON(ctx, n.Dir, &d, "space", "digest", r.space); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func (r *chaosRun) same(nodes []*harness.Node, ds []api.Digest) bool {
	for i, d := range ds {
		if d.Envelopes != ds[0].Envelopes || (!nodes[i].Relay && d.Digest != ds[1].Digest) {
			return false
		}
	}
	return true
}

// alive returns the named officer, or if it was stopped for good the first
// other officer of side still there (nil if none).
func (r *chaosRun) alive(name string, side []string) *harness.Node {
	for _, n := range append([]string{name}, side...) {
		if nd := r.byName[n]; !nd.Relay && !r.isDead(n) {
			return nd
		}
	}
	return nil
}

// isDead reports whether the node was stopped for good (revoked).
func (r *chaosRun) isDead(name string) bool {
	r.deadMu.Lock()
	defer r.deadMu.Unlock()
	return r.dead[name]
}

// entitled lists the agents judged for convergence: the relay first, then
// every officer not stopped for good whose bureau is on the release list
// o1 (the owning bureau's, never revoked) shows.
func (r *chaosRun) entitled(ctx context.Context) ([]*harness.Node, error) {
	release := []string{chaosBureau}
	if *chaosTrust {
		var rows []api.Space
		if err := r.cl.CLIJSON(ctx, r.nodes[1].Dir, &rows, "space", "list"); err != nil {
			return nil, err
		}
		for _, sp := range rows {
			if sp.ID == r.space {
				release = sp.Release
			}
		}
	}
	var out []*harness.Node
	for _, n := range r.nodes {
		if !r.isDead(n.Name) && (n.Relay || !*chaosTrust || slices.Contains(release, r.bureau[n.Name])) {
			out = append(out, n)
		}
	}
	return out, nil
}

// judgedDigests reads the digests of the entitled agents, and remembers them.
func (r *chaosRun) judgedDigests(ctx context.Context) ([]*harness.Node, []api.Digest, error) {
	nodes, err := r.entitled(ctx)
	if err != nil {
		return nil, nil, err
	}
	r.judged = nodes
	ds, err := r.digests(ctx, nodes)
	return nodes, ds, err
}

// converge waits until every agent holds the same envelopes and every
// officer the same state, then for a quiet period in which that holds
// unchanged. It returns the time from the heal to the first convergence.
func (r *chaosRun) converge(ctx context.Context, healed time.Time) (time.Duration, error) {
	deadline := healed.Add(chaosConverge)
	var took time.Duration
	var last []api.Digest
	for time.Now().Before(deadline) {
		nodes, ds, err := r.judgedDigests(ctx)
		if err == nil && r.same(nodes, ds) {
			if took == 0 {
				took = time.Since(healed)
			}
			if last != nil && ds[0].Envelopes == last[0].Envelopes && ds[1].Digest == last[1].Digest {
				return took, nil
			}
			last = ds
			if !sleepUntil(ctx, time.Now().Add(chaosQuiet)) {
				return took, ctx.Err()
			}
			continue
		}
		took, last = 0, nil
		if !sleepUntil(ctx, time.Now().Add(250*time.Millisecond)) {
			return 0, ctx.Err()
		}
	}
	nodes, ds, _ := r.judgedDigests(ctx)
	var b strings.Builder
	for i, d := range ds {
		fmt.Fprintf(&b, "\n  %s: %d envelopes %.12s digest %.12s", nodes[i].Name, d.Count, d.Envelopes, d.Digest)
	}
	return 0, fmt.Errorf("agents did not converge within %s of the heal:%s", chaosConverge, b.String())
}

// prunePhase has every other officer judged prune every superseded value
// now, through the CLI (`fieldsync compact --min-age 0s`), and checks that
// no replica's state or envelope set changed and that no live value is
// held without its bytes. The phases after it then sync pruned and whole
// copies of the same envelopes, and the checker judges the end.
func (r *chaosRun) prunePhase(ctx context.Context) error {
	nodes, before, err := r.judgedDigests(ctx)
	if err != nil {
		return err
	}
	cut, officers := 0, 0
	var on []string
	for _, n := range nodes {
		if n.Relay {
			continue
		}
		officers++
		if officers%2 == 0 {
			continue
		}
		var out api.Compacted
		if err := r.cl.CLIJSON(ctx, n.Dir, &out, "compact", "--min-age", "0s"); err != nil {
			return fmt.Errorf("prune phase: compact on %s: %w", n.Name, err)
		}
		for _, s := range out.Spaces {
			cut += s.Envelopes
			if s.Withheld != 0 {
				return fmt.Errorf("prune phase: %s holds %d live values without their bytes in space %s", n.Name, s.Withheld, s.Space)
			}
		}
		on = append(on, n.Name)
	}
	after, err := r.digests(ctx, nodes)
	if err != nil {
		return err
	}
	for i, n := range nodes {
		if after[i].Digest != before[i].Digest || after[i].Envelopes != before[i].Envelopes {
			return fmt.Errorf("prune phase: %s changed: digest %.12s → %.12s, envelopes %.12s → %.12s", n.Name, before[i].Digest, after[i].Digest, before[i].Envelopes, after[i].Envelopes)
		}
	}
	if cut == 0 {
		return fmt.Errorf("prune phase: nothing pruned on %v: the phase proves nothing", on)
	}
	r.t.Logf("chaos: prune phase: %d envelopes pruned on %v; states and envelope sets unchanged", cut, on)
	return nil
}

// returnPhase is the device that returns after others pruned (issue 16
// item 3; docs/design.md §7, "Bounded storage"). An officer W writes
// records every officer then holds whole; a second officer R is cut off
// from everyone. W overwrites ret-o twice (new1, then new2), deletes
// ret-d and edits ret-c, then prunes at once (compact --min-age 0s): it
// holds new1 as a stub. R meanwhile edits ret-c (a concurrent edit) and
// writes a new record. R then returns reaching W alone (so it gets new1 as
// W's stub, not whole from another), and everyone converges. Every officer
// must show ret-d deleted, ret-o with new2 alone (R holds the old value
// whole: a stub that did not kill it would bring it back beside new2),
// ret-c with both edits as siblings, and R's new record; R's own pruning
// then changes nothing. Its writes are logged ops, so the checker judges
// them too. Only W and R prune: the checker reads a pruned value from an
// officer that kept it whole (the prune phase spared every second officer,
// neither W nor R), so the phase needs three officers still judged.
func (r *chaosRun) returnPhase(ctx context.Context) error {
	var officers []*harness.Node
	for _, n := range r.judged {
		if !n.Relay {
			officers = append(officers, n)
		}
	}
	if len(officers) < 3 {
		// W's pruned write would be held whole by no officer, and the
		// checker reads a pruned op's value from one that holds it whole.
		r.t.Logf("chaos: return phase skipped: %d entitled officer(s) left, and it needs three (one keeps whole copies for the checker)", len(officers))
		return nil
	}
	w, ret := officers[0], officers[len(officers)-1]
	put := func(n *harness.Node, rec, tag string) (checker.Op, error) {
		op := checker.Op{Client: "ret", Node: n.Name, Kind: "put", Record: rec, Field: "v", Value: fmt.Sprintf("ret-%s-op%d", tag, r.opID.Load()+1)}
		r.runOp(n, &op, opKinds[0], nil, []string{"record", "put", r.space, rec, "v=" + op.Value})
		r.logOp(op)
		if op.Outcome != checker.OK {
			return op, fmt.Errorf("return phase: put %s on %s: %s %s (no fault is running)", rec, n.Name, op.Outcome, op.Error)
		}
		return op, nil
	}
	var err error
	var old, new1, new2, wside, rside, fresh checker.Op
	for _, p := range []struct {
		op       *checker.Op
		rec, tag string
	}{{&old, "ret-o", "old"}, {nil, "ret-d", "doomed"}, {nil, "ret-c", "base"}} {
		op, err := put(w, p.rec, p.tag)
		if err != nil {
			return err
		}
		if p.op != nil {
			*p.op = op
		}
	}
	if _, err := r.converge(ctx, time.Now()); err != nil {
		return fmt.Errorf("return phase: before the cut: %w", err)
	}

	if err := r.writeRules("isolate " + r.ids[ret.Name] + "\n"); err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond) // > the injector's 100 ms re-read
	if new1, err = put(w, "ret-o", "new1"); err != nil {
		return err
	}
	if new2, err = put(w, "ret-o", "new2"); err != nil {
		return err
	}
	del := checker.Op{Client: "ret", Node: w.Name, Kind: "delete", Record: "ret-d"}
	r.runOp(w, &del, opKinds[4], nil, []string{"record", "delete", r.space, "ret-d"})
	r.logOp(del)
	if del.Outcome != checker.OK {
		return fmt.Errorf("return phase: delete on %s: %s %s", w.Name, del.Outcome, del.Error)
	}
	if wside, err = put(w, "ret-c", "wside"); err != nil {
		return err
	}
	if rside, err = put(ret, "ret-c", "rside"); err != nil {
		return err
	}
	if fresh, err = put(ret, "ret-n", "fresh"); err != nil {
		return err
	}
	// The other officers (not R) get W's writes whole before W prunes:
	// the checker reads new1's value from them.
	for _, n := range officers[1 : len(officers)-1] {
		if _, err := harness.WaitUntil(ctx, chaosPhaseLimit, n.Name+" to hold W's writes before W prunes", func() (bool, error) {
			var rec api.Record
			if err := r.cl.CLIJSON(ctx, n.Dir, &rec, "record", "get", r.space, "ret-c"); err != nil {
				return false, nil
			}
			return slices.ContainsFunc(rec.Fields["v"].Siblings, func(s api.Sibling) bool { return s.Value == wside.Value }), nil
		}); err != nil {
			return fmt.Errorf("return phase: %w", err)
		}
	}
	var out api.Compacted
	if err := r.cl.CLIJSON(ctx, w.Dir, &out, "compact", "--min-age", "0s"); err != nil {
		return fmt.Errorf("return phase: compact on %s: %w", w.Name, err)
	}
	pruned := 0
	for _, s := range out.Spaces {
		pruned += s.Envelopes
	}
	if pruned == 0 {
		return fmt.Errorf("return phase: %s pruned nothing: the phase proves nothing", w.Name)
	}

	// R returns reaching W alone, then everyone.
	var only strings.Builder
	for _, n := range r.nodes {
		if n != w && n != ret {
			fmt.Fprintf(&only, "drop %s %s\ndrop %s %s\n", r.ids[ret.Name], r.ids[n.Name], r.ids[n.Name], r.ids[ret.Name])
		}
	}
	if err := r.writeRules(only.String()); err != nil {
		return err
	}
	if _, err := r.converge(ctx, time.Now()); err != nil {
		return fmt.Errorf("return phase: after %s returned through %s: %w", ret.Name, w.Name, err)
	}
	if err := r.writeRules(""); err != nil {
		return err
	}
	check := func(n *harness.Node) error {
		var rec api.Record
		err := r.cl.CLIJSON(ctx, n.Dir, &rec, "record", "get", r.space, "ret-d")
		switch {
		case err != nil && !strings.Contains(err.Error(), api.CodeNotFound):
			return err
		case err == nil && !rec.Deleted && len(rec.Fields) > 0:
			return fmt.Errorf("return phase: %s shows the deleted record ret-d again: %v", n.Name, rec.Fields)
		}
		for rec, want := range map[string][]string{"ret-o": {new2.Value}, "ret-c": {wside.Value, rside.Value}, "ret-n": {fresh.Value}} {
			var got api.Record
			if err := r.cl.CLIJSON(ctx, n.Dir, &got, "record", "get", r.space, rec); err != nil {
				return err
			}
			var vs []string
			for _, s := range got.Fields["v"].Siblings {
				vs = append(vs, s.Value)
			}
			slices.Sort(vs)
			slices.Sort(want)
			if !slices.Equal(vs, want) {
				return fmt.Errorf("return phase: %s shows %s.v = %v, want %v (%s and %s overwritten, never to come back)", n.Name, rec, vs, want, old.Value, new1.Value)
			}
		}
		return nil
	}
	for _, n := range officers {
		if err := check(n); err != nil {
			return err
		}
	}
	// The returning officer prunes its whole copies: nothing changes.
	nodes, before, err := r.judgedDigests(ctx)
	if err != nil {
		return err
	}
	if err := r.cl.CLIJSON(ctx, ret.Dir, &out, "compact", "--min-age", "0s"); err != nil {
		return fmt.Errorf("return phase: compact on %s: %w", ret.Name, err)
	}
	after, err := r.digests(ctx, nodes)
	if err != nil {
		return err
	}
	for i, n := range nodes {
		if after[i].Digest != before[i].Digest || after[i].Envelopes != before[i].Envelopes {
			return fmt.Errorf("return phase: %s changed when %s pruned: digest %.12s → %.12s", n.Name, ret.Name, before[i].Digest, after[i].Digest)
		}
	}
	if err := check(ret); err != nil {
		return err
	}
	r.t.Logf("chaos: return phase: %s returned through %s after it pruned %d envelopes; ret-d stayed deleted, %s and %s never came back, the concurrent edits %s and %s both kept",
		ret.Name, w.Name, pruned, old.Value, new1.Value, wside.Value, rside.Value)
	return nil
}

// Hostile phases: lengths and limits.
const (
	chaosPhaseLimit   = 90 * time.Second // bound on waiting for a phase's effect
	chaosReplayWrites = 3                // writes in the replay phase
	chaosSettle       = 2 * time.Second  // after the relay stops altering, before counting
)

// officerPairsCut is the rules that cut every officer from every other:
// they reach each other only through the relay.
func (r *chaosRun) officerPairsCut() string {
	var b strings.Builder
	for _, x := range r.nodes[1:] {
		for _, y := range r.nodes[1:] {
			if x != y {
				fmt.Fprintf(&b, "drop %s %s\n", r.ids[x.Name], r.ids[y.Name])
			}
		}
	}
	return b.String()
}

// snapshot reads every agent's status and digest (and the officers'
// record of the hostile phases) through the CLI.
func (r *chaosRun) snapshot(ctx context.Context, label string) ([]checker.Node, error) {
	var out []checker.Node
	for _, n := range r.judged {
		cn := checker.Node{Name: n.Name, Relay: n.Relay}
		var err error
		if cn.Status, err = r.cliRaw(ctx, n, "status"); err != nil {
			return nil, err
		}
		if cn.Digest, err = r.cliRaw(ctx, n, "space", "digest", r.space); err != nil {
			return nil, err
		}
		if !n.Relay {
			cn.Records = map[string][]byte{}
			if cn.Records["h0"], err = r.cliRaw(ctx, n, "record", "get", r.space, "h0"); err != nil {
				return nil, err
			}
		}
		os.WriteFile(filepath.Join(r.dir, n.Name+"."+label+".status.json"), cn.Status, 0o600)
		out = append(out, cn)
	}
	return out, nil
}

// hostileWrite is one logged put of the hostile phases (client "h").
func (r *chaosRun) hostileWrite(n *harness.Node) checker.Op {
	id := r.opID.Load() + 1
	op := checker.Op{Client: "h", Node: n.Name, Kind: "put", Record: "h0", Field: "g" + strings.TrimPrefix(n.Name, "o"), Value: fmt.Sprintf("h-op%d", id)}
	r.runOp(n, &op, opKinds[0], nil, []string{"record", "put", r.space, op.Record, op.Field + "=" + op.Value})
	r.logOp(op)
	return op
}

// hostilePhases runs, after the heal and convergence, the hostile relay as
// the officers' only path: a replay phase (every envelope it sends followed
// by an older one of its author: nothing may change), a withhold phase
// (alterations, and o1's next seqs withheld: every other officer must show
// the exact range as a gap), then an honest path (officers reach each
// other; the relay still withholds) on which the agents must converge.
func (r *chaosRun) hostilePhases(ctx context.Context, seed int64) (checker.Hostile, error) {
	var h checker.Hostile
	t := r.t
	officers := r.judged[1:]
	o1 := officers[0]
	rng := rand.New(rand.NewPCG(uint64(seed), 0x4057))

	// Replay phase.
	var err error
	if h.ReplayStart, err = r.snapshot(ctx, "replay-start"); err != nil {
		return h, err
	}
	h.ReplayFrom = time.Now()
	if err := r.writeRules(r.officerPairsCut()); err != nil {
		return h, err
	}
	if err := r.writeTamper("replay 1\n"); err != nil {
		return h, err
	}
	time.Sleep(300 * time.Millisecond) // > the agents' 100 ms re-read
	writer := officers[1%len(officers)]
	for i := 0; i < chaosReplayWrites; i++ {
		if op := r.hostileWrite(writer); op.Outcome == checker.OK {
			h.ReplayWrites++
		} else if op.Outcome == checker.Unknown {
			return h, fmt.Errorf("replay phase: write on %s: %s (no fault is running)", writer.Name, op.Error)
		}
	}
	if _, err := harness.WaitUntil(ctx, chaosPhaseLimit, "every agent to hold the replay phase's writes through the hostile relay", func() (bool, error) {
		ds, err := r.digests(ctx, r.judged)
		return err == nil && r.same(r.judged, ds), err
	}); err != nil {
		t.Errorf("replay phase: %v", err)
	}
	if err := r.writeTamper(""); err != nil {
		return h, err
	}
	time.Sleep(chaosSettle)
	h.ReplayTo = time.Now()
	if h.ReplayEnd, err = r.snapshot(ctx, "replay-end"); err != nil {
		return h, err
	}
	t.Logf("chaos: replay phase: %d writes on %s through the relay in %s", h.ReplayWrites, writer.Name, h.ReplayTo.Sub(h.ReplayFrom).Round(time.Millisecond))

	// Withhold phase: o1's head H from a first write, then H+1..H+k withheld.
	if h.WithholdStart, err = r.snapshot(ctx, "withhold-start"); err != nil {
		return h, err
	}
	h.WithholdFrom = time.Now()
	alter := "flip 0.1\ntruncate 0.1\nsplice 0.1\nreplay 0.3\n"
	if err := r.writeTamper(alter); err != nil {
		return h, err
	}
	first := r.hostileWrite(o1)
	_, seqs, _ := strings.Cut(first.Dot, ":")
	seqs, _, _ = strings.Cut(seqs, ".")
	var head uint64
	if _, err := fmt.Sscan(seqs, &head); err != nil || first.Outcome != checker.OK {
		return h, fmt.Errorf("withhold phase: o1's first write: %s %s (dot %q)", first.Outcome, first.Error, first.Dot)
	}
	k := uint64(2 + rng.IntN(4))
	h.Gap = checker.Gap{Space: r.space, Author: r.ids[o1.Name], From: head + 1, To: head + k}
	withhold := fmt.Sprintf("withhold %s %d %d\n", h.Gap.Author, h.Gap.From, h.Gap.To)
	if err := r.writeTamper(alter + withhold); err != nil {
		return h, err
	}
	time.Sleep(300 * time.Millisecond)
	for i := uint64(0); i <= k; i++ { // k withheld, one after them
		if op := r.hostileWrite(o1); op.Outcome != checker.OK {
			return h, fmt.Errorf("withhold phase: o1's write %d: %s %s", i, op.Outcome, op.Error)
		}
	}
	for _, o := range officers[1:] { // traffic for the relay to alter
		r.hostileWrite(o)
	}
	if _, err := harness.WaitUntil(ctx, chaosPhaseLimit, "every officer but o1 to show o1's withheld range as a gap", func() (bool, error) {
		for _, o := range officers[1:] {
			var st api.Status
			if err := r.cl.CLIJSON(ctx, o.Dir, &st, "status"); err != nil {
				return false, err
			}
			if !slices.ContainsFunc(st.Gaps, func(g api.Gap) bool {
				return g.Space == h.Gap.Space && g.Author == h.Gap.Author && g.From == h.Gap.From && g.To == h.Gap.To
			}) {
				return false, fmt.Errorf("%s: gaps %v", o.Name, st.Gaps)
			}
		}
		return true, nil
	}); err != nil {
		t.Logf("chaos: withhold phase: %v (the checker judges the snapshot)", err)
	}
	if err := r.writeTamper(withhold); err != nil { // stop altering; keep withholding
		return h, err
	}
	time.Sleep(chaosSettle)
	h.WithholdTo = time.Now()
	if h.WithholdSeen, err = r.snapshot(ctx, "withhold-seen"); err != nil {
		return h, err
	}

	// Honest path: officers reach each other; the relay still withholds.
	if err := r.writeRules(""); err != nil {
		return h, err
	}
	start := time.Now()
	if _, err := harness.WaitUntil(ctx, chaosConverge, "convergence over an honest path, the relay withholding", func() (bool, error) {
		ds, err := r.digests(ctx, r.judged)
		return err == nil && r.same(r.judged, ds), err
	}); err != nil {
		h.HonestPathError = err.Error()
	} else {
		h.HonestPath = true
		r.honestTook = time.Since(start)
	}
	if err := r.writeTamper(""); err != nil {
		return h, err
	}
	t.Logf("chaos: withhold phase: o1's seqs %d..%d withheld; honest path converged in %s", h.Gap.From, h.Gap.To, r.honestTook.Round(time.Millisecond))
	return h, nil
}

// collect reads what the checker needs through the CLI's --json output.
func (r *chaosRun) collect(ctx context.Context) ([]checker.Node, error) {
	var out []checker.Node
	for _, n := range r.nodes {
		cn := checker.Node{Name: n.Name, Relay: n.Relay}
		if r.isDead(n.Name) {
			cn.Dead, cn.Status = true, r.setupStatus[n.Name]
			out = append(out, cn)
			continue
		}
		var err error
		if cn.Digest, err = r.cliRaw(ctx, n, "space", "digest", r.space); err != nil {
			return nil, err
		}
		if cn.Spaces, err = r.cliRaw(ctx, n, "space", "list"); err != nil {
			return nil, err
		}
		if cn.Status, err = r.cliRaw(ctx, n, "status"); err != nil {
			return nil, err
		}
		if !n.Relay {
			if cn.Conflicts, err = r.cliRaw(ctx, n, "conflicts", "list", r.space); err != nil {
				return nil, err
			}
			cn.Records, cn.Histories = map[string][]byte{}, map[string][]byte{}
			for _, id := range r.recordIDs() {
				if cn.Records[id], err = r.cliRaw(ctx, n, "record", "get", r.space, id); err != nil {
					return nil, err
				}
				if cn.Histories[id], err = r.cliRaw(ctx, n, "history", r.space, id); err != nil {
					return nil, err
				}
			}
		}
		for name, b := range map[string][]byte{"digest": cn.Digest, "conflicts": cn.Conflicts, "status": cn.Status, "spaces": cn.Spaces} {
			os.WriteFile(filepath.Join(r.dir, n.Name+"."+name+".json"), b, 0o600)
		}
		for id, b := range cn.Records {
			os.WriteFile(filepath.Join(r.dir, n.Name+".record."+id+".json"), b, 0o600)
			os.WriteFile(filepath.Join(r.dir, n.Name+".history."+id+".json"), cn.Histories[id], 0o600)
		}
		out = append(out, cn)
	}
	return out, nil
}

// recordIDs lists the records the clients wrote to, and r0..r3.
func (r *chaosRun) recordIDs() []string {
	ids := map[string]bool{}
	for i := 0; i < chaosRecords; i++ {
		ids[fmt.Sprintf("r%d", i)] = true
	}
	r.mu.Lock()
	for _, op := range r.ops {
		if op.Record != "" { // trust events name no record
			ids[op.Record] = true
		}
	}
	r.mu.Unlock()
	return sortedKeys(ids)
}

// cliRaw runs a --json command, retrying a few times; not found gives nil.
func (r *chaosRun) cliRaw(ctx context.Context, n *harness.Node, args ...string) ([]byte, error) {
	var err error
	for try := 0; try < 3; try++ {
		var out string
		out, err = r.cl.CLI(ctx, n.Dir, append([]string{"--json"}, args...)...)
		if err == nil {
			return []byte(out), nil
		}
		if m := errCodeRE.FindStringSubmatch(err.Error()); m != nil && m[1] == api.CodeNotFound {
			return nil, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil, fmt.Errorf("%s: %v", n.Name, err)
}

// nodeBytes is what one agent sent since it started (sync and gossip).
func (r *chaosRun) nodeBytes(ctx context.Context, n *harness.Node) uint64 {
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := n.Client().Status(sctx)
	if err != nil || st.Sync == nil {
		return 0
	}
	return st.Sync.BytesOut + st.Sync.GossipBytesOut
}

func (r *chaosRun) sampleBytes(ctx context.Context) uint64 {
	var sum uint64
	for _, n := range r.nodes {
		sum += r.nodeBytes(ctx, n)
	}
	return sum
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestChaosSchedule: a seed gives one schedule; faults are bounded in count
// and time, never overlap on one track, and the last of each track lasts
// until the workload ends.
func TestChaosSchedule(t *testing.T) {
	names := []string{"relay", "o1", "o2", "o3", "o4"}
	d := 45 * time.Second
	kinds := map[string]int{}
	for seed := int64(1); seed <= 50; seed++ {
		a, b := schedule(seed, names, "relay", d), schedule(seed, names, "relay", d)
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if string(ja) != string(jb) {
			t.Fatalf("seed %d: two schedules differ", seed)
		}
		if len(a) == 0 || len(a) > 2*chaosMaxFaults {
			t.Fatalf("seed %d: %d faults", seed, len(a))
		}
		end := map[string]time.Duration{}
		crashes := map[string]int{}
		for i, f := range a {
			if f.Track != "net" && f.Track != "proc" {
				t.Fatalf("seed %d: fault %d on track %q", seed, i, f.Track)
			}
			if k, ok := faultKindNamed(f.Kind); !ok || k.track != f.Track {
				t.Fatalf("seed %d: %s on track %s, not in the table of fault kinds", seed, f.Kind, f.Track)
			}
			if net := f.Kind == "partition" || f.Kind == "bridge" || f.Kind == "isolate" || f.Kind == "bundle"; net != (f.Track == "net") {
				t.Fatalf("seed %d: %s on track %s", seed, f.Kind, f.Track)
			}
			if f.At < end[f.Track] || f.For <= 0 || f.At+f.For > d {
				t.Fatalf("seed %d: fault %d (%s) overlaps the previous of its track or leaves the workload", seed, i, f)
			}
			if f.At+f.For < d && (f.For < chaosFaultMin || f.For > chaosFaultMax) {
				t.Fatalf("seed %d: fault %d lasts %s", seed, i, f.For)
			}
			if f.Kind == "bridge" && (slices.Contains(f.Nodes, "relay") || slices.Contains(f.Other, "relay")) {
				t.Fatalf("seed %d: bridge puts the relay on one side: %s", seed, f)
			}
			if (f.Kind == "partition" || f.Kind == "bridge" || f.Kind == "bundle") && (len(f.Nodes) == 0 || len(f.Other) == 0) {
				t.Fatalf("seed %d: one-sided partition %s", seed, f)
			}
			if f.Kind == "bundle" && (len(f.Carry) != 2 || !slices.Contains(f.Nodes, f.Carry[0]) || !slices.Contains(f.Other, f.Carry[1]) || slices.Contains(f.Carry, "relay")) {
				t.Fatalf("seed %d: a bundle not carried from one side's officer to the other's: %s", seed, f)
			}
			if f.Kind == "crash" {
				crashes[f.Nodes[0]]++
			}
			if (f.Kind == "clockjump") != (f.Jump != 0) || f.Jump > 48*time.Hour || f.Jump < -48*time.Hour {
				t.Fatalf("seed %d: %s jumps by %s", seed, f, f.Jump)
			}
			kinds[f.Kind]++
			end[f.Track] = f.At + f.For
		}
		if end["net"] != d || end["proc"] != d {
			t.Fatalf("seed %d: the tracks end at %v, not at the workload's end %s", seed, end, d)
		}
		for n, c := range crashes {
			if c > 2 {
				t.Fatalf("seed %d: %d worker crashes of %s within one crash window", seed, c, n)
			}
		}
	}
	for _, k := range []string{"partition", "bridge", "isolate", "kill", "crash", "pause", "clockjump", "bundle"} {
		if kinds[k] == 0 {
			t.Fatalf("50 seeds drew no %s", k)
		}
	}
	if x, y := schedule(1, names, "relay", d), schedule(2, names, "relay", d); fmt.Sprint(x) == fmt.Sprint(y) {
		t.Fatal("seeds 1 and 2 give the same schedule")
	}
}

// trustCLI runs one trust command (release, withdraw, revoke, a bundle
// step) with --json and classifies its outcome like a client op.
func (r *chaosRun) trustCLI(n *harness.Node, op *checker.Op, args ...string) string {
	op.Op = int(r.opID.Add(1))
	op.Start = time.Now()
	octx, cancel := context.WithTimeout(context.Background(), chaosTrustOp)
	defer cancel()
	out, err := r.cl.CLI(octx, n.Dir, append([]string{"--json"}, args...)...)
	op.End = time.Now()
	switch {
	case err == nil:
		op.Outcome = checker.OK
	case octx.Err() != nil:
		op.Outcome, op.Error = checker.Unknown, "timed out after "+chaosTrustOp.String()
	default:
		op.Outcome, op.Error = checker.Unknown, err.Error()
		if m := errCodeRE.FindStringSubmatch(op.Error); m != nil {
			switch m[1] {
			case "agent_not_running", api.CodeBadRequest, api.CodeNotFound, api.CodeForbidden, api.CodeConflict, "usage":
				op.Outcome = checker.Failed
			}
		}
	}
	return out
}

// releaseOp sends `space withdraw|release SPACE KAZ` through the first of
// the actors whose agent answers (the others in turn when one is down),
// and logs every attempt.
func (r *chaosRun) releaseOp(kind string, actors []string) string {
	var notes []string
	for _, a := range actors {
		n := r.byName[a]
		op := checker.Op{Client: "trust", Node: a, Kind: kind, Bureau: chaosOther}
		r.trustCLI(n, &op, "space", kind, r.space, chaosOther)
		r.logOp(op)
		notes = append(notes, fmt.Sprintf("%s on %s: %s", kind, a, op.Outcome))
		if op.Outcome != checker.Failed || !strings.Contains(op.Error, "agent_not_running") {
			break
		}
	}
	return strings.Join(notes, "; ")
}

// revoke revokes the victim's device through the revoker's agent (the
// victim's bureau key signs; the agent fills in the cut-offs it holds),
// then stops the victim's agent for good: a lost laptop.
func (r *chaosRun) revoke(revoker, victim *harness.Node) string {
	key := r.cl.Bureau
	if r.bureau[victim.Name] == chaosOther {
		key = r.kazKey
	}
	op := checker.Op{Client: "trust", Node: revoker.Name, Kind: "revoke", Target: victim.Name}
	out := r.trustCLI(revoker, &op, "revoke", "--bureau-key", key, r.ids[victim.Name])
	if op.Outcome == checker.OK {
		op.Revoke = json.RawMessage(strings.TrimSpace(out))
	}
	// Stopped for good whatever the outcome: the laptop is lost.
	r.life.Lock()
	r.deadMu.Lock()
	r.dead[victim.Name] = true
	r.deadMu.Unlock()
	r.bytes.Add(r.nodeBytes(context.Background(), victim))
	victim.SignalWorker(syscall.SIGCONT) // a paused worker dies too
	err := r.kill(victim)
	r.life.Unlock()
	r.logOp(op)
	note := fmt.Sprintf("revoke %s through %s: %s", victim.Name, revoker.Name, op.Outcome)
	if op.Outcome == checker.OK {
		var res api.RevokeResult
		json.Unmarshal(op.Revoke, &res)
		note += fmt.Sprintf(", cut-off %d", res.Cutoffs[r.space])
	} else {
		note += " (" + op.Error + ")"
	}
	if err != nil {
		note += "; stop: " + err.Error()
	}
	return note
}

// carry takes a bundle by hand from one officer to another: `bundle want`
// on the receiver, `bundle export --want` on the sender, `bundle import`
// on the receiver; it logs one op with what the import reported.
func (r *chaosRun) carry(from, to *harness.Node) string {
	k := r.bundles.Add(1)
	want := filepath.Join(r.dir, fmt.Sprintf("bundle-%d.want", k))
	file := filepath.Join(r.dir, fmt.Sprintf("bundle-%d.fsb", k))
	op := checker.Op{Client: "bundle", Node: from.Name, Kind: "bundle", Target: to.Name}
	step := func(n *harness.Node, args ...string) (string, bool) {
		var s checker.Op
		out := r.trustCLI(n, &s, args...)
		if s.Outcome != checker.OK {
			op.Outcome, op.Error = s.Outcome, fmt.Sprintf("%s on %s: %s", args[1], n.Name, s.Error)
			return "", false
		}
		return out, true
	}
	op.Start = time.Now()
	if _, ok := step(to, "bundle", "want", "--out", want); ok {
		if _, ok := step(from, "bundle", "export", "--space", r.space, "--want", want, "--out", file); ok {
			if out, ok := step(to, "bundle", "import", file); ok {
				op.Outcome, op.Import = checker.OK, json.RawMessage(strings.TrimSpace(out))
			}
		}
	}
	// A failed want or export wrote nothing; a failed import stores all or
	// nothing, but its outcome is the step's.
	op.Op, op.End = int(r.opID.Add(1)), time.Now()
	r.logOp(op)
	if op.Outcome != checker.OK {
		return fmt.Sprintf("bundle %s -> %s: %s (%s)", from.Name, to.Name, op.Outcome, op.Error)
	}
	var imp api.BundleImportResult
	json.Unmarshal(op.Import, &imp)
	return fmt.Sprintf("bundle %s -> %s: %d envelopes, %d added, %d held, %d skipped", from.Name, to.Name, imp.Envelopes, imp.Added, imp.AlreadyHeld, imp.Skipped)
}

// TestChaosTrustSchedule: the trust events come from the seed alone,
// bounded; withdrawals and releases alternate, starting with a withdrawal;
// at most one revocation, never of o1, through another officer; the actors
// of releases and withdrawals are the owning bureau's officers, never the
// revoked one.
func TestChaosTrustSchedule(t *testing.T) {
	names := []string{"relay", "o1", "o2", "o3", "o4"}
	bureau := map[string]string{"relay": chaosBureau, "o1": chaosBureau, "o2": chaosOther, "o3": chaosBureau, "o4": chaosOther}
	kinds, ends := map[string]int{}, map[string]int{}
	for seed := int64(1); seed <= 100; seed++ {
		d := 30 * time.Second
		if seed > 50 {
			d = 2 * time.Minute
		}
		a, b := trustSchedule(seed, names, "relay", bureau, d), trustSchedule(seed, names, "relay", bureau, d)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("seed %d: two trust schedules differ", seed)
		}
		if len(a) == 0 || len(a) > max(chaosMaxTrust, int(d/(10*time.Second))) {
			t.Fatalf("seed %d: %d trust events", seed, len(a))
		}
		released, revoked := true, ""
		var prev time.Duration
		for _, f := range a {
			if f.Track != "trust" || f.At < prev || f.At+f.For > d {
				t.Fatalf("seed %d: %s", seed, f)
			}
			prev = f.At + f.For
			kinds[f.Kind]++
			switch f.Kind {
			case "revoke":
				if revoked != "" || f.Other[0] == "o1" || f.Nodes[0] == f.Other[0] || f.Nodes[0] == "relay" {
					t.Fatalf("seed %d: revocation %s", seed, f)
				}
				revoked = f.Other[0]
			case "withdraw", "release":
				if (f.Kind == "withdraw") != released {
					t.Fatalf("seed %d: %s while KAZ released=%v", seed, f, released)
				}
				released = !released
				for _, n := range f.Nodes {
					if bureau[n] != chaosBureau || n == revoked || n == "relay" {
						t.Fatalf("seed %d: %s sent by %s", seed, f.Kind, n)
					}
				}
			default:
				t.Fatalf("seed %d: trust event %s", seed, f)
			}
		}
		ends[fmt.Sprint(d, " released=", released)]++
	}
	if len(ends) != 4 {
		t.Fatalf("KAZ's final state does not vary with the seed at both lengths: %v", ends)
	}
	for _, k := range []string{"withdraw", "release", "revoke"} {
		if kinds[k] == 0 {
			t.Fatalf("50 seeds drew no %s", k)
		}
	}
}

// Insider phase (issue 12): an enrolled officer of an entitled bureau is a
// compromised laptop. Through the chaos build's insider hook
// (FIELDSYNC_CHAOS_INSIDER_FILE, agent/chaos_insider.go) it forges validly
// signed envelopes, chained as the next of its own log, and ingests them
// itself; its peers get them by normal sync.
const (
	chaosInsiderSeqs   = 3        // the victim's future seqs the forged changes name, and its writes
	chaosInsiderDots   = 100_000  // dots the second forged change names
	chaosInsiderSpaces = 300      // key shares for random space IDs
	chaosInsiderCtx    = 64 << 10 // bound on a space context's growth over the phase
	chaosInsiderRecord = "i0"     // the record the phase writes and forges on
)

// insiderCmd and insiderRes mirror agent.InsiderCommand and
// agent.InsiderResult, which exist only in the fieldsync_chaos build.
type insiderCmd struct {
	ID     string `json:"id"`
	Op     string `json:"op"`
	Space  string `json:"space"`
	Victim string `json:"victim,omitempty"`
	Record string `json:"record,omitempty"`
	Field  string `json:"field,omitempty"`
	Seqs   int    `json:"seqs,omitempty"`
	Dots   int    `json:"dots,omitempty"`
	Spaces int    `json:"spaces,omitempty"`
	Seed   uint64 `json:"seed,omitempty"`
	Bundle string `json:"bundle,omitempty"`
}

type insiderRes struct {
	ID           string        `json:"id"`
	Op           string        `json:"op"`
	Error        string        `json:"error,omitempty"`
	Envelopes    []insiderEnv  `json:"envelopes,omitempty"`
	VictimFrom   uint64        `json:"victim_from,omitempty"`
	VictimTo     uint64        `json:"victim_to,omitempty"`
	Dots         int           `json:"dots,omitempty"`
	Forged       int           `json:"forged,omitempty"`
	Held         int           `json:"held,omitempty"`
	Refused      int           `json:"refused,omitempty"`
	Bundled      int           `json:"bundled,omitempty"`
	ContextBytes int           `json:"context_bytes"`
	SpacesHeld   int           `json:"spaces_held"`
	OrphanSpaces int           `json:"orphan_spaces"`
	Took         time.Duration `json:"-"`
}

type insiderEnv struct {
	What   string `json:"what"`
	Space  string `json:"space"`
	Seq    uint64 `json:"seq"`
	Bytes  int    `json:"bytes"`
	Added  bool   `json:"added"`
	Reject string `json:"reject,omitempty"`
	Error  string `json:"error,omitempty"`
}

// insiderReport is the insider phase's account, in the report.
type insiderReport struct {
	Skipped string `json:"skipped,omitempty"`
	Insider string `json:"insider,omitempty"`
	Victim  string `json:"victim,omitempty"`
	// The forged envelopes and what the insider's own ingest made of them.
	Forged []insiderEnv `json:"forged,omitempty"`
	// Future dots: the victim's seqs the forged changes named, the dots
	// they named, the victim's writes (dots) and how many of them were
	// named.
	VictimSeqsNamed [2]uint64 `json:"victim_seqs_named"`
	DotsNamed       int       `json:"dots_named"`
	VictimWrites    []string  `json:"victim_writes,omitempty"`
	VictimNamed     int       `json:"victim_writes_named"`
	// The insider's honest write after its undecodable changes (dot).
	HonestWrite string `json:"honest_write,omitempty"`
	// Key shares for random space IDs: forged, held in memory and refused
	// by the insider's own ingest; imported as a bundle on the others.
	KeyShares  int            `json:"key_shares"`
	HeldHere   int            `json:"held_in_memory"`
	RefusedHer int            `json:"refused"`
	Imports    map[string]int `json:"imports_skipped,omitempty"` // node -> envelopes the import skipped
	// Per node: the space context's size before and after, the growth of
	// the rejection counters, the spaces listed at the end.
	ContextBytes map[string][2]int         `json:"context_bytes,omitempty"`
	Rejected     map[string]map[string]int `json:"rejected_growth,omitempty"`
	Spaces       map[string]int            `json:"spaces_listed,omitempty"`
	Orphans      map[string][2]int         `json:"orphan_spaces,omitempty"` // spaces held in memory for want of a routing record: after the phase, after a restart (-1: not restarted)
	Restarted    []string                  `json:"restarted,omitempty"`
	// The victim's rejection counters after its restart (they start from
	// zero): what it decided about the forged changes at its start.
	VictimRestartRejected map[string]int `json:"victim_rejected_after_restart,omitempty"`
	// The bytes of `history --json` of the record on the first officer.
	HistoryBytes int      `json:"history_bytes"`
	ConvergedIn  string   `json:"converged_in,omitempty"`
	Violations   []string `json:"violations,omitempty"`
}

// insiderFile is the node's insider command file.
func (r *chaosRun) insiderFile(n *harness.Node) string {
	return filepath.Join(r.dir, "insider."+n.Name)
}

// insider sends one command to the node's insider hook and waits for its
// result (bounded by the phase limit).
func (r *chaosRun) insider(ctx context.Context, n *harness.Node, cmd insiderCmd) (insiderRes, error) {
	cmd.ID = fmt.Sprintf("c%d", r.insiderSeq.Add(1))
	cmd.Space = r.space
	b, _ := json.Marshal(cmd)
	start := time.Now()
	if err := writeAtomic(r.insiderFile(n), string(b)); err != nil {
		return insiderRes{}, err
	}
	out := r.insiderFile(n) + "." + cmd.ID + ".json"
	var res insiderRes
	if _, err := harness.WaitUntil(ctx, chaosPhaseLimit, fmt.Sprintf("%s to execute insider command %s (%s)", n.Name, cmd.ID, cmd.Op), func() (bool, error) {
		b, err := os.ReadFile(out)
		if err != nil {
			return false, nil
		}
		return true, json.Unmarshal(b, &res)
	}); err != nil {
		return res, err
	}
	res.Took = time.Since(start)
	if res.Error != "" {
		return res, fmt.Errorf("%s: insider command %s: %s", n.Name, cmd.Op, res.Error)
	}
	return res, nil
}

// insiderWrite is one logged put of the insider phase (client "i"), tried
// again while it fails (a store failing one commit in K).
func (r *chaosRun) insiderWrite(n *harness.Node, field string) (checker.Op, error) {
	var op checker.Op
	for try := 0; try < 5; try++ {
		id := r.opID.Load() + 1
		op = checker.Op{Client: "i", Node: n.Name, Kind: "put", Record: chaosInsiderRecord, Field: field, Value: fmt.Sprintf("i-op%d", id)}
		r.runOp(n, &op, opKinds[0], nil, []string{"record", "put", r.space, op.Record, op.Field + "=" + op.Value})
		r.logOp(op)
		if op.Outcome == checker.OK {
			return op, nil
		}
		if op.Outcome == checker.Unknown {
			break
		}
	}
	return op, fmt.Errorf("write on %s: %s %s (no fault is running)", n.Name, op.Outcome, op.Error)
}

// dotSeq is the seq of a dot AUTHOR:SEQ.OP.
func dotSeq(dot string) (uint64, bool) {
	_, s, _ := strings.Cut(dot, ":")
	s, _, _ = strings.Cut(s, ".")
	var seq uint64
	_, err := fmt.Sscan(s, &seq)
	return seq, err == nil && seq > 0
}

// spaceIDs lists the spaces `space list` shows on the node.
func (r *chaosRun) spaceIDs(ctx context.Context, n *harness.Node) ([]string, error) {
	var rows []api.Space
	if err := r.cl.CLIJSON(ctx, n.Dir, &rows, "space", "list"); err != nil {
		return nil, fmt.Errorf("%s: space list: %v", n.Name, err)
	}
	var ids []string
	for _, s := range rows {
		ids = append(ids, s.ID)
	}
	return sorted(ids), nil
}

// insiderPhase runs, after the hostile relay's phases, one entitled officer
// as a compromised laptop (docs/e2e.md, "Insider phase"): it forges (1) a
// change naming the victim's future dots with a dependency that cannot
// match what the victim writes there, (2) one naming 100,000 such dots, (3)
// a change whose body does not decode and one of body version 99, and (4)
// key shares for 300 random space IDs, carried to the others in a bundle.
// The victim's writes and the insider's next honest write must be visible
// on every officer, every replica must hold the same envelopes, no space
// context may grow, and no replica may list a space more — also after a
// restart of the victim and the insider.
func (r *chaosRun) insiderPhase(ctx context.Context, seed int64) (*insiderReport, error) {
	rep := &insiderReport{ContextBytes: map[string][2]int{}, Rejected: map[string]map[string]int{}, Spaces: map[string]int{}, Imports: map[string]int{}, Orphans: map[string][2]int{}}
	t := r.t
	officers := r.judged[1:]
	violation := func(format string, args ...any) {
		v := fmt.Sprintf(format, args...)
		rep.Violations = append(rep.Violations, v)
		t.Errorf("chaos: insider phase (seed %d): %s", seed, v)
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x1a51de))
	// Officers whose store does not fail commits, if two remain.
	var cands []*harness.Node
	for _, o := range officers {
		if !slices.ContainsFunc(o.Env, func(e string) bool { return strings.HasPrefix(e, "FIELDSYNC_CHAOS_FAIL_COMMIT=") }) {
			cands = append(cands, o)
		}
	}
	if len(cands) < 2 {
		cands = officers
	}
	perm := rng.Perm(len(cands))
	evil, victim := cands[perm[0]], cands[perm[1]]
	rep.Insider, rep.Victim = evil.Name, victim.Name
	fv, fe := "v"+strings.TrimPrefix(victim.Name, "o"), "v"+strings.TrimPrefix(evil.Name, "o")

	// Before: each replica's context size, rejection counters and spaces.
	ctxBefore, rejBefore, spacesBefore := map[string]int{}, map[string]map[string]int{}, map[string][]string{}
	for _, n := range r.judged {
		p, err := r.insider(ctx, n, insiderCmd{Op: "probe"})
		if err != nil {
			return rep, err
		}
		ctxBefore[n.Name] = p.ContextBytes
		var st api.Status
		if err := r.cl.CLIJSON(ctx, n.Dir, &st, "status"); err != nil {
			return rep, err
		}
		rejBefore[n.Name] = st.Rejected
		if spacesBefore[n.Name], err = r.spaceIDs(ctx, n); err != nil {
			return rep, err
		}
	}
	start := time.Now()

	// (1) and (2): the victim's future dots, then its writes.
	fd, err := r.insider(ctx, evil, insiderCmd{Op: "future_dots", Victim: r.ids[victim.Name], Record: chaosInsiderRecord, Field: fv, Seqs: chaosInsiderSeqs, Dots: chaosInsiderDots})
	if err != nil {
		return rep, err
	}
	rep.Forged = append(rep.Forged, fd.Envelopes...)
	rep.VictimSeqsNamed, rep.DotsNamed = [2]uint64{fd.VictimFrom, fd.VictimTo}, fd.Dots
	var victimLast checker.Op
	for i := 0; i < chaosInsiderSeqs; i++ {
		op, err := r.insiderWrite(victim, fv)
		if err != nil {
			return rep, fmt.Errorf("insider phase: the victim's write %d: %v", i, err)
		}
		victimLast = op
		rep.VictimWrites = append(rep.VictimWrites, op.Dot)
		if s, ok := dotSeq(op.Dot); ok && s >= fd.VictimFrom && s <= fd.VictimTo {
			rep.VictimNamed++
		}
	}
	// (3): undecodable bodies, then the insider's own next honest write.
	ud, err := r.insider(ctx, evil, insiderCmd{Op: "undecodable", Record: chaosInsiderRecord, Field: fe, Seed: uint64(seed)})
	if err != nil {
		return rep, err
	}
	rep.Forged = append(rep.Forged, ud.Envelopes...)
	honest, err := r.insiderWrite(evil, fe)
	if err != nil {
		return rep, fmt.Errorf("insider phase: the insider's honest write: %v", err)
	}
	rep.HonestWrite = honest.Dot
	for _, e := range rep.Forged {
		if !e.Added || e.Reject != "" || e.Error != "" {
			violation("%s's own ingest of its forged %s change (seq %d): added %v, reject %q, error %q (it is signed and chained: it must be kept)", evil.Name, e.What, e.Seq, e.Added, e.Reject, e.Error)
		}
	}

	// (4): key shares for random space IDs, ingested by the insider and
	// imported on every other replica from a bundle it signed.
	bundle := filepath.Join(r.dir, "insider-keyshares.fsb")
	rs, err := r.insider(ctx, evil, insiderCmd{Op: "random_spaces", Victim: r.ids[victim.Name], Spaces: chaosInsiderSpaces, Seed: uint64(seed), Bundle: bundle})
	if err != nil {
		return rep, err
	}
	rep.KeyShares, rep.HeldHere, rep.RefusedHer = rs.Forged, rs.Held, rs.Refused
	if rs.Held+rs.Refused != rs.Forged || rs.Bundled != rs.Forged {
		violation("%s ingested %d key shares for random spaces: %d held in memory + %d refused, %d bundled (%v)", evil.Name, rs.Forged, rs.Held, rs.Refused, rs.Bundled, rs.Envelopes)
	}
	for _, n := range r.judged {
		if n == evil {
			continue
		}
		var imp api.BundleImportResult
		if err := r.cl.CLIJSON(ctx, n.Dir, &imp, "bundle", "import", bundle); err != nil {
			return rep, fmt.Errorf("insider phase: bundle import on %s: %v", n.Name, err)
		}
		rep.Imports[n.Name] = imp.Skipped
		if imp.Envelopes != imp.Added+imp.AlreadyHeld+imp.Skipped || imp.Added != 0 {
			violation("%s imported the key shares for %d random spaces: %d envelopes = %d added + %d held + %d skipped (none may be stored: no routing record)", n.Name, rs.Bundled, imp.Envelopes, imp.Added, imp.AlreadyHeld, imp.Skipped)
		}
	}

	// Every replica holds the same envelopes, every officer the same
	// state, in which the victim's last write and the insider's honest
	// write stand.
	shows := func(n *harness.Node) (string, error) {
		var rec api.Record
		if err := r.cl.CLIJSON(ctx, n.Dir, &rec, "record", "get", r.space, chaosInsiderRecord); err != nil {
			return "", err
		}
		var bad []string
		for _, f := range []struct{ name, want string }{{fv, victimLast.Value}, {fe, honest.Value}} {
			fld := rec.Fields[f.name]
			if len(fld.Siblings) != 1 || fld.Siblings[0].Value != f.want {
				var vals []string
				for _, s := range fld.Siblings {
					vals = append(vals, s.Value)
				}
				bad = append(bad, fmt.Sprintf("%s.%s = %q, want %q", chaosInsiderRecord, f.name, vals, f.want))
			}
		}
		for name, fld := range rec.Fields {
			for _, s := range fld.Siblings {
				if strings.HasPrefix(s.Value, "insider-") {
					bad = append(bad, fmt.Sprintf("%s.%s shows the forged value %q", chaosInsiderRecord, name, s.Value))
				}
			}
		}
		return strings.Join(bad, "; "), nil
	}
	var lastWrong string
	if _, err := harness.WaitUntil(ctx, chaosPhaseLimit, "every replica to hold the insider phase's envelopes and every officer to show the victim's and the insider's writes", func() (bool, error) {
		ds, err := r.digests(ctx, r.judged)
		if err != nil || !r.same(r.judged, ds) {
			lastWrong = "envelopes or state differ"
			return false, err
		}
		for _, o := range officers {
			wrong, err := shows(o)
			if err != nil {
				return false, err
			}
			if wrong != "" {
				lastWrong = o.Name + ": " + wrong
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		nodes := r.judged
		ds, _ := r.digests(ctx, nodes)
		var b strings.Builder
		for i, d := range ds {
			fmt.Fprintf(&b, "; %s: %d envelopes %.12s digest %.12s", nodes[i].Name, d.Count, d.Envelopes, d.Digest)
		}
		violation("%v (last: %s%s)", err, lastWrong, b.String())
	} else {
		rep.ConvergedIn = time.Since(start).Round(time.Millisecond).String()
	}

	// After: the contexts did not grow, the counters, no space more.
	check := func(n *harness.Node, when string) error {
		p, err := r.insider(ctx, n, insiderCmd{Op: "probe"})
		if err != nil {
			return err
		}
		o, ok := rep.Orphans[n.Name]
		if !ok {
			o = [2]int{p.OrphanSpaces, -1}
		} else {
			o[1] = p.OrphanSpaces
		}
		rep.Orphans[n.Name] = o
		ids, err := r.spaceIDs(ctx, n)
		if err != nil {
			return err
		}
		rep.Spaces[n.Name] = len(ids)
		if !slices.Equal(ids, spacesBefore[n.Name]) || p.SpacesHeld != len(spacesBefore[n.Name]) {
			violation("%s lists spaces %v %s (held %d), %v before the key shares for random spaces", n.Name, ids, when, p.SpacesHeld, spacesBefore[n.Name])
		}
		c := rep.ContextBytes[n.Name]
		c[0], c[1] = ctxBefore[n.Name], p.ContextBytes
		rep.ContextBytes[n.Name] = c
		if p.ContextBytes-ctxBefore[n.Name] > chaosInsiderCtx {
			violation("%s: the space context grew from %d to %d bytes %s", n.Name, ctxBefore[n.Name], p.ContextBytes, when)
		}
		return nil
	}
	for _, n := range r.judged {
		if err := check(n, "after the phase"); err != nil {
			return rep, err
		}
		var st api.Status
		if err := r.cl.CLIJSON(ctx, n.Dir, &st, "status"); err != nil {
			return rep, err
		}
		grew := map[string]int{}
		for k, v := range st.Rejected {
			if d := v - rejBefore[n.Name][k]; d != 0 {
				grew[k] = d
			}
		}
		rep.Rejected[n.Name] = grew
	}

	// A restart of the victim (which imported the key shares) and of the
	// insider (whose own ingest held them): still no space more.
	for _, n := range []*harness.Node{victim, evil} {
		r.bytes.Add(r.nodeBytes(ctx, n))
		if err := r.kill(n); err != nil {
			return rep, err
		}
		sctx, cancel := context.WithTimeout(ctx, chaosPhaseLimit)
		err := r.cl.Start(sctx, n, "", r.joinFor(n)...)
		cancel()
		if err != nil {
			return rep, fmt.Errorf("insider phase: restart %s: %v", n.Name, err)
		}
		rep.Restarted = append(rep.Restarted, n.Name)
		if err := check(n, "after a restart"); err != nil {
			return rep, err
		}
		if n == victim {
			var st api.Status
			if err := r.cl.CLIJSON(ctx, n.Dir, &st, "status"); err != nil {
				return rep, err
			}
			rep.VictimRestartRejected = st.Rejected
		}
	}

	// The audit trail: `history` must not present a forged change that
	// changed nothing (a no-op, or one waiting for an upgrade) as a write
	// that replaced the victim's, nor call a valid signature invalid.
	forged := map[uint64]insiderEnv{}
	for _, e := range rep.Forged {
		forged[e.Seq] = e
	}
	for i, o := range officers {
		raw, err := r.cliRaw(ctx, o, "history", r.space, chaosInsiderRecord)
		if err != nil {
			return rep, err
		}
		if i == 0 {
			rep.HistoryBytes = len(raw)
		}
		var hist []api.HistoryEntry
		if err := json.Unmarshal(raw, &hist); err != nil {
			return rep, fmt.Errorf("%s: history: %v", o.Name, err)
		}
		for _, e := range hist {
			f, ok := forged[e.Seq]
			if e.Author != r.ids[evil.Name] || !ok {
				continue
			}
			resolves := 0
			for _, op := range e.Ops {
				resolves += len(op.Resolves)
			}
			switch {
			case e.Signature != "valid":
				violation("%s: history of %s lists %s's forged %s change (seq %d, validly signed: every replica kept it) with signature %q (%s)", o.Name, chaosInsiderRecord, evil.Name, f.What, e.Seq, e.Signature, e.Error)
			case len(e.Ops) > 0:
				violation("%s: history of %s lists %s's forged %s change (seq %d), which changed nothing, as a valid write: %d op(s) replacing %d dot(s) (history is %d bytes)", o.Name, chaosInsiderRecord, evil.Name, f.What, e.Seq, len(e.Ops), resolves, len(raw))
			}
		}
	}
	return rep, nil
}

// insiderForgedSummary is "what seq bytes" of each forged envelope.
func insiderForgedSummary(envs []insiderEnv) string {
	var parts []string
	for _, e := range envs {
		parts = append(parts, fmt.Sprintf("%s seq %d, %d bytes", e.What, e.Seq, e.Bytes))
	}
	return strings.Join(parts, "; ")
}
