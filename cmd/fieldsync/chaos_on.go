//go:build fieldsync_chaos

package main

// Test-only network fault injection, compiled in only with
// `-tags fieldsync_chaos` (the e2e chaos test builds such a binary). The
// shipped binary uses chaos_off.go and has no way to drop traffic.
//
// Environment read by the worker (each optional):
//
//	FIELDSYNC_CHAOS_FILE=PATH            network fault rules, below
//	FIELDSYNC_CHAOS_CLOCK_OFFSET=DUR     the agent's wall clock runs DUR ahead (negative: behind)
//	FIELDSYNC_CHAOS_FAIL_COMMIT=K[:SALT] one store commit in K fails, chosen by a hash of
//	                                     its number and SALT (a disk that fails writes)
//	FIELDSYNC_CHAOS_CLOCK_FILE=PATH      a further offset read from PATH (a Go duration, re-read
//	                                     at most every 100 ms): the clock jumps when the test
//	                                     rewrites it; missing or empty means 0
//	FIELDSYNC_CHAOS_TAMPER=SEED          this agent is a hostile relay: every envelope it sends
//	                                     goes through the tamper rules (chaos_tamper.go), each
//	                                     decision a hash of SEED, the envelope and its attempt
//	FIELDSYNC_CHAOS_TAMPER_FILE=PATH     the tamper rules (re-read at most every 100 ms)
//	FIELDSYNC_CHAOS_TAMPER_LOG=PATH      one JSON line appended per alteration, withheld
//	                                     envelope and replay: the test's account of what it did
//	FIELDSYNC_CHAOS_INSIDER_FILE=PATH    this agent can act as a compromised officer laptop:
//	                                     the worker polls PATH for one JSON command
//	                                     (agent.InsiderCommand), executes each command ID once
//	                                     and writes its agent.InsiderResult to PATH.ID.json
//
// The worker reads the file named by FIELDSYNC_CHAOS_FILE (if set) at most
// every 100 ms. Each line is one rule; blank lines and lines starting with #
// are ignored; node names are device IDs (memberlist node names):
//
//	drop FROM TO      traffic from FROM to TO is cut (one direction)
//	isolate ID        all traffic to and from ID is cut
//
// A missing or unreadable file means no faults. Unknown lines are ignored
// (a later harness may add kinds this binary does not know).
//
// Hooks for later work: WrapSync returns the connection unchanged; a rule
// such as `cut FROM TO BYTES` (cut a sync stream after N bytes) or a hostile
// relay would be added here, without touching the shipped code paths.
//
// A malformed offset or K stops the worker with an error: a chaos run that
// silently ran without its fault would pass for a healthy one.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	gosync "sync"
	"time"

	"fieldsync/agent"
	"fieldsync/internal/datadir"
	fsync "fieldsync/sync"
)

// Environment variables of the chaos build.
const (
	chaosEnv        = "FIELDSYNC_CHAOS_FILE"
	chaosClockEnv   = "FIELDSYNC_CHAOS_CLOCK_OFFSET"
	chaosFailEnv    = "FIELDSYNC_CHAOS_FAIL_COMMIT"
	chaosFailMarker = "chaos: injected commit failure"

	chaosClockFileEnv  = "FIELDSYNC_CHAOS_CLOCK_FILE"
	chaosTamperEnv     = "FIELDSYNC_CHAOS_TAMPER"
	chaosTamperFileEnv = "FIELDSYNC_CHAOS_TAMPER_FILE"
	chaosTamperLogEnv  = "FIELDSYNC_CHAOS_TAMPER_LOG"
	chaosInsiderEnv    = "FIELDSYNC_CHAOS_INSIDER_FILE"
)

// jumpClock is an offset read from a file that the test rewrites, so that
// an agent's clock jumps (forward or back) while it runs.
type jumpClock struct {
	path string

	mu   gosync.Mutex
	read time.Time
	off  time.Duration
}

func (j *jumpClock) offset() time.Duration {
	j.mu.Lock()
	defer j.mu.Unlock()
	now := time.Now()
	if !j.read.IsZero() && now.Sub(j.read) < chaosReread {
		return j.off
	}
	j.read = now
	b, err := chaosReadFile(j.path, 256)
	if err != nil {
		j.off = 0
		return 0
	}
	if v := strings.TrimSpace(string(b)); v == "" {
		j.off = 0
	} else if d, err := time.ParseDuration(v); err == nil {
		j.off = d
	} // a half-written or malformed file keeps the last offset
	return j.off
}

// chaosConfig fills the worker's test-only faults and hooks from the
// environment.
func chaosConfig(cfg *agent.Config) {
	if f := chaosFaults(); f != nil {
		cfg.Faults = f
	}
	if v := os.Getenv(chaosClockEnv); v != "" {
		off, err := time.ParseDuration(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "fieldsync: %s=%q: %v\n", chaosClockEnv, v, err)
			os.Exit(1)
		}
		cfg.Now = func() time.Time { return time.Now().Add(off) }
	}
	if path := os.Getenv(chaosClockFileEnv); path != "" {
		base := cfg.Now
		if base == nil {
			base = time.Now
		}
		jc := &jumpClock{path: path}
		cfg.Now = func() time.Time { return base().Add(jc.offset()) }
	}
	if v := os.Getenv(chaosTamperEnv); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "fieldsync: %s=%q: want a seed, a non-negative integer\n", chaosTamperEnv, v)
			os.Exit(1)
		}
		t := newTamperer(seed, os.Getenv(chaosTamperFileEnv), os.Getenv(chaosTamperLogEnv))
		cfg.Tamper = t.round
	}
	if path := os.Getenv(chaosInsiderEnv); path != "" {
		// The insider hook needs the open agent: run it through the
		// chaos build's RunWorker, which starts the poller on it.
		runWorker = func(ctx context.Context, cfg agent.Config) error {
			return agent.RunWorkerChaos(ctx, cfg, func(ctx context.Context, a *agent.Agent) { insiderLoop(ctx, a, path) })
		}
	}
	if v := os.Getenv(chaosFailEnv); v != "" {
		ks, ss, _ := strings.Cut(v, ":")
		k, err := strconv.ParseUint(ks, 10, 64)
		salt, err2 := uint64(0), error(nil)
		if ss != "" {
			salt, err2 = strconv.ParseUint(ss, 10, 64)
		}
		if err != nil || err2 != nil || k == 0 {
			fmt.Fprintf(os.Stderr, "fieldsync: %s=%q: want K or K:SALT, positive integers\n", chaosFailEnv, v)
			os.Exit(1)
		}
		cfg.FailCommit = func(n uint64) error {
			// Pseudo-random, not every Kth: periodic commits (peer
			// saves) would otherwise take every failure.
			if splitmix(n+salt)%k == 0 {
				return fmt.Errorf("%s (commit %d)", chaosFailMarker, n)
			}
			return nil
		}
	}
}

// chaosReread is how often the rules file is read again at most.
const chaosReread = 100 * time.Millisecond

// chaosMaxFile bounds the rules file read.
const chaosMaxFile = 1 << 20

// splitmix is SplitMix64's finalizer: a fixed, well-mixed hash.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func chaosFaults() fsync.Faults {
	path := os.Getenv(chaosEnv)
	if path == "" {
		return nil
	}
	return &fileFaults{path: path}
}

type pair struct{ from, to string }

// fileFaults implements sync.Faults from a rules file; safe for concurrent use.
type fileFaults struct {
	path string

	mu       gosync.Mutex
	read     time.Time
	raw      []byte
	drops    map[pair]bool
	isolated map[string]bool
}

func (f *fileFaults) refresh() {
	now := time.Now()
	if !f.read.IsZero() && now.Sub(f.read) < chaosReread {
		return
	}
	f.read = now
	b, err := chaosReadFile(f.path, chaosMaxFile)
	if err != nil {
		b = nil // no file: no faults
	}
	if f.drops != nil && bytes.Equal(b, f.raw) {
		return
	}
	f.raw = b
	f.drops, f.isolated = map[pair]bool{}, map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		w := strings.Fields(line)
		if len(w) == 0 || strings.HasPrefix(w[0], "#") {
			continue
		}
		switch {
		case w[0] == "drop" && len(w) == 3:
			f.drops[pair{w[1], w[2]}] = true
		case w[0] == "isolate" && len(w) == 2:
			f.isolated[w[1]] = true
		}
	}
}

func chaosReadFile(path string, max int64) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return io.ReadAll(io.LimitReader(fh, max))
}

// Drop implements sync.Faults.
func (f *fileFaults) Drop(from, to string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refresh()
	return f.isolated[from] || f.isolated[to] || f.drops[pair{from, to}]
}

// WrapSync implements sync.Faults: no stream faults yet.
func (f *fileFaults) WrapSync(from, to string, c net.Conn) net.Conn { return c }

// insiderID is what a command ID may be: it names the result file.
var insiderID = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// insiderLoop polls the insider command file (at most every 100 ms) and
// executes each new command once: a command whose result file exists was
// executed before (by this worker or before a restart) and is not again.
// A missing, half-written or malformed file is ignored until it changes;
// the test writes it atomically.
func insiderLoop(ctx context.Context, a *agent.Agent, path string) {
	last := ""
	tick := time.NewTicker(chaosReread)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		b, err := chaosReadFile(path, chaosMaxFile)
		if err != nil {
			continue
		}
		var cmd agent.InsiderCommand
		if json.Unmarshal(b, &cmd) != nil || cmd.ID == last || !insiderID.MatchString(cmd.ID) {
			continue
		}
		last = cmd.ID
		out := path + "." + cmd.ID + ".json"
		if _, err := os.Stat(out); err == nil {
			continue
		}
		res, _ := json.Marshal(a.ChaosInsider(ctx, cmd))
		datadir.WriteFile(out, res, 0o600)
	}
}
