package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binary is the fieldsync binary built once for this package's tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fieldsync-e2e-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "fieldsync")
	build := exec.Command("go", "build", "-o", binary, "fieldsync/cmd/fieldsync")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		panic("build fieldsync: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
