package agent

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"fieldsync/agent/api"
	"fieldsync/crypto"
)

// TestBitRot flips one bit at many offsets of every kind of file the store
// has, then opens the damaged copy in an agent process and reads every
// record: a value is either exactly what was written or an error — never a
// wrong or empty value passed off as data. A store that cannot open must say
// so clearly.
func TestBitRot(t *testing.T) {
	if testing.Short() {
		t.Skip("bit-rot sweep is long")
	}
	for _, variant := range []struct {
		name      string
		threshold string // Badger value threshold: small puts values in the value log, large in the tables
		kill      bool   // SIGKILL instead of a clean stop leaves the memtable WAL (.mem)
	}{
		{"lsm-values-clean", "32768", false}, // the tables hold the values (the default puts most in the value log)
		{"vlog-values-clean", "64", false},
		{"wal-killed", "64", true},
	} {
		t.Run(variant.name, func(t *testing.T) {
			bitRotVariant(t, variant.threshold, variant.kill)
		})
	}
}

func bitRotVariant(t *testing.T, threshold string, kill bool) {
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	var env []string
	if threshold != "" {
		env = append(env, "FIELDSYNC_TEST_VALUE_THRESHOLD="+threshold)
	}
	ctx := context.Background()
	c := startChild(t, cfg, env...)
	cl := c.client()
	sp, err := cl.SpaceCreate(ctx, api.SpaceCreateRequest{Name: "rot"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i := 0; i < 60; i++ {
		rec := fmt.Sprintf("r%02d", i%20)
		val := fmt.Sprintf("value %d %s", i, strings.Repeat("د", i%7))
		if _, err := cl.RecordPut(ctx, api.RecordPutRequest{Space: sp.ID, Record: rec, Fields: []api.FieldValue{{Name: "f", Value: val}}}); err != nil {
			t.Fatal(err)
		}
		want[rec] = val
	}
	if kill {
		c.kill()
	} else {
		c.stop()
	}
	// Group the store's files by kind.
	kinds := map[string][]string{}
	filepath.WalkDir(cfg.Layout.Store(), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			k := filepath.Ext(p)
			if k == "" {
				k = filepath.Base(p)
			}
			kinds[k] = append(kinds[k], p)
		}
		return nil
	})
	var names []string
	for k := range kinds {
		names = append(names, k)
	}
	sort.Strings(names)
	t.Logf("store files: %v", names)
	pristine := t.TempDir()
	copyDir(t, cfg.Layout.Dir, pristine)

	hits, runs := 0, 0
	for _, kind := range names {
		if kind == "LOCK" {
			continue
		}
		file := kinds[kind][0]
		rel, _ := filepath.Rel(cfg.Layout.Dir, file)
		size := fileSize(t, file)
		if size == 0 {
			continue
		}
		for i := 0; i < 6; i++ {
			off := (size * int64(2*i+1)) / 12
			work := t.TempDir()
			copyDir(t, pristine, work)
			flipBit(t, filepath.Join(work, rel), off, uint(i%8))
			wcfg := cfg
			wcfg.Layout = Layout{Dir: work}
			runs++
			if hit := readAfterFlip(t, wcfg, env, sp.ID, want, fmt.Sprintf("%s@%d", kind, off)); hit {
				hits++
			}
		}
	}
	t.Logf("%d flips, %d hit live data (detected as an error, a rebuild or a refusal to open); none returned a wrong value", runs, hits)
}

// readAfterFlip opens a damaged store in a child agent and reads every
// record. It fails the test on a wrong value, and reports whether the flip
// was noticed at all.
func readAfterFlip(t *testing.T, cfg Config, env []string, space string, want map[string]string, where string) (hit bool) {
	t.Helper()
	c, err := tryStartChild(t, cfg, append(env, "FIELDSYNC_TEST_SUPERVISE=1")...)
	if err != nil {
		// Could not open: the supervisor must say what and how to recover,
		// once — not show a goroutine dump, not loop.
		out := err.Error()
		if strings.Contains(out, "goroutine ") {
			t.Errorf("%s: a raw panic reached the terminal:\n%s", where, out)
		}
		if !strings.Contains(out, "repair") && !strings.Contains(out, "restore") {
			t.Errorf("%s: no recovery path in:\n%s", where, out)
		}
		return true
	}
	defer c.kill()
	cl := c.client()
	ctx := context.Background()
	for rec, val := range want {
		r, err := cl.RecordGet(ctx, api.RecordRef{Space: space, Record: rec})
		if err != nil {
			hit = true
			continue
		}
		if got := r.Fields["f"].Value; got != val {
			t.Errorf("%s: record %s returned %q, want %q (or an error)", where, rec, got, val)
		}
	}
	st, err := cl.Status(ctx)
	if err == nil && (st.CorruptValues > 0 || len(st.Missing) > 0) {
		hit = true
	}
	return hit
}

// tryStartChild is startChild that returns the child's output as an error
// instead of failing the test when the agent does not come up.
func tryStartChild(t testing.TB, cfg Config, env ...string) (*childAgent, error) {
	ft := &fakeTB{TB: t} // Cleanup goes to t; a failure is returned
	var c *childAgent
	var p any
	func() {
		defer func() { p = recover() }()
		c = startChild(ft, cfg, env...)
	}()
	switch {
	case ft.failed:
		return nil, fmt.Errorf("%s", ft.msg)
	case c == nil:
		panic(p) // not a start failure: a bug in the test
	}
	return c, nil
}

// fakeTB lets startChild report failure without failing the test.
type fakeTB struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
	panic("fakeTB.Fatalf")
}
func (f *fakeTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }

func fileSize(t *testing.T, p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func flipBit(t *testing.T, p string, off int64, bit uint) {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 1 << bit
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		if d.Type()&fs.ModeSocket != 0 || d.Name() == "agent.lock" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}
