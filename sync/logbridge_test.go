package sync

import (
	"log"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestLogBridgeRoutineAndProblems: memberlist's routine lines go to debug,
// even those it writes at WARN or ERR about peers that do not answer;
// problems stay at their level with a kind and a reason.
func TestLogBridgeRoutineAndProblems(t *testing.T) {
	var got []string
	h := slog.NewTextHandler(writerFunc(func(p []byte) (int, error) { got = append(got, string(p)); return len(p), nil }),
		&slog.HandlerOptions{Level: slog.LevelDebug})
	b := newLogBridge(slog.New(h), time.Hour)
	l := log.New(b, "", 0)
	routine := []string{
		"[INFO] memberlist: Suspect abc has failed, no acks received",
		"[INFO] memberlist: Marking abc as failed, suspect timeout reached (0 peer confirmations)",
		"[ERR] memberlist: Push/Pull with abc failed: dial tcp 10.0.0.9:7946: connect: connection refused",
		"[ERR] memberlist: Failed fallback TCP ping: timeout 1s: read tcp 10.0.0.1:1->10.0.0.9:7946: i/o timeout",
		"[ERR] memberlist: Failed to send gossip to 10.0.0.9:7946: write udp: network is unreachable",
		"[WARN] memberlist: Refuting a suspect message (from: abc)",
	}
	for _, line := range routine {
		l.Print(line)
	}
	if len(got) != len(routine) {
		t.Fatalf("%d lines for %d routine ones: %q", len(got), len(routine), got)
	}
	for i, g := range got {
		if !strings.Contains(g, "level=DEBUG") || !strings.Contains(g, "src=memberlist") {
			t.Errorf("routine line %q logged as %s", routine[i], g)
		}
	}
	got = nil
	problems := map[string]string{
		"[WARN] memberlist: Was able to connect to abc over TCP but UDP probes failed, network may be misconfigured": `level=WARN.*kind=udp-blocked`,
		"[ERR] memberlist: Conflicting address for abc. Mine: 10.0.0.1:7946 Theirs: 10.0.0.2:7946 Old state: 0":      `level=ERROR.*kind=name-conflict`,
		"[ERR] memberlist: failed to receive: No installed keys could decrypt the message from=10.0.0.3:7946":        `level=ERROR.*reason="mesh key mismatch".*kind=mesh-key`,
		"[ERR] memberlist: discarding packet with unacceptable label \"other\": from=10.0.0.4:7946":                  `level=ERROR.*kind=mesh-label`,
		"[WARN] memberlist: handler queue full, dropping message (3) from=10.0.0.5:7946":                             `level=WARN.*kind="memberlist:handler queue full`,
	}
	for line := range problems {
		l.Print(line)
	}
	if len(got) != len(problems) {
		t.Fatalf("%d lines for %d problems: %q", len(got), len(problems), got)
	}
	for line, want := range problems {
		found := false
		for _, g := range got {
			found = found || strings.Contains(g, "detail=") && regexp.MustCompile(want).MatchString(g) && strings.Contains(g, strings.Fields(line)[2])
		}
		if !found {
			t.Errorf("problem %q: no line matching %s in %q", line, want, got)
		}
	}
}
