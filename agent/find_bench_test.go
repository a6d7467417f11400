package agent

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
	"fieldsync/internal/find"
	fsync "fieldsync/sync"
)

// findBenchNames reads the spellings of the find test set (any script).
func findBenchNames(tb testing.TB) []string {
	tb.Helper()
	f, err := os.Open("../internal/find/testdata/names.tsv")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		if p := strings.Split(line, "\t"); len(p) == 3 {
			out = append(out, p[2])
		}
	}
	return out
}

// findBulkNames writes n records of two fields (a name of two spellings
// from the test set, a place), one change each, 200 changes per commit.
func findBulkNames(a *Agent, space crypto.SpaceID, names []string, from, n int, rng *rand.Rand) error {
	places := []string{"Muscat", "مسقط", "Алматы", "Almaty", "Marseille", "Душанбе", "صلالة", "Lyon"}
	return bulkChanges(a, space, n, func(done int) []crdt.Op {
		rid := crdt.RecordID(fmt.Sprintf("p%07d", from+done))
		name := names[rng.IntN(len(names))] + " " + names[rng.IntN(len(names))]
		return []crdt.Op{crdt.NewPut(rid, "name", []byte(name)), crdt.NewPut(rid, "place", []byte(places[rng.IntN(len(places))]))}
	})
}

// findBenchN reads a size from the environment (default def).
func findBenchN(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// waitIndexed waits for the agent's index to be built and its queue empty,
// returning how long that took from start.
func waitIndexed(tb testing.TB, a *Agent, start time.Time) time.Duration {
	tb.Helper()
	for {
		r, err := a.Find(api.FindRequest{Query: "x"})
		if err != nil {
			tb.Fatal(err)
		}
		if !r.Building {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkFindAgent measures the agent's search index (docs/find.md, "The
// agent's index"): apply throughput of received changes with the index on
// and off, the start-up build at 10,000 and FIND_BENCH_RECORDS (100,000)
// records, the index's heap, and query latency through Agent.Find. It
// prints a table and one JSON line. Run:
//
//	go test ./agent -run X -bench FindAgent -benchtime 1x
//
// FIND_BENCH_APPLY sets the changes applied per run (default 20,000).
func BenchmarkFindAgent(b *testing.B) {
	names := findBenchNames(b)
	nApply := findBenchN("FIND_BENCH_APPLY", 20000)
	nRecords := findBenchN("FIND_BENCH_RECORDS", 100000)
	// FIND_BENCH_FLUSH_AT moves the queue length at which the worker
	// indexes (findFlushAt): a large one shows the apply path's own cost,
	// with the indexing left to the first search after the burst.
	defer func(v int) { findFlushAt = v }(findFlushAt)
	findFlushAt = findBenchN("FIND_BENCH_FLUSH_AT", findFlushAt)
	rng := rand.New(rand.NewPCG(17, 1))
	omn := newTestBureau(b, "OMN")
	res := map[string]float64{}

	// Apply: A writes nApply records; B (index on) and C (off) receive them
	// through the sync adapter's batch path, 256 envelopes a batch.
	cfgA := newTestDevice(b, omn, "Amina", crypto.RoleOfficer)
	a := openTestAgent(b, cfgA)
	recv := map[bool]*Agent{}
	for _, on := range []bool{true, false} {
		cfg := newTestDevice(b, omn, "Recv", crypto.RoleOfficer)
		cfg.DisableFind = !on
		recv[on] = openTestAgent(b, cfg)
		transfer(b, recv[on], a)
		transfer(b, a, recv[on]) // certificates only: A holds no space yet
	}
	sp, err := a.CreateSpace("bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := a.ShareKeys(); err != nil {
		b.Fatal(err)
	}
	space := mustSpaceIDTB(b, sp.ID)
	if err := findBulkNames(a, space, names, 0, nApply, rng); err != nil {
		b.Fatal(err)
	}
	var envs []fsync.Envelope
	if err := a.Envelopes(space, func(env []byte) error {
		h, err := crypto.ParseHeader(env)
		if err != nil {
			return err
		}
		envs = append(envs, fsync.Envelope{Space: fsync.SpaceID(h.Space), Author: fsync.PeerID(h.Author), Seq: h.Seq, Data: slices.Clone(env)})
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	slices.SortFunc(envs, func(x, y fsync.Envelope) int { return int(x.Seq) - int(y.Seq) })
	for _, on := range []bool{false, true} { // off first: the page cache favours the second run, if anything
		x := recv[on]
		ingest := func(envs []fsync.Envelope) {
			for lo := 0; lo < len(envs); lo += 256 {
				for _, r := range (syncAdapter{x}).IngestBatch(fsync.PeerID(a.dev), envs[lo:min(lo+256, len(envs))]) {
					if r.Err != nil {
						b.Fatal(r.Err)
					}
				}
			}
		}
		// The space's routing record, key share and first changes come
		// first, untimed, so that the index holds the space (built) when
		// the timed changes arrive: the apply path's steady state.
		const warm = 16
		ingest(envs[:warm])
		if on {
			waitIndexed(b, x, time.Now())
		}
		start := time.Now()
		ingest(envs[warm:])
		if err := x.reloadIfFailed(); err != nil {
			b.Fatal(err)
		}
		x.com.Barrier()
		d := time.Since(start)
		key := map[bool]string{true: "on", false: "off"}[on]
		res["apply_per_s_"+key] = float64(len(envs)-warm) / d.Seconds()
		if on {
			res["apply_indexed_s"] = waitIndexed(b, x, start).Seconds()
			if got := mustFind(b, x, api.FindRequest{Query: "x"}).Searched; got != nApply {
				b.Fatalf("index on: %d records searched, want %d", got, nApply)
			}
		}
	}
	res["apply_slowdown_pct"] = 100 * (res["apply_per_s_off"]/res["apply_per_s_on"] - 1)

	// Start-up build and heap: D holds 10,000 records, then nRecords.
	cfgD := newTestDevice(b, omn, "Dana", crypto.RoleOfficer)
	d := openTestAgent(b, cfgD)
	spD, err := d.CreateSpace("big", nil)
	if err != nil {
		b.Fatal(err)
	}
	spaceD := mustSpaceIDTB(b, spD.ID)
	have := 0
	for _, n := range []int{10000, nRecords} {
		if n > have {
			if err := findBulkNames(d, spaceD, names, have, n-have, rng); err != nil {
				b.Fatal(err)
			}
			have = n
		}
		d.Close()
		start := time.Now()
		d = openTestAgent(b, cfgD)
		build := waitIndexed(b, d, start)
		res[fmt.Sprintf("open_and_build_s_%d", n)] = build.Seconds()
	}
	runtime.GC()
	var m1, m2 runtime.MemStats
	runtime.ReadMemStats(&m1)
	st := d.find.idx.Stats()
	d.find.mu.Lock() // drop the index, then measure the heap without it
	d.find.idx, d.find.spaces = find.NewIndex(), map[crypto.SpaceID]*findSpace{}
	d.find.mu.Unlock()
	runtime.GC()
	runtime.ReadMemStats(&m2)
	res["index_heap_mb"] = float64(int64(m1.HeapAlloc)-int64(m2.HeapAlloc)) / (1 << 20)
	res["index_terms"], res["index_postings"] = float64(st.Terms), float64(st.Postings)
	d.findReset() // a fresh index, built again in the background
	waitIndexed(b, d, time.Now())

	// Queries through Agent.Find (the API's method, without the socket):
	// spellings from the test set, one in four of two words.
	var lat []time.Duration
	for i := 0; i < 2000; i++ {
		q := names[rng.IntN(len(names))]
		if i%4 == 3 {
			q += " " + names[rng.IntN(len(names))]
		}
		start := time.Now()
		if _, err := d.Find(api.FindRequest{Query: q}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	res["query_p50_ms"] = float64(lat[len(lat)/2].Microseconds()) / 1000
	res["query_p99_ms"] = float64(lat[len(lat)*99/100].Microseconds()) / 1000
	res["records"], res["applied"], res["flush_at"] = float64(nRecords), float64(nApply), float64(findFlushAt)

	fmt.Printf("find in the agent (%d records; apply: %d changes)\n", nRecords, nApply)
	fmt.Printf("%-34s %12s\n", "measure", "value")
	for _, k := range []string{"apply_per_s_off", "apply_per_s_on", "apply_slowdown_pct", "apply_indexed_s",
		"open_and_build_s_10000", fmt.Sprintf("open_and_build_s_%d", nRecords), "index_heap_mb", "index_terms", "index_postings",
		"query_p50_ms", "query_p99_ms"} {
		fmt.Printf("%-34s %12.2f\n", k, res[k])
	}
	j, _ := json.Marshal(res)
	fmt.Println(string(j))
}

func mustSpaceIDTB(tb testing.TB, s string) crypto.SpaceID {
	tb.Helper()
	id, err := crypto.ParseSpaceID(s)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}
