package agent_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/internal/harness"
)

// buildFieldsync builds the fieldsync binary for a test that runs real
// agent processes through internal/harness.
func buildFieldsync(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary and runs agent processes")
	}
	exe := filepath.Join(t.TempDir(), "fieldsync")
	out, err := exec.Command("go", "build", "-o", exe, "fieldsync/cmd/fieldsync").CombinedOutput()
	if err != nil {
		t.Fatalf("build fieldsync: %v\n%s", err, out)
	}
	return exe
}

// writers writes records continuously on every node until stop, counting
// what each acknowledged. A node being restarted is skipped (paused).
type writers struct {
	wg     sync.WaitGroup
	stop   chan struct{}
	paused sync.Map // node name -> bool
	counts map[string]*atomic.Int64
	errMu  sync.Mutex
	errs   []error
}

func startWriters(ctx context.Context, space string, nodes ...*harness.Node) *writers {
	w := &writers{stop: make(chan struct{}), counts: map[string]*atomic.Int64{}}
	for _, n := range nodes {
		cnt := &atomic.Int64{}
		w.counts[n.Name] = cnt
		w.wg.Add(1)
		go func(n *harness.Node) {
			defer w.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-w.stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				if p, _ := w.paused.Load(n.Name); p == true {
					continue
				}
				_, err := n.Client().RecordPut(ctx, api.RecordPutRequest{Space: space, Record: fmt.Sprintf("w-%s-%05d", n.Name, i),
					Fields: []api.FieldValue{{Name: "n", Value: fmt.Sprint(i)}}})
				if err != nil {
					if p, _ := w.paused.Load(n.Name); p == true {
						continue // the write raced the restart
					}
					w.errMu.Lock()
					w.errs = append(w.errs, fmt.Errorf("write on %s: %w", n.Name, err))
					w.errMu.Unlock()
					return
				}
				cnt.Add(1)
			}
		}(n)
	}
	return w
}

func (w *writers) finish(t *testing.T) {
	t.Helper()
	close(w.stop)
	w.wg.Wait()
	for _, err := range w.errs {
		t.Error(err)
	}
}

// probe writes a fresh record on each node and waits until both others
// read it: the mesh converges at this moment.
func probe(ctx context.Context, t *testing.T, space, label string, nodes ...*harness.Node) {
	t.Helper()
	for _, from := range nodes {
		rec := "probe-" + label + "-" + from.Name
		if _, err := from.Client().RecordPut(ctx, api.RecordPutRequest{Space: space, Record: rec, Fields: []api.FieldValue{{Name: "p", Value: label}}}); err != nil {
			t.Fatalf("%s: write on %s: %v", label, from.Name, err)
		}
		for _, to := range nodes {
			if to == from {
				continue
			}
			_, err := harness.WaitUntil(ctx, 90*time.Second, fmt.Sprintf("%s to read %s (%s)", to.Name, rec, label), func() (bool, error) {
				_, err := to.Client().RecordGet(ctx, api.RecordRef{Space: space, Record: rec})
				return err == nil, err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

func keyringOf(ctx context.Context, t *testing.T, cl *harness.Cluster, n *harness.Node) api.MeshKeyring {
	t.Helper()
	var kr api.MeshKeyring
	if err := cl.CLIJSON(ctx, n.Dir, &kr, "mesh-key", "list"); err != nil {
		t.Fatal(err)
	}
	return kr
}

// TestMeshKeyRotationAcrossAgents rotates the mesh key of three running
// agents (real processes) with `mesh-key add`, `use` and `remove`, one
// agent at a time, while every agent writes continuously. After every
// single change a fresh write on each agent reaches the other two; midway
// an agent restarts and comes back with the rotated keyring from its
// keystore; at the end every write converged and only the new key remains.
func TestMeshKeyRotationAcrossAgents(t *testing.T) {
	exe := buildFieldsync(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cl, err := harness.New(ctx, exe, t.TempDir(), "OMN")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.StopAll()
	var nodes []*harness.Node
	for _, name := range []string{"a", "b", "c"} {
		n, err := cl.Add(ctx, name, "Officer "+name, false)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	for i, n := range nodes {
		var join []string
		if i > 0 {
			join = []string{a.Bind}
		}
		if err := cl.Start(ctx, n, "", join...); err != nil {
			t.Fatal(err)
		}
	}
	sp, err := a.Client().SpaceCreate(ctx, api.SpaceCreateRequest{Name: "rotation"})
	if err != nil {
		t.Fatal(err)
	}
	probe(ctx, t, sp.ID, "start", a, b, c)

	oldKey := cl.MeshKey
	newKey := filepath.Join(cl.Root, "mesh2.key")
	var made struct {
		Fingerprint string `json:"fingerprint"`
	}
	if err := cl.CLIJSON(ctx, "", &made, "mesh-key", "new", "--out", newKey); err != nil {
		t.Fatal(err)
	}
	oldFP := keyringOf(ctx, t, cl, a).Keys[0].Fingerprint

	w := startWriters(ctx, sp.ID, a, b, c)
	for _, step := range []struct{ op, file string }{{"add", newKey}, {"use", newKey}, {"remove", oldKey}} {
		for _, n := range nodes {
			var kr api.MeshKeyring
			if err := cl.CLIJSON(ctx, n.Dir, &kr, "mesh-key", step.op, step.file); err != nil {
				t.Fatalf("mesh-key %s on %s: %v", step.op, n.Name, err)
			}
			if !kr.Changed {
				t.Fatalf("mesh-key %s on %s changed nothing: %+v", step.op, n.Name, kr)
			}
			probe(ctx, t, sp.ID, step.op+"-on-"+n.Name, a, b, c)
		}
		if step.op == "use" {
			// The change survives a restart: b comes back sending under the
			// new key, still accepting the old, and still converges.
			w.paused.Store(b.Name, true)
			if err := cl.Stop(b); err != nil {
				t.Fatal(err)
			}
			if err := cl.Start(ctx, b, "", a.Bind); err != nil {
				t.Fatal(err)
			}
			w.paused.Store(b.Name, false)
			kr := keyringOf(ctx, t, cl, b)
			if len(kr.Keys) != 2 || kr.Keys[0].Fingerprint != made.Fingerprint || kr.Keys[1].Fingerprint != oldFP {
				t.Fatalf("b's keyring after restart: %+v (want %s then %s)", kr, made.Fingerprint, oldFP)
			}
			probe(ctx, t, sp.ID, "restart-b", a, b, c)
		}
	}
	w.finish(t)
	if _, err := harness.WaitUntil(ctx, 2*time.Minute, "the three agents to converge", func() (bool, error) {
		return harness.Converged(ctx, sp.ID, a, b, c)
	}); err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	for name, n := range w.counts {
		if n.Load() == 0 {
			t.Errorf("no write acknowledged on %s during the rotation", name)
		}
		total += n.Load()
	}
	for _, n := range nodes {
		kr := keyringOf(ctx, t, cl, n)
		if len(kr.Keys) != 1 || kr.Keys[0].Fingerprint != made.Fingerprint || !kr.Keys[0].Primary {
			t.Fatalf("%s's keyring after the rotation: %+v", n.Name, kr)
		}
	}
	// The primary cannot be removed; an absent key cannot be used.
	if _, err := cl.CLI(ctx, a.Dir, "mesh-key", "remove", newKey); err == nil || !strings.Contains(err.Error(), "primary") {
		t.Fatalf("removing the primary: %v", err)
	}
	if _, err := cl.CLI(ctx, a.Dir, "mesh-key", "use", oldKey); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("using a removed key: %v", err)
	}
	t.Logf("%d writes acknowledged during the rotation, all converged", total)
}
