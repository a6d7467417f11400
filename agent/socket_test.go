package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crypto"
	"fieldsync/internal/platform"
)

// Issue 12, item 9: the local socket. Another local user must not be able
// to put an impostor agent where the CLI looks for the real one (and so
// receive, e.g., the mesh key of `mesh-key add`), nor make the agent listen
// in a directory it controls. The attacker is simulated by uid 65534
// (nobody): as root the tests chown what that user would have created.

const attackerUID = 65534

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("simulating another local user needs root (chown)")
	}
}

// longDataDir is a data directory whose agent.sock path exceeds the limit.
func longDataDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), strings.Repeat("d", 120))
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

// impostor listens on path and counts the requests it receives.
func impostor(t *testing.T, path string) *atomic.Int32 {
	t.Helper()
	var got atomic.Int32
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.Write([]byte("{}"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &got
}

// dialAndSend is what the CLI does: Dial, then send a request.
func dialAndSend(t *testing.T, l Layout) error {
	t.Helper()
	cl, err := api.Dial(l)
	if err != nil {
		return err
	}
	var st api.Status
	return cl.Call(clientCtx(t), api.PathStatus, nil, &st)
}

// runUntilListening starts the agent and reports whether it came to listen
// on its socket (true) or refused to run (false, with its error).
func runUntilListening(t *testing.T, a *Agent) (bool, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	sock := a.cfg.Layout.Socket()
	for i := 0; i < 1000; i++ {
		select {
		case err := <-done:
			done <- err
			return false, err
		default:
		}
		if fi, err := os.Lstat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return true, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the agent neither listened on %s nor stopped", sock)
	return false, nil
}

// An impostor socket owned by another user, where the CLI looks: the client
// must refuse it before sending anything.
func TestSocketAttackImpostorOwnedByOtherUser(t *testing.T) {
	needRoot(t)
	l := clientTestDir(t)
	got := impostor(t, l.Socket())
	if err := os.Chown(l.Socket(), attackerUID, attackerUID); err != nil {
		t.Fatal(err)
	}
	err := dialAndSend(t, l)
	if got.Load() > 0 || err == nil {
		t.Fatalf("the client talked to a socket owned by uid %d (%d requests sent, err %v)", attackerUID, got.Load(), err)
	}
	if !strings.Contains(err.Error(), "owned by") {
		t.Fatalf("refused without saying why: %v", err)
	}
}

// The socket path is a symlink (to a socket that is the user's own, even):
// refused, since whoever made the link chooses where it points.
func TestSocketAttackSymlink(t *testing.T) {
	l := clientTestDir(t)
	other := clientTestDir(t)
	got := impostor(t, filepath.Join(other.Dir, "real.sock"))
	if err := os.Symlink(filepath.Join(other.Dir, "real.sock"), l.Socket()); err != nil {
		t.Fatal(err)
	}
	err := dialAndSend(t, l)
	if got.Load() > 0 || err == nil {
		t.Fatalf("the client followed a symlinked socket (%d requests sent, err %v)", got.Load(), err)
	}
}

// When the data directory's path is too long, the socket goes to
// $XDG_RUNTIME_DIR (private to the user), not to a fixed shared path.
func TestSocketFallbackUsesRuntimeDir(t *testing.T) {
	rt := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", rt)
	l := Layout{Dir: longDataDir(t)}
	if !l.SocketIsShort() {
		t.Fatal("the test's data directory is not long enough")
	}
	if s := l.Socket(); !strings.HasPrefix(s, rt+string(filepath.Separator)) || len(s) > platform.MaxSocketPath {
		t.Fatalf("socket %s is not in XDG_RUNTIME_DIR %s", s, rt)
	}
}

// Another user created the short socket directory first (mode 0777, its
// own): the agent must refuse to listen there, and the CLI to talk there.
func TestSocketAttackPrecreatedRuntimeDir(t *testing.T) {
	needRoot(t)
	for _, xdg := range []bool{true, false} {
		t.Run(map[bool]string{true: "XDG_RUNTIME_DIR", false: "TMPDIR"}[xdg], func(t *testing.T) {
			base := t.TempDir()
			if xdg {
				t.Setenv("XDG_RUNTIME_DIR", base)
			} else {
				t.Setenv("XDG_RUNTIME_DIR", "")
				t.Setenv("TMPDIR", base)
			}
			omn := newTestBureau(t, "OMN")
			cfg := initTestDevice(t, longDataDir(t), omn, "Officer", crypto.RoleOfficer)
			sock := cfg.Layout.Socket()
			// Never touch a shared path: only what lies under this test's base.
			if !strings.HasPrefix(sock, base+string(filepath.Separator)) {
				t.Fatalf("socket %s is not under %s: the fallback ignores the environment", sock, base)
			}
			dir := filepath.Dir(sock)
			if err := os.MkdirAll(dir, 0o777); err != nil {
				t.Fatal(err)
			}
			os.Chmod(dir, 0o777)
			if err := os.Chown(dir, attackerUID, attackerUID); err != nil {
				t.Fatal(err)
			}
			a := openTestAgent(t, cfg)
			listening, err := runUntilListening(t, a)
			if listening {
				t.Fatalf("the agent listens in %s, a directory another user owns", dir)
			}
			if err == nil || !strings.Contains(err.Error(), dir) {
				t.Fatalf("refused without naming the directory: %v", err)
			}
			// The attacker's impostor in its own directory: the CLI refuses it.
			got := impostor(t, sock)
			os.Chown(sock, attackerUID, attackerUID)
			if err := dialAndSend(t, cfg.Layout); err == nil || got.Load() > 0 {
				t.Fatalf("the client talked to an impostor in %s (%d requests, err %v)", dir, got.Load(), err)
			}
		})
	}
}

// A data directory another user owns and anyone may write to: the agent
// must not put its socket there, and the CLI must not talk to a socket in it.
func TestSocketAttackHostileDataDir(t *testing.T) {
	needRoot(t)
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Officer", crypto.RoleOfficer)
	a := openTestAgent(t, cfg)
	if err := os.Chmod(cfg.Layout.Dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(cfg.Layout.Dir, attackerUID, attackerUID); err != nil {
		t.Fatal(err)
	}
	listening, err := runUntilListening(t, a)
	if listening {
		t.Fatalf("the agent listens in %s, a directory another user owns with mode 0777", cfg.Layout.Dir)
	}
	if err == nil {
		t.Fatal("the agent stopped without an error")
	}
	// An impostor there, even one that looks like the user's own socket.
	got := impostor(t, cfg.Layout.Socket())
	if err := dialAndSend(t, cfg.Layout); err == nil || got.Load() > 0 {
		t.Fatalf("the client talked to a socket in a directory another user controls (%d requests, err %v)", got.Load(), err)
	}
	if errors.Is(err, api.ErrAgentNotRunning) {
		t.Fatalf("an impostor is reported as an agent that is not running: %v", err)
	}
}

// A client made for a socket path checks the socket at every connection,
// not only when Dial looked: an impostor swapped in later is refused too.
func TestSocketAttackSwappedAfterDial(t *testing.T) {
	needRoot(t)
	l := clientTestDir(t)
	got := impostor(t, l.Socket())
	cl := api.NewClient(l)
	os.Chown(l.Socket(), attackerUID, attackerUID)
	var st api.Status
	if err := cl.Call(clientCtx(t), api.PathStatus, nil, &st); err == nil || got.Load() > 0 {
		t.Fatalf("a client sent %d requests to a socket owned by uid %d (err %v)", got.Load(), attackerUID, err)
	}
}

// The fallback works: with a long data directory the agent makes its
// private directory under XDG_RUNTIME_DIR (or TMPDIR), listens there, and
// the CLI finds and talks to it.
func TestSocketFallbackServes(t *testing.T) {
	for _, xdg := range []bool{true, false} {
		t.Run(map[bool]string{true: "XDG_RUNTIME_DIR", false: "TMPDIR"}[xdg], func(t *testing.T) {
			base := t.TempDir()
			if xdg {
				t.Setenv("XDG_RUNTIME_DIR", base)
			} else {
				t.Setenv("XDG_RUNTIME_DIR", "")
				t.Setenv("TMPDIR", base)
			}
			omn := newTestBureau(t, "OMN")
			cfg := initTestDevice(t, longDataDir(t), omn, "Officer", crypto.RoleOfficer)
			a := openTestAgent(t, cfg)
			if listening, err := runUntilListening(t, a); !listening {
				t.Fatalf("the agent did not listen: %v", err)
			}
			sock := cfg.Layout.Socket()
			if !strings.HasPrefix(sock, base+string(filepath.Separator)) {
				t.Fatalf("socket %s not under %s", sock, base)
			}
			fi, err := os.Lstat(filepath.Dir(sock))
			if err != nil || fi.Mode().Perm() != 0o700 {
				t.Fatalf("socket directory: %v, mode %v", err, fi.Mode())
			}
			if err := dialAndSend(t, cfg.Layout); err != nil {
				t.Fatalf("the CLI cannot talk to its own agent: %v", err)
			}
		})
	}
}

// A data directory of the user's that group or others may write to: anyone
// there could replace the socket, so the agent refuses it; one they may
// only read (0755, as made by hand) is accepted.
func TestSocketDataDirWritableByOthers(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Officer", crypto.RoleOfficer)
	if err := os.Chmod(cfg.Layout.Dir, 0o770); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Layout.PrepareSocketDir(); !errors.Is(err, ErrUnsafeSocket) || !strings.Contains(err.Error(), "0770") {
		t.Fatalf("group-writable data directory: %v", err)
	}
	if err := os.Chmod(cfg.Layout.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Layout.PrepareSocketDir(); err != nil {
		t.Fatalf("a 0755 data directory of the user's: %v", err)
	}
}

// clientTestDir is a temporary data directory whose socket path fits the limit.
func clientTestDir(t *testing.T) Layout {
	t.Helper()
	d, err := os.MkdirTemp("", "fsc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return Layout{Dir: d}
}

func clientCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}
