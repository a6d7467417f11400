package platform

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"fieldsync/internal/deptest"
)

func TestDeps(t *testing.T) {
	deptest.Check(t, "fieldsync/internal/platform", func(p string) bool {
		return p == "golang.org/x/sys/windows" || p == "golang.org/x/sys/unix" || p == "golang.org/x/sys/internal/unsafeheader"
	})
}

func TestLockFileContention(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.lock")
	open := func() *os.File {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	first, second := open(), open()
	if err := LockFile(first); err != nil {
		t.Fatalf("first lock: %v", err)
	}
	err := LockFile(second)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock while the first is held: got %v, want ErrLocked", err)
	}
	first.Close()
	if err := LockFile(second); err != nil {
		t.Fatalf("lock after the holder closed its file: %v", err)
	}
}

func TestFreeBytes(t *testing.T) {
	n, err := FreeBytes(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if n <= 0 {
		t.Fatalf("free bytes of a temporary directory = %d, want > 0", n)
	}
	if _, err := FreeBytes(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("free bytes of a missing path: no error")
	}
}

func TestAllocatedBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := AllocatedBytes(fi); n <= 0 {
		t.Fatalf("allocated bytes of a 64 KiB file = %d, want > 0", n)
	}
}

func TestFileOwnerIsMe(t *testing.T) {
	dir := t.TempDir()
	fi, err := os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	owner, err := FileOwner(dir, fi)
	if err != nil {
		t.Fatal(err)
	}
	me, err := Me()
	if err != nil {
		t.Fatal(err)
	}
	if owner != me {
		t.Fatalf("owner of a directory this process made is %q, Me() is %q", owner, me)
	}
	if err := RestrictToOwner(dir); err != nil {
		t.Fatal(err)
	}
}
