package agent

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crypto"
	"fieldsync/internal/platform"
)

// The test binary doubles as an agent process: with FIELDSYNC_TEST_AGENT_DIR
// set it runs an agent on that data directory until SIGTERM, so tests can
// kill a real process with SIGKILL.
func TestMain(m *testing.M) {
	if dir := os.Getenv("FIELDSYNC_TEST_OPEN_DIR"); dir != "" {
		os.Exit(openChild(dir))
	}
	if dir := os.Getenv("FIELDSYNC_TEST_AGENT_DIR"); dir != "" {
		if os.Getenv("FIELDSYNC_TEST_SUPERVISE") == "1" {
			os.Exit(runChildSupervisor(dir))
		}
		os.Exit(runChildAgent(dir))
	}
	os.Exit(m.Run())
}

func runChildAgent(dir string) int {
	cfg := DefaultConfig()
	cfg.Layout = Layout{Dir: dir}
	cfg.Unlock = Unlock{Passphrase: testPassphrase}
	cfg.Bind = "127.0.0.1:0"
	cfg.Profile = "local"
	if v := os.Getenv("FIELDSYNC_TEST_VALUE_THRESHOLD"); v != "" {
		fmt.Sscan(v, &cfg.BadgerValueThreshold)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := RunWorker(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "child agent:", err)
		return ExitCode(err)
	}
	return 0
}

// runChildSupervisor runs the test binary's child agent under RunSupervisor,
// as `fieldsync agent` runs its worker.
func runChildSupervisor(dir string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	return RunSupervisor(ctx, SupervisorConfig{
		Exe:        os.Args[0],
		WorkerArgs: []string{"-test.run=^$"},
		Unlock:     Unlock{Passphrase: testPassphrase},
		Layout:     Layout{Dir: dir},
		Logger:     log,
		Stderr:     os.Stderr,
		Env:        []string{"FIELDSYNC_TEST_SUPERVISE=0"},
		Backoff:    50 * time.Millisecond,
	})
}

// childAgent is an agent running in a subprocess.
type childAgent struct {
	t      testing.TB
	cmd    *exec.Cmd
	cfg    Config
	out    syncBuffer
	exited chan struct{} // closed when the process has exited
	err    error         // its exit status, once exited is closed
}

// syncBuffer is a bytes.Buffer safe for the writes of a child's output
// goroutine and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startChild(t testing.TB, cfg Config, env ...string) *childAgent {
	t.Helper()
	c := &childAgent{t: t, cfg: cfg, exited: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(append(os.Environ(), "FIELDSYNC_TEST_AGENT_DIR="+cfg.Layout.Dir), env...)
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	leash, err := platform.PrepareChild(c.cmd)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(leash.Release)
	if err := leash.Started(c.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.exited) }()
	cl := c.client()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := cl.Status(context.Background()); err == nil {
			return c
		}
		select {
		case <-c.exited:
			t.Fatalf("child agent exited (%v):\n%s", c.err, c.out.String())
		default:
		}
		if time.Now().After(deadline) {
			c.kill()
			t.Fatalf("child agent did not come up:\n%s", c.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *childAgent) client() *api.Client { return api.NewClient(c.cfg.Layout) }

func (c *childAgent) stop() {
	platform.Terminate(c.cmd.Process)
	<-c.exited
	if c.err != nil {
		c.t.Fatalf("child agent did not stop cleanly: %v\n%s", c.err, c.out.String())
	}
}

func (c *childAgent) kill() {
	c.cmd.Process.Kill()
	<-c.exited
}

// scanForCanary fails the test if any file under dir contains a canary.
func scanForCanary(t *testing.T, dir string, canaries ...[]byte) {
	t.Helper()
	hits, files, err := canaryHits(dir, canaries...)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hits {
		t.Errorf("canary found in %s", h)
	}
	if files < 4 {
		t.Fatalf("only %d files scanned: is the store there?", files)
	}
}

// canaryHits lists the files under dir that contain any of the canaries.
func canaryHits(dir string, canaries ...[]byte) (hits []string, files int, err error) {
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Type()&fs.ModeSocket != 0 {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for _, c := range canaries {
			if bytes.Contains(b, c) {
				hits = append(hits, path)
				break
			}
		}
		return nil
	})
	return hits, files, err
}

// TestCanaryScanFindsPlaintext is the scanner's control: a canary written in
// clear into a data directory's file is found.
func TestCanaryScanFindsPlaintext(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "000001.vlog"), []byte("xx CANARYcontrol yy"), 0o600)
	hits, _, err := canaryHits(dir, []byte("CANARYcontrol"))
	if err != nil || len(hits) != 1 {
		t.Fatalf("control canary not found: %v %v", hits, err)
	}
}

func TestCanaryNeverOnDisk(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	const canary = "CANARY7f3a9"
	cfg := newTestDevice(t, omn, "Officer "+canary, crypto.RoleOfficer)
	ctx := context.Background()
	for _, how := range []string{"clean", "sigkill"} {
		t.Run(how, func(t *testing.T) {
			c := startChild(t, cfg)
			cl := c.client()
			sp, err := cl.SpaceCreate(ctx, api.SpaceCreateRequest{Name: "space " + canary + " " + how})
			if err != nil {
				t.Fatal(err)
			}
			rec := "record-" + canary + "-" + how
			if _, err := cl.RecordPut(ctx, api.RecordPutRequest{Space: sp.ID, Record: rec, Fields: []api.FieldValue{
				{Name: "field_" + canary, Value: "value " + canary + " أمينة"},
			}}); err != nil {
				t.Fatal(err)
			}
			if _, err := cl.NoteAdd(ctx, api.NoteAddRequest{Space: sp.ID, Record: rec, Text: "note " + canary}); err != nil {
				t.Fatal(err)
			}
			if _, err := cl.SetOp(ctx, api.SetOpRequest{Space: sp.ID, Record: rec, Field: "aliases", Op: "add", Value: "alias " + canary}); err != nil {
				t.Fatal(err)
			}
			got, err := cl.RecordGet(ctx, api.RecordRef{Space: sp.ID, Record: rec})
			if err != nil {
				t.Fatal(err)
			}
			if got.Fields["field_"+canary].Value != "value "+canary+" أمينة" {
				t.Fatalf("read back %+v", got.Fields)
			}
			if how == "clean" {
				c.stop()
			} else {
				c.kill()
			}
			scanForCanary(t, cfg.Layout.Dir, []byte(canary))
		})
	}
}

// TestCrashKeepsAcknowledgedWrites runs concurrent clients against an agent
// process that is killed with SIGKILL at random moments; after each restart
// every write the API acknowledged must be there.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	total := 10000
	if testing.Short() {
		total = 2000
	}
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	ctx := context.Background()
	c := startChild(t, cfg)
	sp, err := c.client().SpaceCreate(ctx, api.SpaceCreateRequest{Name: "crash"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	acked := map[string]string{} // "record/field" -> value
	next := 0
	rng := rand.New(rand.NewPCG(1, 2))
	kills := 0
	for len(acked) < total || kills < 3 {
		// A round: 16 clients write until the agent is killed under them.
		var wg sync.WaitGroup
		stopAt := time.Now().Add(time.Duration(200+rng.IntN(600)) * time.Millisecond)
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cl := c.client()
				for time.Now().Before(stopAt) {
					mu.Lock()
					n := next
					next++
					mu.Unlock()
					rec, field, val := fmt.Sprintf("r%03d", n%300), fmt.Sprintf("f%05d", n), fmt.Sprintf("v%d", n)
					_, err := cl.RecordPut(ctx, api.RecordPutRequest{Space: sp.ID, Record: rec, Fields: []api.FieldValue{{Name: field, Value: val}}})
					if err != nil {
						return // the agent died under us: outcome unknown
					}
					mu.Lock()
					acked[rec+"/"+field] = val
					mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Until(stopAt) - 50*time.Millisecond)
		c.kill()
		kills++
		wg.Wait()
		c = startChild(t, cfg)
		st, err := c.client().Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Missing) != 0 {
			t.Fatalf("after kill %d the store reports missing envelopes: %+v", kills, st.Missing)
		}
	}
	stopped := false
	defer func() {
		if !stopped {
			c.stop()
		}
	}()
	cl := c.client()
	records := map[string]api.Record{}
	for key, val := range acked {
		rec, field, _ := cutSlash(key)
		r, ok := records[rec]
		if !ok {
			r, err = cl.RecordGet(ctx, api.RecordRef{Space: sp.ID, Record: rec})
			if err != nil {
				t.Fatalf("record %s: %v", rec, err)
			}
			records[rec] = r
		}
		if got := r.Fields[field].Value; got != val {
			t.Fatalf("acknowledged write %s=%s lost (got %q) after %d kills", key, val, got, kills)
		}
	}
	t.Logf("%d acknowledged writes survived %d SIGKILLs", len(acked), kills)
	// The device's own log has no gap and no fork: envelopes are chained
	// under the lock and signed outside it (docs/design.md §7), and a kill
	// may fall between the two.
	c.stop()
	stopped = true
	checkOwnLog(t, openTestAgent(t, cfg), mustSpaceID(t, sp.ID))
	if kills < 3 {
		t.Fatalf("only %d kill points", kills)
	}
}

func cutSlash(s string) (string, string, bool) {
	for i := range s {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
