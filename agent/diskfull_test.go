package agent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"fieldsync/agent/api"
	"fieldsync/crypto"
	"fieldsync/internal/platform"
)

// TestDiskFull fills a small tmpfs under a running agent: writes are
// refused with a clear error before Badger runs out of space, nothing
// acknowledged is lost, and writing resumes once space is freed. It needs
// root (to mount the tmpfs); elsewhere it is skipped with a message.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=320m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })

	omn := newTestBureau(t, "OMN")
	os.MkdirAll(filepath.Join(mnt, "dev"), 0o700)
	cfg := initTestDevice(t, filepath.Join(mnt, "dev"), omn, "Amina", crypto.RoleOfficer)
	cfg.MinFreeBytes = DefaultConfig().MinFreeBytes
	a := openTestAgent(t, cfg)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Ballast leaves the reserve and 40 MiB free.
	free, err := platform.FreeBytes(mnt)
	if err != nil {
		t.Fatal(err)
	}
	ballast := filepath.Join(mnt, "ballast")
	if err := os.WriteFile(ballast, make([]byte, free-cfg.MinFreeBytes-(40<<20)), 0o600); err != nil {
		t.Fatal(err)
	}
	val := strings.Repeat("x", 1<<20)
	acked := 0
	var werr error
	for i := 0; i < 200; i++ {
		_, werr = a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: fmt.Sprintf("r%03d", i), Fields: []api.FieldValue{{Name: "f", Value: val}}})
		if werr != nil {
			break
		}
		acked++
	}
	if !errors.Is(werr, ErrDiskFull) || !strings.Contains(werr.Error(), "free") {
		t.Fatalf("after %d writes: err = %v, want a disk-full error", acked, werr)
	}
	if acked == 0 {
		t.Fatal("no write succeeded before the disk filled")
	}
	code, _ := errorCode(werr)
	if code != api.CodeUnavailable {
		t.Fatalf("disk full maps to %q", code)
	}
	// Free space: writes resume (after the one-second recheck window).
	os.Remove(ballast)
	a.stateMu.Lock()
	a.diskMu.Lock()
	a.diskOK = false // recheck now rather than in a second
	a.diskMu.Unlock()
	a.stateMu.Unlock()
	if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "after", Fields: []api.FieldValue{{Name: "f", Value: "ok"}}}); err != nil {
		t.Fatalf("write after freeing space: %v", err)
	}
	a.Close()
	a = openTestAgent(t, cfg)
	for i := 0; i < acked; i++ {
		r, err := a.GetRecord(api.RecordRef{Space: sp.ID, Record: fmt.Sprintf("r%03d", i)})
		if err != nil || r.Fields["f"].Value != val {
			t.Fatalf("acknowledged write r%03d lost: %v", i, err)
		}
	}
	t.Logf("%d MiB acknowledged before the disk-full refusal; all present after restart", acked)
}
