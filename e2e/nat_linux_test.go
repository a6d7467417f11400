//go:build linux

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

// TestNATClientsThroughRelay (issue 14): two laptops, each behind its own
// NAT, and a relay in the open, as real processes in network namespaces.
// Nobody can reach the laptops; they run in client mode. Both write while
// offline, come online and converge through the relay; then one changes its
// address in the middle of a sync and resumes, with nothing received twice.
func TestNATClientsThroughRelay(t *testing.T) {
	l := requireNetlab(t)
	l.build(2)
	cl, ctx := newCluster(t)
	relay, err := cl.Add(ctx, "relay", "Relay", true)
	if err != nil {
		t.Fatal(err)
	}
	relay.Netns, relay.Bind = l.ns("relay"), "10.201.0.2:7946"
	laps := make([]*harness.Node, 2)
	for i := range laps {
		laps[i], err = cl.Add(ctx, fmt.Sprintf("lap%d", i+1), []string{"Amina", "Boris"}[i], false)
		if err != nil {
			t.Fatal(err)
		}
		laps[i].Netns = l.ns(fmt.Sprintf("lap%d", i+1))
		laps[i].Args = []string{"--client"}
	}
	if err := cl.Start(ctx, relay, ""); err != nil {
		t.Fatal(err)
	}
	for _, n := range laps {
		if err := cl.Start(ctx, n, "", relay.Bind); err != nil {
			t.Fatal(err)
		}
	}
	// The laptops really are unreachable, the relay reachable.
	if l.reachable("lap2", "192.168.1.2:22") || l.reachable("relay", "192.168.1.2:7946") {
		t.Fatal("a laptop behind NAT is reachable from outside")
	}
	if !l.reachable("lap1", relay.Bind) {
		t.Fatal("the relay is not reachable from a laptop")
	}

	// Amina opens a case; once Boris's device can read it, both go offline.
	c1, c2 := laps[0].Client(), laps[1].Client()
	sp, err := c1.SpaceCreate(ctx, api.SpaceCreateRequest{Name: "case"})
	if err != nil {
		t.Fatal(err)
	}
	put := func(c *api.Client, rec, val string) {
		t.Helper()
		if _, err := c.RecordPut(ctx, api.RecordPutRequest{Space: sp.ID, Record: rec, Fields: []api.FieldValue{{Name: "note", Value: val}}}); err != nil {
			t.Fatal(err)
		}
	}
	put(c1, "lead-0", "opened online")
	waitConverged(t, ctx, sp.ID, 60*time.Second, laps[0], laps[1], relay)

	l.uplink(1, false)
	l.uplink(2, false)
	for i := 0; i < 50; i++ {
		put(c1, fmt.Sprintf("a-%d", i), "written offline by Amina")
		put(c2, fmt.Sprintf("b-%d", i), "written offline by Boris")
	}
	put(c1, "shared", "Amina's offline version")
	put(c2, "shared", "Boris's offline version")
	l.uplink(1, true)
	l.uplink(2, true)
	took := waitConverged(t, ctx, sp.ID, 60*time.Second, laps[0], laps[1], relay)
	t.Logf("offline writes converged through the relay %v after the links came back", took.Round(time.Millisecond))
	rec, err := c2.RecordGet(ctx, api.RecordRef{Space: sp.ID, Record: "shared"})
	if err != nil {
		t.Fatal(err)
	}
	if f := rec.Fields["note"]; !f.Conflict || len(f.Siblings) != 2 {
		t.Fatalf("concurrent offline edits: want both kept as a conflict, got %+v", f)
	}

	// Amina moves from Wi-Fi to a tether while her laptop sends a batch.
	before := upstreamStreams(t, ctx, laps[0])
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 400; i++ {
			if _, err := c1.RecordPut(ctx, api.RecordPutRequest{Space: sp.ID, Record: fmt.Sprintf("m-%d", i), Fields: []api.FieldValue{{Name: "note", Value: "written while moving"}}}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	time.Sleep(300 * time.Millisecond) // part way through the batch
	l.readdress(1, 77)
	wg.Wait()
	took = waitConverged(t, ctx, sp.ID, 90*time.Second, laps[0], laps[1], relay)
	t.Logf("after the address change: converged %v after the last write", took.Round(time.Millisecond))
	if after := upstreamStreams(t, ctx, laps[0]); after <= before {
		t.Errorf("laptop opened no new stream after its address changed (%d, then %d)", before, after)
	}
	// Idle cost on a metered link: every byte on Amina's interface while
	// nothing is written, keepalives and their acknowledgements included.
	// The test runs the local profile (a keepalive a second); per hour at
	// the wan profile's one a minute that is 60 keepalive exchanges.
	const idle = 8 * time.Second
	rx0, tx0 := l.ifBytes("lap1", "eth0")
	time.Sleep(idle)
	rx1, tx1 := l.ifBytes("lap1", "eth0")
	perKeepalive := float64(rx1-rx0+tx1-tx0) / idle.Seconds()
	t.Logf("idle client: %.0f bytes on the link per keepalive exchange; at the wan profile's keepalive (1/min): %.1f KB/hour (aim < 50)",
		perKeepalive, perKeepalive*60/1000)
	if perKeepalive*60 > 50_000 {
		t.Errorf("idle client costs %.0f bytes per keepalive: over 50 KB an hour at one a minute", perKeepalive)
	}
	for _, n := range []*harness.Node{relay, laps[0], laps[1]} {
		st, err := n.Client().Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Sync == nil {
			t.Fatalf("%s: sync not running", n.Name)
		}
		if st.Sync.Duplicates != 0 {
			t.Errorf("%s received %d envelopes twice", n.Name, st.Sync.Duplicates)
		}
		t.Logf("%s: mode %s, rounds %d, bytes in %d out %d, watchers %d, upstreams %+v", n.Name, st.Sync.Mode, st.Sync.Rounds,
			st.Sync.BytesIn, st.Sync.BytesOut, st.Sync.Watchers, st.Sync.Upstreams)
	}
}

// waitConverged waits until the nodes hold the same envelopes of space
// (and the officers the same state) and returns how long that took.
func waitConverged(t *testing.T, ctx context.Context, space string, limit time.Duration, nodes ...*harness.Node) time.Duration {
	t.Helper()
	took, err := harness.WaitUntil(ctx, limit, "convergence", func() (bool, error) {
		ok, err := harness.Converged(ctx, space, nodes...)
		return ok && err == nil, nil
	})
	if err != nil {
		for _, n := range nodes {
			d, _ := n.Client().SpaceDigest(ctx, api.SpaceRef{Space: space})
			st, _ := n.Client().Status(ctx)
			if st.Sync != nil {
				t.Logf("%s: %d envelopes; sync %+v", n.Name, d.Count, *st.Sync)
			}
		}
		t.Fatal(err)
	}
	return took
}

func upstreamStreams(t *testing.T, ctx context.Context, n *harness.Node) uint64 {
	t.Helper()
	st, err := n.Client().Status(ctx)
	if err != nil || st.Sync == nil || len(st.Sync.Upstreams) == 0 {
		t.Fatalf("%s: no upstream in status (%v)", n.Name, err)
	}
	return st.Sync.Upstreams[0].Streams
}
