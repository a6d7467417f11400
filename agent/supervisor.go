package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"fieldsync/crypto"
	"fieldsync/internal/datadir"
	"fieldsync/internal/platform"
)

// Exit codes of `fieldsync agent` beyond docs/design.md §8's 0–3. A service
// manager should not restart on 4–8 (deploy/ sets RestartPreventExitStatus).
const (
	ExitNotEnrolled = 4 // no device or no certificate in the data directory
	ExitLocked      = 5 // another agent runs on this data directory
	ExitQuarantined = 6 // the store crashed the worker repeatedly and is quarantined
	ExitKeystore    = 7 // wrong passphrase or key file, or a corrupt keystore
	ExitStore       = 8 // the store cannot be opened (see the hint printed)
)

// Crash-loop policy: this many worker crashes within crashWindow quarantine
// the store instead of restarting it again.
const (
	crashLimit  = 5
	crashWindow = 2 * time.Minute
)

// ErrQuarantined means the store was quarantined after a crash loop.
var ErrQuarantined = errors.New("store is quarantined after repeated crashes")

// quarantineHint says how to recover a quarantined store.
func quarantineHint(l Layout) string {
	return fmt.Sprintf("run `fieldsync --data-dir %s repair` (it clears the quarantine when the store rebuilds); if the store cannot open, restore a backup with `fieldsync restore` (a new device incarnation that catches up from peers); never delete %s and start afresh with the same device, which would reuse its sequence numbers", l.Dir, l.Store())
}

// SupervisorConfig configures RunSupervisor.
type SupervisorConfig struct {
	Exe        string   // the fieldsync binary (os.Executable())
	WorkerArgs []string // argv after Exe that runs the worker (the hidden agent-worker command)
	Unlock     Unlock   // handed to the worker on its stdin, never in argv or the environment
	Layout     Layout
	Logger     *slog.Logger
	Stderr     io.Writer // the worker's stdout and stderr
	// Backoff is the first restart delay (doubling up to 30 s); 0 means 1 s.
	Backoff time.Duration
	// Env is added to the worker's environment.
	Env []string
}

// readyFDEnv names the environment variable that tells a worker which file
// descriptor to report readiness on (see RunWorker).
const readyFDEnv = "FIELDSYNC_READY_FD"

// RunWorker opens the agent and serves until ctx ends, telling a supervisor
// (if one started it) once the store is open and the API is up: a worker that
// crashes before that point crashed opening the store, and restarting it
// again and again would not help.
func RunWorker(ctx context.Context, cfg Config) error {
	a, err := openWorker(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// openWorker is RunWorker's opening: no core dumps, the supervisor
// watched, the agent opened, its readiness wired to the supervisor's file
// descriptor.
func openWorker(cfg Config) (*Agent, error) {
	if err := DisableCoreDumps(); err != nil && cfg.Logger != nil {
		cfg.Logger.Warn("could not disable core dumps", "err", err)
	}
	// Where the system cannot kill the worker with its supervisor (macOS),
	// the worker watches it and exits at once when it is gone, as the
	// kernel's SIGKILL would on Linux: the store survives that (design §7),
	// and nothing is left holding the store or the socket.
	if err := platform.WatchParent(func() { os.Exit(1) }); err != nil {
		return nil, err
	}
	a, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if fd := os.Getenv(readyFDEnv); fd == "3" {
		ready := os.NewFile(3, "ready")
		a.ready = func() { ready.Write([]byte("ready\n")); ready.Close() }
	}
	return a, nil
}

// workerUnlock is what the supervisor writes to the worker's stdin.
type workerUnlock struct {
	Passphrase []byte `json:"passphrase,omitempty"`
	KeyFile    []byte `json:"key_file,omitempty"`
}

// ReadWorkerUnlock reads the worker's Unlock from r (its stdin).
func ReadWorkerUnlock(r io.Reader) (Unlock, error) {
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return Unlock{}, fmt.Errorf("read unlock from supervisor: %w", err)
	}
	var w workerUnlock
	if err := json.Unmarshal(b, &w); err != nil {
		return Unlock{}, fmt.Errorf("unlock from supervisor is malformed: %v", err)
	}
	if w.Passphrase == nil && w.KeyFile == nil {
		return Unlock{}, errors.New("supervisor sent no passphrase or key file")
	}
	return Unlock{Passphrase: w.Passphrase, KeyFile: w.KeyFile}, nil
}

// ExitCode maps the worker's error to its exit code.
func ExitCode(err error) int {
	var se *StoreError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrNotEnrolled), errors.Is(err, ErrNotInitialized):
		return ExitNotEnrolled
	case errors.Is(err, ErrLocked):
		return ExitLocked
	case errors.Is(err, ErrQuarantined):
		return ExitQuarantined
	case errors.Is(err, crypto.ErrWrongPassphrase), errors.Is(err, crypto.ErrMalformed) && !errors.As(err, &se):
		return ExitKeystore
	case errors.As(err, &se):
		return ExitStore
	}
	return 1
}

// CheckQuarantine fails with ErrQuarantined if the store is quarantined.
func CheckQuarantine(l Layout) error {
	if b, err := os.ReadFile(l.QuarantineMarker()); err == nil {
		return fmt.Errorf("%w (%s): %s", ErrQuarantined, string(b), quarantineHint(l))
	}
	return nil
}

// RunSupervisor runs the agent's worker process and restarts it when it
// crashes (Badger can panic in a background goroutine on a corrupted table,
// docs/design.md §7); a crash loop quarantines the store. The worker dies with the
// supervisor (platform.PrepareChild: PR_SET_PDEATHSIG on Linux, a Job
// Object on Windows, a pipe the worker watches on macOS), so killing
// `fieldsync agent` even with SIGKILL leaves nothing holding the store or
// the socket. It returns the exit code for the process.
func RunSupervisor(ctx context.Context, sc SupervisorConfig) int {
	log := sc.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := CheckQuarantine(sc.Layout); err != nil {
		log.Error("not starting", "err", err)
		return ExitQuarantined
	}
	backoff := sc.Backoff
	if backoff == 0 {
		backoff = time.Second
	}
	var crashes []time.Time
	startupCrashes := 0
	for {
		code, crashed, wasReady := runWorker(ctx, sc, log)
		if ctx.Err() != nil {
			return 0
		}
		if !crashed {
			if code == ExitStore {
				fmt.Fprintf(sc.Stderr, "fieldsync: hint: %s\n", (&StoreError{Dir: sc.Layout.Store()}).Hint())
			}
			return code
		}
		now := time.Now()
		if wasReady {
			startupCrashes = 0
		} else if startupCrashes++; startupCrashes >= 2 {
			reason := fmt.Sprintf("the store crashed the agent while opening, %d times in a row, last at %s", startupCrashes, now.UTC().Format(time.RFC3339))
			if err := datadir.WriteFile(sc.Layout.QuarantineMarker(), []byte(reason), 0o600); err != nil {
				log.Error("could not write the quarantine marker", "err", err)
			}
			log.Error("store quarantined: it cannot be opened", "reason", reason, "recover", quarantineHint(sc.Layout))
			return ExitQuarantined
		}
		crashes = append(crashes, now)
		for len(crashes) > 0 && now.Sub(crashes[0]) > crashWindow {
			crashes = crashes[1:]
		}
		if len(crashes) >= crashLimit {
			reason := fmt.Sprintf("%d worker crashes within %s, last at %s", len(crashes), crashWindow, now.UTC().Format(time.RFC3339))
			if err := datadir.WriteFile(sc.Layout.QuarantineMarker(), []byte(reason), 0o600); err != nil {
				log.Error("could not write the quarantine marker", "err", err)
			}
			log.Error("store quarantined after a crash loop", "reason", reason, "recover", quarantineHint(sc.Layout))
			return ExitQuarantined
		}
		log.Warn("agent worker crashed; restarting", "exit", code, "crashes_in_window", len(crashes), "after", backoff)
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// runWorker runs the worker once; crashed is true if it died by a signal or
// an exit code that is not one of the agent's deliberate ones.
func runWorker(ctx context.Context, sc SupervisorConfig, log *slog.Logger) (code int, crashed, wasReady bool) {
	code, crashed, ready := runWorkerOnce(ctx, sc, log)
	select {
	case <-ready:
		wasReady = true
	default:
	}
	return code, crashed, wasReady
}

func runWorkerOnce(ctx context.Context, sc SupervisorConfig, log *slog.Logger) (code int, crashed bool, ready chan struct{}) {
	ready = make(chan struct{})
	readyR, readyW, err := os.Pipe()
	if err != nil {
		log.Error("worker readiness pipe", "err", err)
		return 1, false, ready
	}
	defer readyR.Close()
	go func() {
		b := make([]byte, 6)
		if n, _ := io.ReadFull(readyR, b); n == 6 {
			close(ready)
		}
	}()
	cmd := exec.Command(sc.Exe, sc.WorkerArgs...)
	cmd.Env = append(append(os.Environ(), sc.Env...), readyFDEnv+"=3")
	cmd.ExtraFiles = []*os.File{readyW}
	out := &crashFilter{w: sc.Stderr, layout: sc.Layout, log: log}
	defer out.close()
	cmd.Stdout, cmd.Stderr = out, out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		readyW.Close()
		log.Error("worker stdin", "err", err)
		return 1, false, ready
	}
	leash, err := platform.PrepareChild(cmd) // after Env and ExtraFiles: it adds to them
	if err != nil {
		readyW.Close()
		log.Error("tie the worker to the supervisor", "err", err)
		return 1, false, ready
	}
	defer leash.Release() // after Wait
	err = cmd.Start()
	readyW.Close() // the worker holds its own copy
	if err != nil {
		log.Error("start agent worker", "err", err)
		return 1, false, ready
	}
	if err := leash.Started(cmd.Process.Pid); err != nil {
		log.Warn("the agent worker may outlive this supervisor if it is killed", "err", err)
	}
	msg, _ := json.Marshal(workerUnlock{Passphrase: sc.Unlock.Passphrase, KeyFile: sc.Unlock.KeyFile})
	stdin.Write(msg)
	stdin.Close()
	for i := range msg {
		msg[i] = 0
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		platform.Terminate(cmd.Process)
		select {
		case err = <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			err = <-done
		}
		return 0, false, ready
	}
	if err == nil {
		return 0, false, ready
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		log.Error("agent worker", "err", err)
		return 1, true, ready
	}
	if platform.KilledBySignal(ee.ProcessState) {
		return 1, true, ready
	}
	switch c := ee.ExitCode(); c {
	case ExitNotEnrolled, ExitLocked, ExitQuarantined, ExitKeystore, ExitStore, 1, 3:
		// Deliberate: the worker said why; restarting would not help.
		return c, false, ready
	default:
		// 2 is what a Go panic exits with; anything else unexpected.
		return c, true, ready
	}
}

// DisableCoreDumps sets RLIMIT_CORE to 0 so that key material held in memory
// never lands in a core file (Windows writes none: nothing to do there).
func DisableCoreDumps() error { return platform.DisableCoreDumps() }

// crashFilter passes the worker's output through, except a Go panic's dump:
// from a line starting "panic:" or "fatal error:" on, the output goes to a
// crash file in the data directory and the terminal gets one line saying
// where (an operator needs the reason, not a goroutine dump).
type crashFilter struct {
	w      io.Writer
	layout Layout
	log    *slog.Logger
	buf    []byte
	crash  *os.File
}

func (f *crashFilter) Write(p []byte) (int, error) {
	f.buf = append(f.buf, p...)
	for {
		i := bytes.IndexByte(f.buf, '\n')
		if i < 0 {
			if len(f.buf) > 64<<10 { // a very long line: pass it on as is
				f.emit(f.buf)
				f.buf = f.buf[:0]
			}
			return len(p), nil
		}
		f.emit(f.buf[:i+1])
		f.buf = f.buf[i+1:]
	}
}

func (f *crashFilter) emit(line []byte) {
	if f.crash == nil && (bytes.HasPrefix(line, []byte("panic:")) || bytes.HasPrefix(line, []byte("fatal error:"))) {
		name := filepath.Join(f.layout.Dir, "crash-"+time.Now().UTC().Format("20060102T150405.000")+".log")
		if c, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600); err == nil {
			f.crash = c
			fmt.Fprintf(f.w, "fieldsync: agent worker crashed: %s\nfieldsync: details in %s\n", bytes.TrimSpace(line), name)
		}
	}
	if f.crash != nil {
		f.crash.Write(line)
		return
	}
	f.w.Write(line)
}

func (f *crashFilter) close() {
	if len(f.buf) > 0 {
		f.emit(f.buf)
		f.buf = nil
	}
	if f.crash != nil {
		f.crash.Close()
	}
}
