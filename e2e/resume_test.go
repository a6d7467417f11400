package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/internal/harness"
)

func newCluster(t *testing.T) (*harness.Cluster, context.Context) {
	return newClusterFor(t, 5*time.Minute)
}

// newClusterFor is newCluster with a bound on the whole test other than 5 min.
func newClusterFor(t *testing.T, limit time.Duration) (*harness.Cluster, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	t.Cleanup(cancel)
	cl, err := harness.New(ctx, binary, t.TempDir(), "OMN")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.StopAll)
	return cl, ctx
}

// TestKilledMidSyncResumes: an agent killed with SIGKILL while it catches up
// restarts, resumes from what it stored, and converges with nothing applied
// twice (same envelope set and state digest as its peer).
func TestKilledMidSyncResumes(t *testing.T) {
	cl, ctx := newCluster(t)
	a, err := cl.Add(ctx, "a", "Amina", false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cl.Add(ctx, "b", "Boris", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Start(ctx, a, ""); err != nil {
		t.Fatal(err)
	}
	ca := a.Client()
	sp, err := ca.SpaceCreate(ctx, api.SpaceCreateRequest{Name: "case"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				if _, err := ca.RecordPut(ctx, api.RecordPutRequest{Space: sp.ID, Record: fmt.Sprintf("r%04d", i), Fields: []api.FieldValue{{Name: "f", Value: fmt.Sprint(i)}}}); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if err := cl.Start(ctx, b, "", a.Bind); err != nil {
		t.Fatal(err)
	}
	// Kill B once it holds some of the space but not all of it.
	total, _ := ca.SpaceDigest(ctx, api.SpaceRef{Space: sp.ID})
	var partial int
	if _, err := harness.WaitUntil(ctx, time.Minute, "b to be part way", func() (bool, error) {
		d, err := b.Client().SpaceDigest(ctx, api.SpaceRef{Space: sp.ID})
		if err != nil {
			return false, nil
		}
		partial = d.Count
		return d.Count > 0, nil
	}); err != nil {
		t.Fatal(err)
	}
	cl.Kill(b)
	t.Logf("killed b holding %d of %d envelopes", partial, total.Count)
	if err := cl.Start(ctx, b, "", a.Bind); err != nil {
		t.Fatal(err)
	}
	if _, err := harness.WaitUntil(ctx, 2*time.Minute, "b to converge", func() (bool, error) {
		return harness.Converged(ctx, sp.ID, a, b)
	}); err != nil {
		t.Fatal(err)
	}
	// Converged compares the envelope-set hashes; the counts say the same
	// in numbers (A wrote B's key share after B first joined).
	da, _ := ca.SpaceDigest(ctx, api.SpaceRef{Space: sp.ID})
	db, _ := b.Client().SpaceDigest(ctx, api.SpaceRef{Space: sp.ID})
	if db.Count != da.Count || db.Count < total.Count {
		t.Fatalf("b holds %d envelopes, a %d (before b joined: %d)", db.Count, da.Count, total.Count)
	}
	r, err := b.Client().RecordGet(ctx, api.RecordRef{Space: sp.ID, Record: fmt.Sprintf("r%04d", n-1)})
	if err != nil || r.Fields["f"].Value != fmt.Sprint(n-1) {
		t.Fatalf("b's record: %v %+v", err, r.Fields)
	}
}
