package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"fieldsync/agent/api"
)

func TestAPIExitCodes(t *testing.T) {
	cases := map[string]int{
		api.CodeNotFound:    exitNotFound,
		api.CodeBadRequest:  exitUsage,
		api.CodeAmbiguous:   exitUsage,
		api.CodeConflict:    exitFailure,
		api.CodeTooLarge:    exitFailure,
		api.CodeUnavailable: exitFailure,
		api.CodeInternal:    exitFailure,
		"something_new":     exitFailure,
	}
	for code, want := range cases {
		if got := apiExitCode(code); got != want {
			t.Errorf("apiExitCode(%q) = %d, want %d", code, got, want)
		}
	}
}

func TestParseValidity(t *testing.T) {
	good := map[string]time.Duration{
		"365d":   365 * 24 * time.Hour,
		"72h":    72 * time.Hour,
		"30d12h": 30*24*time.Hour + 12*time.Hour,
		"1d30m":  24*time.Hour + 30*time.Minute,
	}
	for in, want := range good {
		got, err := parseValidity(in)
		if err != nil || got != want {
			t.Errorf("parseValidity(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0d", "-5d", "d", "soon", "5x", "365d-1h", "999999d"} {
		if _, err := parseValidity(bad); err == nil {
			t.Errorf("parseValidity(%q) accepted", bad)
		}
	}
}

// runCLI runs the CLI in-process (commands that need no files).
func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(append([]string{"fieldsync"}, args...), strings.NewReader(""), &o, &e)
	return code, o.String(), e.String()
}

func TestRunErrors(t *testing.T) {
	code, _, stderr := runCLI("trust", "list", "--bogus")
	if code != exitUsage || !strings.HasPrefix(stderr, "fieldsync: error: ") || strings.Contains(stderr, "Incorrect Usage") {
		t.Errorf("unknown flag: code %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCLI("--json", "record", "get", "only-one")
	var eb api.ErrorBody
	if code != exitUsage || json.Unmarshal([]byte(stderr), &eb) != nil || eb.Error.Code != codeUsage || eb.Error.Message == "" {
		t.Errorf("--json missing argument: code %d, stderr %q", code, stderr)
	}
	// Messages are lower case with no trailing period.
	for _, args := range [][]string{{"bogus"}, {"space", "bogus"}, {"record", "get"}, {"bench", "w1", "--size", "M"}} {
		_, _, stderr := runCLI(args...)
		line := strings.SplitN(stderr, "\n", 2)[0]
		msg := strings.TrimPrefix(line, "fieldsync: error: ")
		if msg == line || msg == "" || strings.HasSuffix(msg, ".") || strings.ToLower(msg[:1]) != msg[:1] {
			t.Errorf("%v: error line %q", args, line)
		}
	}
	// The worker never exits 2: its supervisor reads 2 as a panic.
	if code, _, _ := runCLI("agent-worker", "--bogus"); code != exitFailure {
		t.Errorf("agent-worker usage error: exit %d, want 1", code)
	}
}
