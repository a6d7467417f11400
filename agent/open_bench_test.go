package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"fieldsync/crdt"
	"fieldsync/crypto"
)

// BenchmarkOpenMillion measures opening a store that holds many changes
// (FIELDSYNC_BENCH_CHANGES, default 1,000,000 over 100,000 records): the
// time New takes and the resident memory right after, in a fresh process.
// Building the store takes minutes; it runs only with -bench.
//
//	go test ./agent -run '^$' -bench OpenMillion -benchtime 3x -timeout 60m
func BenchmarkOpenMillion(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("FIELDSYNC_BENCH_CHANGES")); err == nil && v > 0 {
		n = v
	}
	omn := newTestBureau(b, "OMN")
	cfg := newTestDevice(b, omn, "Amina", crypto.RoleOfficer)
	a := openTestAgent(b, cfg)
	sp, err := a.CreateSpace("bulk", nil)
	if err != nil {
		b.Fatal(err)
	}
	id, _ := crypto.ParseSpaceID(sp.ID)
	t0 := time.Now()
	if err := bulkWrite(a, id, n, 100_000); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %d changes in %s", n, time.Since(t0).Round(time.Second))
	a.Close()
	b.ResetTimer()
	var openMS, rssMB float64
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "FIELDSYNC_TEST_OPEN_DIR="+cfg.Layout.Dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("open child: %v\n%s", err, out)
		}
		var r struct{ OpenMS, RSSMB float64 }
		if err := json.Unmarshal(out[strings.LastIndexByte(strings.TrimSpace(string(out)), '\n')+1:], &r); err != nil {
			b.Fatalf("child output %q: %v", out, err)
		}
		openMS, rssMB = max(openMS, r.OpenMS), max(rssMB, r.RSSMB)
	}
	b.ReportMetric(openMS, "open-ms(max)")
	b.ReportMetric(rssMB, "rss-MB(max)")
}

// openChild opens the store in FIELDSYNC_TEST_OPEN_DIR and prints how long
// that took and the resident memory after (called from TestMain).
func openChild(dir string) int {
	cfg := DefaultConfig()
	cfg.Layout = Layout{Dir: dir}
	cfg.Unlock = Unlock{Passphrase: testPassphrase}
	t0 := time.Now()
	a, err := New(cfg)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	d := time.Since(t0)
	rss := 0.0
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "VmRSS:") {
				var kb float64
				fmt.Sscan(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), &kb)
				rss = kb / 1024
			}
		}
	}
	a.Close()
	fmt.Printf("{\"OpenMS\":%.1f,\"RSSMB\":%.1f}\n", float64(d.Microseconds())/1000, rss)
	return 0
}

// bulkWrite writes n changes of one put each over `records` records.
func bulkWrite(a *Agent, space crypto.SpaceID, n, records int) error {
	val := []byte("أمينة market حلب clinic #0042 — a field value")
	return bulkChanges(a, space, n, func(done int) []crdt.Op {
		return []crdt.Op{crdt.NewPut(crdt.RecordID(fmt.Sprintf("r%06d", done%records)), "f", val)}
	})
}

// bulkChanges writes n changes, the ops of change i from ops(i) (all on one
// record), the way the write path does (sealed, signed, applied, indexed
// through recordEntries), but committing 200 changes per transaction: it
// builds a big store fast for benchmarks.
func bulkChanges(a *Agent, space crypto.SpaceID, n int, ops func(i int) []crdt.Op) error {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	sp := a.spaces[space]
	for done := 0; done < n; {
		var entries []kvEntry
		touched := map[crdt.RecordID]*crdt.Record{}
		for i := 0; i < 200 && done < n; i, done = i+1, done+1 {
			o := ops(done)
			rid := o[0].Record
			r, err := a.loadRecord(sp, rid)
			if err != nil {
				return err
			}
			if t, ok := touched[rid]; ok {
				r = t
			}
			if r == nil {
				r = crdt.NewRecord(rid)
			}
			ch := &crdt.Change{Author: crdt.ReplicaID(a.dev), Seq: sp.heads[a.dev].Seq + 1, HLC: a.clock.Now(a.physMillis()), Ops: o}
			body, err := ch.MarshalBinary()
			if err != nil {
				return err
			}
			got, err := crdt.ApplyChange(sp.ctx, func(crdt.RecordID) (*crdt.Record, error) { return r, nil }, ch)
			if err != nil {
				return err
			}
			for id, rec := range got {
				touched[id] = rec
			}
			env, err := a.appendEnvelope(sp, crypto.KindChange, body, sp.current, ch.HLC)
			if err != nil {
				return err
			}
			entries = append(entries, env...)
		}
		rec, err := a.recordEntries(sp, touched)
		if err != nil {
			return err
		}
		cb, _ := sp.ctx.MarshalBinary()
		entries = append(entries, rec...)
		entries = append(entries, a.db.entry(ctxKey(space), cb), a.hlcEntry())
		for _, err := range a.db.kv.CommitGroups([][]kvEntry{entries}) {
			if err != nil {
				return err
			}
		}
		a.cache.clear()
	}
	return nil
}
