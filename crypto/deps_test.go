package crypto

import (
	"strings"
	"testing"

	"fieldsync/internal/deptest"
)

func TestDependencies(t *testing.T) {
	deptest.Check(t, "fieldsync/crypto", func(p string) bool {
		return strings.HasPrefix(p, "golang.org/x/crypto/") || strings.HasPrefix(p, "golang.org/x/sys/") ||
			strings.HasPrefix(p, "fieldsync/crypto/internal/")
	})
}
