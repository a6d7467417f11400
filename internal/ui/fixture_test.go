package ui_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/internal/harness"
)

// The tests run real agents (internal/harness, the fieldsync binary built
// once) and, for the browser tests, a real headless Chromium.

var (
	binDir  string // holds the fieldsync binary
	fixOnce sync.Once
	fix     *fixture
	fixErr  error
)

func TestMain(m *testing.M) {
	code := func() int {
		defer func() {
			if fix != nil {
				fix.cl.StopAll()
			}
			if binDir != "" {
				os.RemoveAll(binDir)
			}
		}()
		return m.Run()
	}()
	os.Exit(code)
}

// Records of the fixture's space.
const (
	recConflict = "p1"  // village written concurrently on a and b
	recRTL      = "rtl" // an Arabic and a Latin value
	recXSS      = "xss" // a value that is HTML
	xssValue    = `<img src=x onerror="window.__pwned=1">` + "<script>window.__pwned=2</script>"
	arabicValue = "أمينة الحلبي من حلب"
	latinValue  = "Amina Halabi from Aleppo"
	officerA    = "أمينة الحلبي"
	officerB    = "Boris Vetrov"
)

// fixture is two officers' devices of bureau OMN, a and b, that never share
// a network: a space of a's, carried to b by bundle, with a field written on
// both while apart and b's change carried back, so a shows a conflict made
// by two devices.
type fixture struct {
	cl    *harness.Cluster
	a, b  *harness.Node
	space api.Space
}

// getFixture sets the fixture up once for the package (stopped by TestMain).
func getFixture(t *testing.T) *fixture {
	t.Helper()
	if testing.Short() {
		t.Skip("runs agent processes")
	}
	fixOnce.Do(func() { fix, fixErr = newFixture() })
	if fixErr != nil {
		t.Fatalf("fixture: %v", fixErr)
	}
	return fix
}

func newFixture() (*fixture, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var err error
	binDir, err = os.MkdirTemp("", "fieldsync-ui-test-")
	if err != nil {
		return nil, err
	}
	exe := filepath.Join(binDir, "fieldsync")
	if out, err := exec.Command("go", "build", "-o", exe, "fieldsync/cmd/fieldsync").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build fieldsync: %v\n%s", err, out)
	}
	root := filepath.Join(binDir, "cluster")
	if err := os.Mkdir(root, 0o700); err != nil {
		return nil, err
	}
	cl, err := harness.New(ctx, exe, root, "OMN")
	if err != nil {
		return nil, err
	}
	f := &fixture{cl: cl}
	fix = f // stopped by TestMain even if the rest fails
	if f.a, err = cl.Add(ctx, "a", officerA, false); err != nil {
		return nil, err
	}
	if f.b, err = cl.Add(ctx, "b", officerB, false); err != nil {
		return nil, err
	}
	// Each on a mesh of its own: changes travel only as bundles.
	for _, n := range []*harness.Node{f.a, f.b} {
		key := filepath.Join(root, n.Name+".mesh.key")
		if _, err := cl.CLI(ctx, "", "mesh-key", "new", "--out", key); err != nil {
			return nil, err
		}
		if err := cl.Start(ctx, n, key); err != nil {
			return nil, err
		}
	}
	ca, cb := f.a.Client(), f.b.Client()
	if f.space, err = ca.SpaceCreate(ctx, api.SpaceCreateRequest{Name: "قضية حلب"}); err != nil {
		return nil, err
	}
	sp := f.space.ID
	writes := []api.RecordPutRequest{
		{Space: sp, Record: recConflict, Fields: []api.FieldValue{{Name: "given_name", Value: "أمينة"}, {Name: "village", Value: "Hama"}}},
		{Space: sp, Record: recRTL, Fields: []api.FieldValue{{Name: "ar", Value: arabicValue}, {Name: "en", Value: latinValue}}},
		{Space: sp, Record: recXSS, Fields: []api.FieldValue{{Name: "html", Value: xssValue}}},
	}
	for _, w := range writes {
		if _, err := ca.RecordPut(ctx, w); err != nil {
			return nil, err
		}
	}
	if _, err := ca.SetOp(ctx, api.SetOpRequest{Space: sp, Record: recRTL, Field: "aliases", Op: "add", Value: "أم علي"}); err != nil {
		return nil, err
	}
	if _, err := ca.NoteAdd(ctx, api.NoteAddRequest{Space: sp, Record: recRTL, Text: "شوهدت في السوق — seen at the market"}); err != nil {
		return nil, err
	}
	if err := carry(ctx, root, f.a, f.b, "a-to-b"); err != nil {
		return nil, err
	}
	// Apart: the same field on both.
	if _, err := ca.RecordPut(ctx, api.RecordPutRequest{Space: sp, Record: recConflict, Fields: []api.FieldValue{{Name: "village", Value: "حلب"}}}); err != nil {
		return nil, err
	}
	if _, err := cb.RecordPut(ctx, api.RecordPutRequest{Space: sp, Record: recConflict, Fields: []api.FieldValue{{Name: "village", Value: "Aleppo"}}}); err != nil {
		return nil, err
	}
	if err := carry(ctx, root, f.b, f.a, "b-to-a"); err != nil {
		return nil, err
	}
	cs, err := ca.ConflictsShow(ctx, api.RecordRef{Space: sp, Record: recConflict})
	if err != nil {
		return nil, err
	}
	if len(cs.Fields) != 1 || len(cs.Fields[0].Siblings) != 2 {
		return nil, fmt.Errorf("no conflict made: %+v", cs)
	}
	return f, nil
}

// carry moves what to lacks from from: to's want file, from's bundle for
// it, imported by to.
func carry(ctx context.Context, root string, from, to *harness.Node, name string) error {
	want := filepath.Join(root, name+".fsw")
	out := filepath.Join(root, name+".fsb")
	if _, err := to.Client().BundleWant(ctx, api.BundleWantRequest{Out: want}); err != nil {
		return err
	}
	if _, err := from.Client().BundleExport(ctx, api.BundleExportRequest{Want: want, Out: out}, nil); err != nil {
		return err
	}
	res, err := to.Client().BundleImport(ctx, api.BundleImportRequest{File: out}, nil)
	if err != nil {
		return err
	}
	if res.Added == 0 {
		return fmt.Errorf("bundle %s added nothing: %+v", name, res)
	}
	return nil
}

// startUI runs `fieldsync ui` for node n, as an officer would, and returns
// the URL it printed; the command is interrupted when the test ends.
func startUI(t *testing.T, f *fixture, n *harness.Node, args ...string) string {
	t.Helper()
	cmd := exec.Command(f.cl.Exe, append([]string{"--data-dir", n.Dir, "ui"}, args...)...)
	cmd.Env = append(os.Environ(), f.cl.Env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	cmd.Stdout = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("fieldsync ui exited with %v after the interrupt: %s", err, stderr.String())
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Errorf("fieldsync ui did not stop on an interrupt")
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("fieldsync ui printed no URL: %v: %s", err, stderr.String())
	}
	return strings.TrimSpace(line)
}
