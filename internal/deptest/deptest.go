// Package deptest checks the import rules between fieldsync's packages
// (STYLE.md: crdt and crypto import nothing of ours; crdt imports only the
// standard library; crypto only the standard library and golang.org/x/crypto).
package deptest

import (
	"os/exec"
	"strings"
	"testing"
)

// Deps returns every package that pkg depends on, transitively, as `go list
// -deps` reports it (the package itself included).
func Deps(t testing.TB, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// IsStd reports whether an import path belongs to the standard library: the
// first path element of a standard package has no dot in it.
func IsStd(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".") && first != "fieldsync"
}

// Check fails t for every dependency of pkg that allowed does not accept.
func Check(t *testing.T, pkg string, allowed func(path string) bool) {
	t.Helper()
	for _, d := range Deps(t, pkg) {
		if d == pkg || IsStd(d) {
			continue
		}
		if !allowed(d) {
			t.Errorf("%s must not depend on %s", pkg, d)
		}
	}
}
