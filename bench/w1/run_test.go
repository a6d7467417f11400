package w1

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestRunCRDTSmall runs the whole W1 pipeline at a small size: it must
// converge and keep every generated conflict, pair by pair, and print the
// table and one JSON line with BENCH.md's keys.
func TestRunCRDTSmall(t *testing.T) {
	for _, compress := range []bool{false, true} {
		r, err := RunCRDTWith(Size{Name: "tiny", Records: 500, Updates: 1000}, Options{Compress: compress})
		if err != nil {
			t.Fatal(err)
		}
		if !r.Converged || !r.ConflictsMatch || r.Conflicts != r.ExpectedConflicts || r.Conflicts == 0 {
			t.Fatalf("compress=%v: %+v", compress, r)
		}
	}
	var out bytes.Buffer
	res, err := RunCRDT(Size{Name: "tiny", Records: 200, Updates: 300}, &out, true)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &m); err != nil {
		t.Fatalf("last line is not JSON: %v", err)
	}
	for _, k := range []string{"workload", "size", "layer", "updates_per_s", "init_sync_ms", "init_sync_bytes", "delta_sync_ms",
		"delta_bytes_ab", "delta_bytes_ba", "conflicts", "expected_conflicts", "converged", "state_bytes", "peak_rss_mb", "nproc", "go_version"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON line lacks %q", k)
		}
	}
	if m["layer"] != "crdt" || m["workload"] != "W1" || !res.Converged {
		t.Fatalf("%v", m)
	}
}
