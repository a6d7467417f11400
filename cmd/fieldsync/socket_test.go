package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"fieldsync/agent"
)

// Issue 12, item 9: another local user puts an impostor agent where the CLI
// looks for the socket. `mesh-key add` must refuse to send it the key.
func TestMeshKeyAddRefusesImpostorSocket(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("simulating another local user needs root (chown)")
	}
	dir, err := os.MkdirTemp("", "fsimp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l := agent.Layout{Dir: dir}
	var got atomic.Int32
	var body atomic.Value
	ln, err := net.Listen("unix", l.Socket())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		b, _ := io.ReadAll(r.Body)
		body.Store(string(b))
		w.Write([]byte("{}"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	if err := os.Chown(l.Socket(), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(t.TempDir(), "mesh.key")
	if code, _, stderr := runCLI("mesh-key", "new", "--out", key); code != 0 {
		t.Fatalf("mesh-key new: %d %s", code, stderr)
	}
	code, _, stderr := runCLI("--data-dir", dir, "mesh-key", "add", key)
	if got.Load() > 0 {
		t.Fatalf("the CLI sent %d requests to an impostor socket owned by uid 65534 (exit %d): %.80q…", got.Load(), code, body.Load())
	}
	if code != exitFailure || !strings.Contains(stderr, "owned by uid 65534") {
		t.Fatalf("exit %d, stderr %q: want a failure naming the owner", code, stderr)
	}
}
