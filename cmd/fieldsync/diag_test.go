package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fieldsync/agent"
	"fieldsync/agent/api"
)

// diagRun runs the fieldsync main in-process and returns its exit code and output.
func diagRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"fieldsync"}, args...), strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestDiagBundle: with the agent running, `diag` writes a bundle holding
// every section, and no canary from the space, record, field, value or
// officer names, no passphrase and no key material (mesh key, bureau key,
// keystore); with the agent stopped it still writes versions, config and
// data-directory facts and names the missing sections and why.
func TestDiagBundle(t *testing.T) {
	t.Setenv("FIELDSYNC_TEST_KDF", "1")
	const canary = "qzdiagcanary"
	dir := t.TempDir()
	pass := filepath.Join(dir, "pass")
	const passphrase = "diag test passphrase " + canary + "-passphrase"
	if err := os.WriteFile(pass, []byte(passphrase+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "dev")
	bureau := filepath.Join(dir, "omn.bureau")
	mesh := filepath.Join(dir, "mesh.key")
	for _, args := range [][]string{
		{"--bureau-passphrase-file", pass, "bureau", "init", "--name", "OMN", "--out", bureau},
		{"mesh-key", "new", "--out", mesh},
		{"--data-dir", data, "--passphrase-file", pass, "--bureau-passphrase-file", pass, "init", "--officer", canary + "-officer", "--bureau-key", bureau, "--mesh-key", mesh},
	} {
		if code, _, stderr := diagRun(t, args...); code != 0 {
			t.Fatalf("fieldsync %s: exit %d: %s", strings.Join(args, " "), code, stderr)
		}
	}
	// The agent, in-process (the supervisor is not under test here).
	cfg := agent.DefaultConfig()
	cfg.Layout = agent.Layout{Dir: data}
	cfg.Unlock = agent.Unlock{Passphrase: []byte(passphrase)}
	cfg.Bind, cfg.Profile = "127.0.0.1:0", "local"
	cfg.MinFreeBytes = 32 << 20
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	cl := api.NewClient(cfg.Layout)
	var sp api.Space
	for i := 0; ; i++ {
		if sp, err = cl.SpaceCreate(ctx, api.SpaceCreateRequest{Name: canary + "-space"}); err == nil {
			break
		}
		if i == 600 {
			t.Fatalf("agent API did not come up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := cl.RecordPut(ctx, api.RecordPutRequest{Space: sp.ID, Record: canary + "-record",
		Fields: []api.FieldValue{{Name: canary + "-field", Value: canary + "-value"}}}); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(dir, "diag.json")
	code, stdout, stderr := diagRun(t, "--data-dir", data, "--passphrase-file", pass, "--mesh-key-file", mesh, "diag", "--out", out)
	if code != 0 {
		t.Fatalf("diag: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "wrote "+out) || stderr != "" {
		t.Fatalf("diag output: stdout %q, stderr %q", stdout, stderr)
	}
	raw, b := readBundle(t, out)
	if len(b.Missing) != 0 {
		t.Fatalf("sections missing with the agent running: %v", b.Missing)
	}
	sections := map[string]bool{}
	var generic map[string]json.RawMessage
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	for _, s := range agent.DiagSections {
		if v, ok := generic[s]; !ok || string(v) == "null" {
			t.Errorf("section %s absent or null", s)
		}
		sections[s] = true
	}
	if b.Format != agent.DiagFormat || b.Versions.Go == "" || b.Versions.Agent == "" || b.Config.Agent == nil ||
		b.Status == nil || b.Status.Device.ID == "" || b.Metrics == nil || !strings.Contains(b.Metrics.Text, "fieldsync_log_envelopes") ||
		len(b.Logs) == 0 || b.DataDir.Device == nil || b.DataDir.Device.ID != b.Status.Device.ID {
		t.Fatalf("bundle incomplete: %s", raw)
	}
	if b.Config.CLI["passphrase-file"] != pass || b.Config.Agent.Profile != "local" || b.Config.Agent.Unlock != "passphrase" {
		t.Errorf("config: cli %v, agent %+v", b.Config.CLI, b.Config.Agent)
	}
	if info, err := os.Stat(out); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("bundle mode: %v %v", info.Mode(), err)
	}
	checkNoSecrets(t, raw, canary, passphrase, bureau, mesh, cfg.Layout.Keystore())

	// An existing file is not replaced.
	if code, _, stderr := diagRun(t, "--data-dir", data, "diag", "--out", out); code != exitFailure || !strings.Contains(stderr, "already exists") {
		t.Fatalf("diag over an existing file: exit %d, %s", code, stderr)
	}
	if code, _, _ := diagRun(t, "--data-dir", data, "diag"); code != exitUsage {
		t.Fatalf("diag without --out: exit %d, want %d", code, exitUsage)
	}

	// The agent stopped: what can be had without it, and why the rest is missing.
	stop()
	out2 := filepath.Join(dir, "diag-down.json")
	code, stdout, stderr = diagRun(t, "--data-dir", data, "--json", "diag", "--out", out2)
	if code != 0 {
		t.Fatalf("diag with the agent down: exit %d: %s", code, stderr)
	}
	var summary struct {
		Sections []string          `json:"sections"`
		Missing  map[string]string `json:"missing"`
	}
	if err := json.Unmarshal([]byte(stdout), &summary); err != nil {
		t.Fatalf("diag --json output %q: %v", stdout, err)
	}
	raw2, b2 := readBundle(t, out2)
	for _, s := range []string{agent.DiagStatus, agent.DiagPeers, agent.DiagMetrics, agent.DiagLogs} {
		if !strings.Contains(b2.Missing[s], "agent not running") || !strings.Contains(summary.Missing[s], "agent not running") {
			t.Errorf("section %s: missing because %q (summary %q)", s, b2.Missing[s], summary.Missing[s])
		}
	}
	if b2.Status != nil || b2.Metrics != nil || b2.DataDir.Device == nil || b2.DataDir.Device.ID != b.Status.Device.ID ||
		b2.Versions.CLI == "" || b2.DataDir.StoreDiskBytes <= 0 || b2.Config.CLI["data-dir"] == "" {
		t.Fatalf("bundle with the agent down: %s", raw2)
	}
	checkNoSecrets(t, raw2, canary, passphrase, bureau, mesh, cfg.Layout.Keystore())
}

func readBundle(t *testing.T, path string) ([]byte, agent.DiagBundle) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var b agent.DiagBundle
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatalf("bundle is not JSON: %v", err)
	}
	return raw, b
}

// checkNoSecrets fails if the bundle holds the canary, the passphrase, or
// any line of the key files (whatever their encoding, a line of key
// material is long and random).
func checkNoSecrets(t *testing.T, raw []byte, canary, passphrase string, keyFiles ...string) {
	t.Helper()
	s := strings.ToLower(string(raw))
	if strings.Contains(s, canary) {
		i := strings.Index(s, canary)
		t.Fatalf("bundle holds case data (%q) near %q", canary, s[max(0, i-200):min(len(s), i+100)])
	}
	if strings.Contains(string(raw), passphrase) {
		t.Fatal("bundle holds the passphrase")
	}
	for _, f := range keyFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, b) {
			t.Fatalf("bundle holds the contents of %s", f)
		}
		for _, line := range strings.Split(string(b), "\n") {
			for _, field := range strings.FieldsFunc(line, func(r rune) bool { return strings.ContainsRune(" \t\":,{}[]", r) }) {
				if len(field) >= 32 && strings.Contains(string(raw), field) {
					t.Fatalf("bundle holds key material from %s: %q", f, field)
				}
			}
		}
	}
}
