package bundle

import (
	"strings"
	"testing"

	"fieldsync/internal/deptest"
)

// The bundle package reaches the agent only through Core: it imports
// neither the agent nor its store nor sync.
func TestDeps(t *testing.T) {
	deptest.Check(t, "fieldsync/agent/bundle", func(p string) bool {
		return p == "fieldsync/crypto" || p == "fieldsync/crdt" || p == "fieldsync/internal/parallel" || p == "fieldsync/agent/api" ||
			strings.HasPrefix(p, "fieldsync/crypto/internal/") || strings.HasPrefix(p, "golang.org/x/")
	})
}
