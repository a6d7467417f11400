package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binary is the fieldsync binary built once for this package's tests;
// chaosBinary the same built with the fieldsync_chaos tag (test-only fault
// injection, for TestChaos).
var binary, chaosBinary string

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
	chaosBinary = filepath.Join(dir, "fieldsync-chaos")
	build = exec.Command("go", "build", "-tags", "fieldsync_chaos", "-o", chaosBinary, "fieldsync/cmd/fieldsync")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		panic("build fieldsync with -tags fieldsync_chaos: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
