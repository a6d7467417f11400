package deptest

import (
	"os/exec"
	"strings"
	"testing"
)

// TestOnlyStoreImportsBadger: internal/store is the one door to Badger
// (docs/design.md §4). Any other package of the module that imports Badger
// directly (tests excepted: a benchmark may measure raw Badger) fails.
func TestOnlyStoreImportsBadger(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}\t{{join .Imports \" \"}}", "fieldsync/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	importers := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, "\t")
		for _, imp := range strings.Fields(imports) {
			if !strings.HasPrefix(imp, "github.com/dgraph-io/badger") {
				continue
			}
			if pkg != "fieldsync/internal/store" {
				t.Errorf("%s imports %s: only fieldsync/internal/store may", pkg, imp)
			} else {
				importers++
			}
		}
	}
	if importers == 0 {
		t.Error("fieldsync/internal/store imports no Badger package: the check sees nothing")
	}
}

// TestStoreImportsNothingOfOurs: the store knows nothing of envelopes,
// keys or the agent.
func TestStoreImportsNothingOfOurs(t *testing.T) {
	Check(t, "fieldsync/internal/store", func(p string) bool { return !strings.HasPrefix(p, "fieldsync/") })
}

// TestClientsDoNotLinkTheAgent: what only talks to a running agent (the
// process harness, the agent-layer benchmarks, the web view) uses agent/api, never the
// agent itself, so it does not link Badger or the agent's state.
func TestClientsDoNotLinkTheAgent(t *testing.T) {
	for _, pkg := range []string{"fieldsync/internal/harness", "fieldsync/bench/w1agent", "fieldsync/bench/wmesh", "fieldsync/agent/api", "fieldsync/internal/ui"} {
		Check(t, pkg, func(p string) bool {
			return p != "fieldsync/agent" && p != "fieldsync/internal/store" && !strings.HasPrefix(p, "github.com/dgraph-io/")
		})
	}
}
