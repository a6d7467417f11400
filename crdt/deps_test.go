package crdt

import (
	"testing"

	"fieldsync/internal/deptest"
)

func TestDependencies(t *testing.T) {
	deptest.Check(t, "fieldsync/crdt", func(string) bool { return false })
}
