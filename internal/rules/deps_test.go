package rules_test

import (
	"strings"
	"testing"

	"fieldsync/internal/deptest"
)

// TestDependencies: the rules are pure; of fieldsync they import only
// crypto, for its ID types and parsed objects.
func TestDependencies(t *testing.T) {
	deptest.Check(t, "fieldsync/internal/rules", func(p string) bool {
		return p == "fieldsync/crypto" || strings.HasPrefix(p, "fieldsync/crypto/internal/") ||
			strings.HasPrefix(p, "golang.org/x/crypto/") || strings.HasPrefix(p, "golang.org/x/sys/")
	})
}
