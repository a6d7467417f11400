// Package anchors runs BENCH.md's anchors — W1 in memory on Yjs and
// Automerge, on Node — on exactly the workload fieldsync's reference
// generator (bench/w1) draws, so that their figures and fieldsync's can be
// compared from one run on one machine.
//
// `fieldsync bench anchors [--size S|L] [--runs N] [--json]` calls Run. It
// needs Node.js (≥ 18) and npm; the two libraries are installed, at the
// versions pinned in js/package-lock.json, into a temporary directory (or
// FIELDSYNC_ANCHORS_DIR, kept between runs).
package anchors

import (
	"bufio"
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"

	"fieldsync/bench/w1"
)

//go:embed js/w1.mjs js/package.json js/package-lock.json
var jsFiles embed.FS

// Libs are the anchors, in the order they run.
var Libs = []string{"yjs", "automerge"}

// Figures are one run's figures, as w1.mjs prints them.
type Figures struct {
	Lib               string  `json:"lib"`
	UpdatesPerS       float64 `json:"updates_per_s"`
	InitSyncMS        float64 `json:"init_sync_ms"`
	InitSyncBytes     int64   `json:"init_sync_bytes"`
	DeltaSyncMS       float64 `json:"delta_sync_ms"`
	DeltaBytesAB      int64   `json:"delta_bytes_ab"`
	DeltaBytesBA      int64   `json:"delta_bytes_ba"`
	Conflicts         int     `json:"conflicts"`
	ExpectedConflicts int     `json:"expected_conflicts"`
	Converged         bool    `json:"converged"`
	StateBytes        int64   `json:"state_bytes"`
	PeakRSSMB         float64 `json:"peak_rss_mb"`
	Node              string  `json:"node"`
}

// Result holds, per library, the median of each figure over the runs.
type Result struct {
	Workload  string             `json:"workload"`
	Size      string             `json:"size"`
	Runs      int                `json:"runs"`
	Nproc     int                `json:"nproc"`
	GoVersion string             `json:"go_version"`
	Median    map[string]Figures `json:"median"`
}

// ErrNoNode means Node.js or npm is not installed.
var ErrNoNode = errors.New("the anchors need Node.js (18 or later) and npm: install them (Debian: apt-get install nodejs npm)")

// Run exports the workload, installs the libraries and runs each one runs
// times, each run in its own node process (so each peak RSS is its own).
func Run(ctx context.Context, size w1.Size, runs int, out io.Writer, jsonOut bool) (Result, error) {
	res := Result{Workload: "W1", Size: size.Name, Runs: runs, Nproc: runtime.NumCPU(), GoVersion: runtime.Version(), Median: map[string]Figures{}}
	node, err1 := exec.LookPath("node")
	npm, err2 := exec.LookPath("npm")
	if err1 != nil || err2 != nil {
		return res, ErrNoNode
	}
	dir := os.Getenv("FIELDSYNC_ANCHORS_DIR")
	if dir == "" {
		d, err := os.MkdirTemp("", "fieldsync-anchors-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	if err := install(ctx, npm, dir); err != nil {
		return res, err
	}
	wl := filepath.Join(dir, "w1-"+size.Name+".json")
	if err := writeWorkload(wl, w1.Generate(size)); err != nil {
		return res, err
	}
	for _, lib := range Libs {
		var all []Figures
		for range runs {
			f, err := runOnce(ctx, node, dir, lib, wl)
			if err != nil {
				return res, err
			}
			all = append(all, f)
		}
		res.Median[lib] = median(all)
	}
	Print(out, res)
	if jsonOut {
		j, _ := json.Marshal(res)
		fmt.Fprintf(out, "%s\n", j)
	}
	return res, nil
}

// install writes the embedded files into dir and installs the pinned
// libraries there, unless a previous run did.
func install(ctx context.Context, npm, dir string) error {
	for _, name := range []string{"w1.mjs", "package.json", "package-lock.json"} {
		b, err := jsFiles.ReadFile("js/" + name)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "yjs", "package.json")); err == nil {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "@automerge", "automerge", "package.json")); err == nil {
			return nil
		}
	}
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm ci (installing yjs and automerge from the npm registry) in %s: %v\n%s", dir, err, b)
	}
	return nil
}

// writeWorkload writes the workload as w1.mjs reads it.
func writeWorkload(path string, w *w1.Workload) error {
	type pick = [3]any
	doc := struct {
		Fields    []string    `json:"fields"`
		Initial   [][8]string `json:"initial"`
		A         []pick      `json:"a"`
		B         []pick      `json:"b"`
		Conflicts [][4]any    `json:"conflicts"`
	}{Fields: w1.Fields[:], Initial: w.Initial}
	for _, p := range w.A {
		doc.A = append(doc.A, pick{p.Record, p.Field, p.Value})
	}
	for _, p := range w.B {
		doc.B = append(doc.B, pick{p.Record, p.Field, p.Value})
	}
	for _, c := range w.Conflicts {
		doc.Conflicts = append(doc.Conflicts, [4]any{c.Record, c.Field, c.ValueA, c.ValueB})
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	if err := json.NewEncoder(bw).Encode(doc); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func runOnce(ctx context.Context, node, dir, lib, workload string) (Figures, error) {
	cmd := exec.CommandContext(ctx, node, "--max-old-space-size=8192", "w1.mjs", lib, workload)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return Figures{}, fmt.Errorf("%s: %v\n%s", lib, err, stderr.Bytes())
	}
	var f Figures
	if err := json.Unmarshal(bytes.TrimSpace(b), &f); err != nil {
		return Figures{}, fmt.Errorf("%s printed %q: %v", lib, b, err)
	}
	return f, nil
}

// median takes, figure by figure, the median over the runs.
func median(all []Figures) Figures {
	m := all[0]
	mf := func(get func(Figures) float64) float64 {
		v := make([]float64, len(all))
		for i, f := range all {
			v[i] = get(f)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	m.UpdatesPerS = mf(func(f Figures) float64 { return f.UpdatesPerS })
	m.InitSyncMS = mf(func(f Figures) float64 { return f.InitSyncMS })
	m.DeltaSyncMS = mf(func(f Figures) float64 { return f.DeltaSyncMS })
	m.PeakRSSMB = mf(func(f Figures) float64 { return f.PeakRSSMB })
	for _, f := range all {
		m.Converged = m.Converged && f.Converged
	}
	return m
}

// Print prints the anchors' table, as BENCH.md lays it out.
func Print(out io.Writer, r Result) {
	fmt.Fprintf(out, "W1-%s anchors in memory, medians of %d runs (nproc %d; %s)\n", r.Size, r.Runs, r.Nproc, r.Median["yjs"].Node)
	fmt.Fprintf(out, "  %-24s %22s %22s\n", "", "Yjs 13.6", "Automerge 3.5")
	row := func(k string, v func(Figures) string) {
		fmt.Fprintf(out, "  %-24s %22s %22s\n", k, v(r.Median["yjs"]), v(r.Median["automerge"]))
	}
	row("local updates/s", func(f Figures) string { return fmt.Sprintf("%.0f", f.UpdatesPerS) })
	row("initial sync", func(f Figures) string {
		return fmt.Sprintf("%.0f ms, %.2f MB", f.InitSyncMS, float64(f.InitSyncBytes)/1e6)
	})
	row("delta sync (both ways)", func(f Figures) string {
		return fmt.Sprintf("%.0f ms, %.2f MB", f.DeltaSyncMS, float64(f.DeltaBytesAB+f.DeltaBytesBA)/1e6)
	})
	row("conflicts kept", func(f Figures) string { return fmt.Sprintf("%d of %d", f.Conflicts, f.ExpectedConflicts) })
	row("saved state", func(f Figures) string { return fmt.Sprintf("%.2f MB", float64(f.StateBytes)/1e6) })
	row("peak RSS", func(f Figures) string { return fmt.Sprintf("%.0f MB", f.PeakRSSMB) })
	row("converged", func(f Figures) string { return fmt.Sprint(f.Converged) })
}
