package sync_test

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	fsync "fieldsync/sync"
	"fieldsync/sync/synctest"
)

// TestScenarios runs sync/testdata/*.txt: one command a line —
//
//	option nohints            hints off (before nodes)
//	nodes N                   start N nodes (local profile, 300 ms rounds)
//	put I SPACE K             node I writes K envelopes to SPACE (a name)
//	partition 0,1 | 2,3       drop traffic between the groups
//	heal                      drop no traffic
//	converge [I,J,...]        wait (≤ 30 s) until those nodes (default all) hold the same set
//	diverged                  not all nodes hold the same set
//	count I N                 node I holds N envelopes
func TestScenarios(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scenarios")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScenario(t, f) })
	}
}

func runScenario(t *testing.T, path string) {
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	c := synctest.NewCluster(t)
	o := synctest.Options{SyncInterval: 300 * time.Millisecond}
	var nodes []*synctest.Node
	spaces := map[string]fsync.SpaceID{}
	idx := func(s string) int {
		i, err := strconv.Atoi(s)
		if err != nil || i < 0 || i >= len(nodes) {
			t.Fatalf("bad node %q", s)
		}
		return i
	}
	pick := func(list string) []*synctest.Node {
		var out []*synctest.Node
		for _, s := range strings.Split(list, ",") {
			out = append(out, nodes[idx(strings.TrimSpace(s))])
		}
		return out
	}
	sc := bufio.NewScanner(fh)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Fields(text)
		t.Logf("%d: %s", line, text)
		switch f[0] {
		case "option":
			if f[1] == "nohints" {
				o.DisableHints = true
			}
		case "nodes":
			n, _ := strconv.Atoi(f[1])
			nodes = c.Start(n, o)
			if !synctest.WaitMembers(20*time.Second, nodes...) {
				t.Fatalf("line %d: no membership", line)
			}
		case "put":
			sp, ok := spaces[f[2]]
			if !ok {
				sp = synctest.NewSpace()
				spaces[f[2]] = sp
			}
			k, _ := strconv.Atoi(f[3])
			n := nodes[idx(f[1])]
			for i := 0; i < k; i++ {
				n.Write(sp, []byte(text+" #"+strconv.Itoa(i)))
			}
		case "partition":
			groups := strings.Split(strings.Join(f[1:], ""), "|")
			var gs [][]*synctest.Node
			for _, g := range groups {
				gs = append(gs, pick(g))
			}
			c.Faults.Partition(gs...)
		case "heal":
			c.Faults.Heal()
		case "converge":
			set := nodes
			if len(f) > 1 {
				set = pick(f[1])
			}
			synctest.WaitConverged(t, 30*time.Second, set...)
		case "diverged":
			if synctest.Converged(nodes...) {
				t.Fatalf("line %d: all nodes converged", line)
			}
		case "count":
			want, _ := strconv.Atoi(f[2])
			if got := nodes[idx(f[1])].Store.Count(); got != want {
				t.Fatalf("line %d: node %s holds %d, want %d", line, f[1], got, want)
			}
		default:
			t.Fatalf("line %d: unknown command %q", line, f[0])
		}
	}
}
