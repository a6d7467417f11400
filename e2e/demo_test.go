package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDemo runs `fieldsync demo` — the README's main job — as a user would:
// four agent processes, a partition, concurrent edits, a heal, a conflict.
func TestDemo(t *testing.T) {
	out, err := exec.Command(binary, "demo").CombinedOutput()
	if err != nil {
		t.Fatalf("fieldsync demo: %v\n%s", err, out)
	}
	for _, want := range []string{"converged", "field vehicle: 2 values", "KZ 125 ABC — رأيتها", "KZ 124 ABC", "Chen Wei (OMN)", "Amina Haddad (OMN)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}
