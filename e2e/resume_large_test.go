package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/internal/harness"
)

// TestKilledMidLargeValueResumes: a 20 MiB register value goes to b in
// parts (the writer's session budget is 4 MiB a round, docs/sync.md
// "Resumable envelopes"); b is killed with SIGKILL once it holds 8 MiB or
// more of it, and restarted: the prefix it kept on disk is not sent again,
// so the writer sends about the value once in all. Without the prefix on
// disk the writer would send the 8+ MiB again (≥ 1.4× the value).
func TestKilledMidLargeValueResumes(t *testing.T) {
	const size = 20 << 20
	cl, ctx := newCluster(t)
	a, err := cl.Add(ctx, "a", "Amina", false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cl.Add(ctx, "b", "Boris", false)
	if err != nil {
		t.Fatal(err)
	}
	a.Args = []string{"--budget-session", "4MiB"}
	if err := cl.Start(ctx, a, ""); err != nil {
		t.Fatal(err)
	}
	ca := a.Client()
	sp, err := ca.SpaceCreate(ctx, api.SpaceCreateRequest{Name: "case"})
	if err != nil {
		t.Fatal(err)
	}
	v := make([]byte, size)
	_, _ = rand.Read(v)
	if _, err := ca.RecordPut(ctx, api.RecordPutRequest{Space: sp.ID, Record: "big", Fields: []api.FieldValue{{Name: "scan", ValueBase64: base64.StdEncoding.EncodeToString(v)}}}); err != nil {
		t.Fatal(err)
	}
	if err := cl.Start(ctx, b, "", a.Bind); err != nil {
		t.Fatal(err)
	}
	var held uint64
	if _, err := harness.WaitUntil(ctx, 2*time.Minute, "b to hold 8 MiB of the value", func() (bool, error) {
		st, err := b.Client().Status(ctx)
		if err != nil || st.PartialEnvelopes == nil {
			return false, nil
		}
		held = st.PartialEnvelopes.HeldBytes
		return held >= 8<<20, nil
	}); err != nil {
		t.Fatal(err)
	}
	cl.Kill(b)
	if err := cl.Start(ctx, b, "", a.Bind); err != nil {
		t.Fatal(err)
	}
	if _, err := harness.WaitUntil(ctx, 2*time.Minute, "b to hold the value", func() (bool, error) {
		r, err := b.Client().RecordGet(ctx, api.RecordRef{Space: sp.ID, Record: "big"})
		if err != nil || len(r.Fields["scan"].Siblings) != 1 {
			return false, nil
		}
		got, err := base64.StdEncoding.DecodeString(r.Fields["scan"].Siblings[0].ValueBase64)
		return err == nil && bytes.Equal(got, v), nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := harness.WaitUntil(ctx, time.Minute, "a and b to converge", func() (bool, error) {
		return harness.Converged(ctx, sp.ID, a, b)
	}); err != nil {
		t.Fatal(err)
	}
	sa, err := ca.Status(ctx)
	if err != nil || sa.Sync == nil || sa.PartialEnvelopes == nil {
		t.Fatalf("a's status: %v", err)
	}
	t.Logf("b killed holding %d bytes; a sent %d sync bytes in all (%.2fx the value), resumed %d sends skipping %d bytes",
		held, sa.Sync.BytesOut, float64(sa.Sync.BytesOut)/size, sa.PartialEnvelopes.Resumed, sa.PartialEnvelopes.BytesSkipped)
	if sa.Sync.BytesOut > size*12/10 {
		t.Fatalf("a sent %d bytes for a %d-byte value: b's prefix was sent again", sa.Sync.BytesOut, size)
	}
	if sb, err := b.Client().Status(ctx); err != nil || sb.PartialEnvelopes == nil || sb.PartialEnvelopes.Held != 0 {
		t.Fatalf("b still holds partial envelopes: %v %+v", err, sb.PartialEnvelopes)
	}
}
