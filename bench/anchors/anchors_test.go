package anchors

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"fieldsync/bench/w1"
)

// The workload file carries exactly the generator's data: w1.mjs indexes
// picks as [record, field, value] and conflicts as [record, field, a, b].
func TestWriteWorkloadMatchesGenerator(t *testing.T) {
	size := w1.Size{Name: "T", Records: 200, Updates: 400}
	w := w1.Generate(size)
	path := filepath.Join(t.TempDir(), "w.json")
	if err := writeWorkload(path, w); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Fields    []string
		Initial   [][8]string
		A, B      [][3]any
		Conflicts [][4]any
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Fields) != 8 || got.Fields[7] != w1.Fields[7] || len(got.Initial) != size.Records || got.Initial[17] != w.Initial[17] {
		t.Fatalf("fields or initial values differ")
	}
	if len(got.A) != len(w.A) || len(got.B) != len(w.B) || len(got.Conflicts) != len(w.Conflicts) || len(w.Conflicts) == 0 {
		t.Fatalf("picks or conflicts differ: %d %d %d", len(got.A), len(got.B), len(got.Conflicts))
	}
	p, q := got.B[123], w.B[123]
	if int(p[0].(float64)) != q.Record || int(p[1].(float64)) != q.Field || p[2].(string) != q.Value {
		t.Fatalf("B's pick 123 is %v, want %+v", p, q)
	}
	c, e := got.Conflicts[0], w.Conflicts[0]
	if int(c[0].(float64)) != e.Record || c[2].(string) != e.ValueA || c[3].(string) != e.ValueB {
		t.Fatalf("conflict 0 is %v, want %+v", c, e)
	}
}

func TestMedianPerFigure(t *testing.T) {
	m := median([]Figures{
		{UpdatesPerS: 3, DeltaSyncMS: 30, Converged: true},
		{UpdatesPerS: 1, DeltaSyncMS: 10, Converged: true},
		{UpdatesPerS: 2, DeltaSyncMS: 50, Converged: false},
	})
	if m.UpdatesPerS != 2 || m.DeltaSyncMS != 30 || m.Converged {
		t.Fatalf("median %+v", m)
	}
}
