package main

import (
	"bytes"
	"fieldsync/agent/api"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The bundle commands' usage and file errors, before any agent is asked.
func TestBundleCommandErrors(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "exists.fsb")
	if err := os.WriteFile(existing, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bundle", "want"}, exitUsage, "missing --out FILE"},
		{[]string{"bundle", "export"}, exitUsage, "missing --out FILE"},
		{[]string{"bundle", "export", "--out", existing}, exitFailure, "already exists"},
		{[]string{"bundle", "export", "--want", filepath.Join(dir, "none.fsw"), "--out", filepath.Join(dir, "b.fsb")}, exitNotFound, "want file"},
		{[]string{"bundle", "import"}, exitUsage, "missing arguments"},
		{[]string{"bundle", "import", filepath.Join(dir, "none.fsb")}, exitNotFound, "no such file"},
		{[]string{"bundle", "import", existing}, exitFailure, "agent not running"},
		{[]string{"bundle", "frobnicate"}, exitUsage, "unknown command"},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		args := append([]string{"fieldsync", "--data-dir", data}, c.args...)
		code := run(args, strings.NewReader(""), &stdout, &stderr)
		if code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr.String(), c.code, c.want)
		}
	}
}

// The progress bar draws only on a terminal: into a buffer (a pipe, a log)
// it writes nothing and asks the agent for no progress lines.
func TestProgressBarOffWithoutTerminal(t *testing.T) {
	var buf bytes.Buffer
	p := newProgressBar(&buf)
	if p.update() != nil {
		t.Fatal("a progress callback for a non-terminal")
	}
	p.finish()
	if buf.Len() != 0 {
		t.Fatalf("wrote %q", buf.String())
	}
	// Drawn (as on a terminal): one line, rewritten in place.
	p.on = true
	f := p.update()
	f(api.BundleProgress{Phase: "verify", Done: 50, Total: 100, Unit: "bytes"})
	p.finish()
	if s := buf.String(); !strings.HasPrefix(s, "\rverify ") || !strings.Contains(s, " 50%") || !strings.HasSuffix(s, "\n") {
		t.Fatalf("bar %q", s)
	}
}
