package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"fieldsync/agent"
)

const relayUnit = "../../deploy/fieldsync-relay.service"

// unitSettings reads KEY=VALUE lines of a systemd unit (the last one wins).
func unitSettings(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: not KEY=VALUE: %q", path, line)
		}
		m[k] = v
	}
	return m
}

// TestRelayUnitPolicy: the unit does not restart on the agent's exit codes
// that need an operator (a restart would only loop), does on a plain
// failure, and keeps its hardening.
func TestRelayUnitPolicy(t *testing.T) {
	u := unitSettings(t, relayUnit)
	var prevent []int
	for _, f := range strings.Fields(u["RestartPreventExitStatus"]) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("RestartPreventExitStatus: %q", f)
		}
		prevent = append(prevent, n)
	}
	for _, code := range []int{exitUsage, agent.ExitNotEnrolled, agent.ExitLocked, agent.ExitQuarantined, agent.ExitKeystore, agent.ExitStore} {
		if !slices.Contains(prevent, code) {
			t.Errorf("RestartPreventExitStatus %v lacks %d", prevent, code)
		}
	}
	if slices.Contains(prevent, exitFailure) || u["Restart"] != "on-failure" {
		t.Errorf("a plain failure must restart: Restart=%s, prevent %v", u["Restart"], prevent)
	}
	for k, v := range map[string]string{
		"User": "fieldsync", "StateDirectory": "fieldsync", "NoNewPrivileges": "yes",
		"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "CapabilityBoundingSet": "",
		"LimitCORE": "0", "KillMode": "mixed", "UMask": "0077",
	} {
		if got, ok := u[k]; !ok || got != v {
			t.Errorf("%s=%q, want %q", k, got, v)
		}
	}
	// The unit's config file is the one in deploy/, and it is valid.
	if !strings.Contains(u["ExecStart"], "--config /etc/fieldsync/relay.toml agent") {
		t.Errorf("ExecStart=%s", u["ExecStart"])
	}
	cf, err := loadConfigFile("../../deploy/relay.toml", globalFlags(), agentFlags())
	if err != nil {
		t.Fatal(err)
	}
	if dir, _ := cf.global.String("data-dir"); !strings.HasPrefix(dir, "/var/lib/"+u["StateDirectory"]+"/") {
		t.Errorf("relay.toml data-dir %q is not inside StateDirectory", dir)
	}
	if relay, _ := cf.agent.Bool("relay"); !relay {
		t.Error("relay.toml does not run a relay")
	}
}

// TestRelayUnitVerify runs systemd-analyze verify on the unit (with
// ExecStart pointed at an executable that exists here).
func TestRelayUnitVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed: unit not verified")
	}
	b, err := os.ReadFile(relayUnit)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit := strings.ReplaceAll(string(b), "/usr/local/bin/fieldsync", exe)
	p := filepath.Join(t.TempDir(), "fieldsync-relay.service")
	if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", "--man=no", p).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
