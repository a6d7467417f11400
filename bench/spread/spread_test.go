package spread

import (
	"context"
	"io"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestSpreadSmall runs the simulation at a size a test can afford and checks
// what it reports: every engine got every write, through fan-out (the writer
// served fewer sessions than there are other engines). Timing is reported,
// never asserted.
func TestSpreadSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 20 engines")
	}
	n := 20
	if s := os.Getenv("FIELDSYNC_SPREAD_TEST_AGENTS"); s != "" { // profiling larger meshes by hand
		n, _ = strconv.Atoi(s)
	}
	var out io.Writer = io.Discard
	if testing.Verbose() {
		out = os.Stdout
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	res, err := Run(ctx, Options{Agents: n, Writes: 2, Mode: "fanout", Limit: 30 * time.Second, Form: time.Minute}, out, false)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Modes[0]
	t.Logf("%d engines: median %.0f ms, max %.0f ms, writer sessions %.1f, sessions per node max %.0f", n, m.MedianMS, m.MaxMS, m.WriterSess, m.SessMax)
	if m.Reached != 1 {
		t.Errorf("reached %.3f of the deliveries, want all", m.Reached)
	}
	if m.WriterSess >= float64(n-1) {
		t.Errorf("the writer served %.1f sessions per write: no fan-out", m.WriterSess)
	}
}
