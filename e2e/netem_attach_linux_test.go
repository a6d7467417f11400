//go:build linux

package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/internal/harness"
)

var netemAttachMiB = flag.Int("netem.attach", 50, "TestPoorLinkAttachment: size of the attached file, MiB")

// TestPoorLinkAttachment (issue 14, items 4 and 5; opt-in with -netem): lap1
// attaches a file (50 MiB by default) in client mode behind its NAT; the
// relay stores its chunks and forwards them to lap2 over lap2's poor link
// (-netem.delay, -netem.loss, -netem.rate). lap2's agent is killed twice
// during the transfer and started again. The file must open on lap2 with
// its hash, and lap2's link must carry less than 1.2× the file: every chunk
// received before a kill is kept. It reports the time and the bytes against
// the link's own limit.
func TestPoorLinkAttachment(t *testing.T) {
	if !*netemRun {
		t.Skip("the poor-link run takes many minutes: go test ./e2e -run PoorLinkAttachment -netem -v -timeout 93m (50 MiB at 256 kbit/s and 600 ms one-way took 39 min)")
	}
	size := int(*netemAttachMiB) << 20
	l, cl, ctx, relay, laps := poorLinkCluster(t)
	ca := laps[0].Client()
	space, err := ca.SpaceCreate(ctx, api.SpaceCreateRequest{Name: "photos"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.RecordPut(ctx, api.RecordPutRequest{Space: space.ID, Record: "p1", Fields: []api.FieldValue{{Name: "name", Value: "x"}}}); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, ctx, space.ID, 5*time.Minute, laps[0], laps[1], relay)

	// The file, attached while lap2's link is down: lap1 and the relay
	// exchange it over clean links; lap2 then fetches it over its poor one.
	data := make([]byte, size)
	r := mrand.New(mrand.NewPCG(7, 7))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	path := filepath.Join(t.TempDir(), "scan.bin")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	l.uplink(2, false)
	res, err := ca.RecordAttach(ctx, api.AttachRequest{Space: space.ID, Record: "p1", Field: "scan", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	cr := relay.Client()
	if _, err := harness.WaitUntil(ctx, 10*time.Minute, "the relay to hold every chunk", func() (bool, error) {
		st, err := cr.AttachStatus(ctx)
		return err == nil && st.Chunks >= res.Attachment.Chunks, nil
	}); err != nil {
		t.Fatal(err)
	}
	how := l.shape(2, *netemDelay, *netemLoss, *netemRate)
	t.Logf("lap2's link: %s; file %d MiB in %d chunks", how, size>>20, res.Attachment.Chunks)
	rx0, tx0 := l.ifBytes("lap2", "eth0")
	start := time.Now()
	l.uplink(2, true)
	cb := laps[1].Client()
	held := func() int {
		rec, err := cb.RecordGet(ctx, api.RecordRef{Space: space.ID, Record: "p1"})
		if err != nil || rec.Fields["scan"].Attachment == nil {
			return 0
		}
		return rec.Fields["scan"].Attachment.Held
	}
	for k, frac := range []int{30, 70} {
		at := res.Attachment.Chunks * frac / 100
		if _, err := harness.WaitUntil(ctx, poorLinkBudget(t), fmt.Sprintf("lap2 to hold %d chunks", at), func() (bool, error) { return held() >= at, nil }); err != nil {
			t.Fatal(err)
		}
		h := held()
		if err := cl.Kill(laps[1]); err != nil {
			t.Fatal(err)
		}
		t.Logf("kill %d: lap2 held %d of %d chunks after %v", k+1, h, res.Attachment.Chunks, time.Since(start).Round(time.Second))
		if err := cl.Start(ctx, laps[1], "", relay.Bind); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := harness.WaitUntil(ctx, poorLinkBudget(t), "lap2 to hold every chunk", func() (bool, error) { return held() == res.Attachment.Chunks, nil }); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	out := filepath.Join(t.TempDir(), "out.bin")
	o, err := cb.RecordOpen(ctx, api.OpenRequest{Space: space.ID, Record: "p1", Field: "scan", Out: out})
	if err != nil {
		t.Fatal(err)
	}
	if o.Attachment.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatal("lap2 opened another file")
	}
	rx, tx := l.ifBytes("lap2", "eth0")
	down, up := rx-rx0, tx-tx0
	rate := float64(*netemRate) * 1000 / 8
	limit := time.Duration(float64(down) / rate * float64(time.Second))
	t.Logf("%d MiB over lap2's poor link, killed twice: %v; %.2f MB down (%.3f× the file), %.2f MB up; the link's own limit for that %v (%.0f%% of the time taken)",
		size>>20, took.Round(time.Second), float64(down)/1e6, float64(down)/float64(size), float64(up)/1e6, limit.Round(time.Second), 100*limit.Seconds()/took.Seconds())
	if r := l.emuReport(2); r != "" {
		t.Log(r)
	}
	if float64(down) > 1.2*float64(size) {
		t.Fatalf("%d bytes down for a %d-byte file: chunks resent", down, size)
	}
}
