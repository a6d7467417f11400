//go:build linux

package e2e

import (
	"context"
	"flag"
	"fmt"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/bench/w1"
	"fieldsync/bench/w1agent"
	"fieldsync/internal/harness"
)

var (
	netemRun   = flag.Bool("netem", false, "run TestPoorLinkW1: W1-S's delta sync between two NATed laptops through a relay over a poor link (many minutes)")
	netemDelay = flag.Duration("netem.delay", 300*time.Millisecond, "one-way delay of each laptop's link (the round trip is twice this)")
	netemLoss  = flag.Float64("netem.loss", 5, "packet loss of each laptop's link, percent, each direction")
	netemRate  = flag.Int("netem.rate", 256, "rate of each laptop's link, kbit/s, each direction")
)

// shape makes both directions of laptop i's link poor: its egress (eth0)
// and its router's egress towards it (lan0). With netem (sch_netem) it adds
// delay, loss and rate there. Kernels without sch_netem (this sandbox's)
// get what they have: the rate from tbf and the loss from an nftables rule
// on the router (each direction), and no delay. It returns what it did.
func (l *netlab) shape(i int, delay time.Duration, lossPct float64, kbit int) string {
	lap, nat := fmt.Sprintf("lap%d", i), fmt.Sprintf("nat%d", i)
	args := []string{"netem", "delay", fmt.Sprintf("%dms", delay.Milliseconds()), "loss", fmt.Sprintf("%g%%", lossPct),
		"rate", fmt.Sprintf("%dkbit", kbit), "limit", "10000"}
	if l.try(lap, append([]string{"tc", "qdisc", "replace", "dev", "eth0", "root"}, args...)...) == nil {
		l.run(nat, append([]string{"tc", "qdisc", "replace", "dev", "lan0", "root"}, args...)...)
		return fmt.Sprintf("netem: one-way delay %v, loss %g%% and %d kbit/s each way", delay, lossPct, kbit)
	}
	tbf := []string{"tbf", "rate", fmt.Sprintf("%dkbit", kbit), "burst", "1600", "latency", "2s"}
	l.run(lap, append([]string{"tc", "qdisc", "replace", "dev", "eth0", "root"}, tbf...)...)
	l.run(nat, append([]string{"tc", "qdisc", "replace", "dev", "lan0", "root"}, tbf...)...)
	l.run(nat, "nft", fmt.Sprintf("insert rule ip filter fw_lan numgen random mod 1000 < %d drop", int(lossPct*10)))
	return fmt.Sprintf("no sch_netem in this kernel: tbf %d kbit/s each way, nftables loss %g%% each way, NO added delay (asked: %v one-way)", kbit, lossPct, delay)
}

// poorLinkCluster starts, for the poor-link runs, a relay in the open and
// two laptops in client mode, each behind its own NAT (lap1, lap2).
func poorLinkCluster(t *testing.T) (*netlab, *harness.Cluster, context.Context, *harness.Node, []*harness.Node) {
	t.Helper()
	l := requireNetlab(t)
	l.build(2)
	cl, ctx := newClusterFor(t, 58*time.Minute)
	relay, err := cl.Add(ctx, "relay", "Relay", true)
	if err != nil {
		t.Fatal(err)
	}
	relay.Netns, relay.Bind = l.ns("relay"), "10.201.0.2:7946"
	laps := make([]*harness.Node, 2)
	for i := range laps {
		if laps[i], err = cl.Add(ctx, fmt.Sprintf("lap%d", i+1), []string{"Officer A", "Officer B"}[i], false); err != nil {
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
	return l, cl, ctx, relay, laps
}

// TestPoorLinkW1 (issue 14, item 3; opt-in with -netem): W1-S on two
// laptops in client mode, each behind a NAT, through a relay in the open.
// The initial 10,000 records sync over clean links; both officers then edit
// offline (20,000 updates each); the links come back shaped by netem
// (default 600 ms round trip, 5% loss each way, 256 kbit/s each way) and the
// delta must converge, conflicts kept. It reports the time and the bytes on
// each laptop's link against the link's own limit (bytes ÷ rate).
func TestPoorLinkW1(t *testing.T) {
	if !*netemRun {
		t.Skip("the poor-link run takes many minutes: go test ./e2e -run PoorLink -netem -v -timeout 60m")
	}
	l, _, ctx, relay, laps := poorLinkCluster(t)
	w := w1.Generate(w1.SizeS)
	ca, cb := laps[0].Client(), laps[1].Client()
	space, err := ca.SpaceCreate(ctx, api.SpaceCreateRequest{Name: "w1"})
	if err != nil {
		t.Fatal(err)
	}
	err = w1agent.Parallel(len(w.Initial), func(i int) error {
		fields := make([]api.FieldValue, len(w1.Fields))
		for f, name := range w1.Fields {
			fields[f] = api.FieldValue{Name: name, Value: w.Initial[i][f]}
		}
		_, err := ca.RecordPut(ctx, api.RecordPutRequest{Space: space.ID, Record: w1.RecordID(i), Fields: fields})
		return err
	}, func(i int) int { return i })
	if err != nil {
		t.Fatal(err)
	}
	waitConverged(t, ctx, space.ID, 5*time.Minute, laps[0], laps[1], relay)

	l.uplink(1, false)
	l.uplink(2, false)
	update := func(c *api.Client, picks []w1.Pick) {
		t.Helper()
		err := w1agent.Parallel(len(picks), func(i int) error {
			p := picks[i]
			_, err := c.RecordPut(ctx, api.RecordPutRequest{Space: space.ID, Record: w1.RecordID(p.Record),
				Fields: []api.FieldValue{{Name: w1.Fields[p.Field], Value: p.Value}}})
			return err
		}, func(i int) int { return picks[i].Record*len(w1.Fields) + picks[i].Field })
		if err != nil {
			t.Fatal(err)
		}
	}
	update(ca, w.A)
	update(cb, w.B)

	var how string
	for i := 1; i <= 2; i++ {
		how = l.shape(i, *netemDelay, *netemLoss, *netemRate)
	}
	t.Logf("links: %s", how)
	type link struct{ rx, tx uint64 }
	var before [2]link
	for i := range before {
		before[i].rx, before[i].tx = l.ifBytes(fmt.Sprintf("lap%d", i+1), "eth0")
	}
	l.uplink(1, true)
	l.uplink(2, true)
	took := waitConverged(t, ctx, space.ID, 50*time.Minute, laps[0], laps[1], relay)
	rate := float64(*netemRate) * 1000 / 8 // bytes per second, each direction
	t.Logf("W1-S delta over the poor links: converged in %v", took.Round(time.Millisecond))
	for i := range before {
		rx, tx := l.ifBytes(fmt.Sprintf("lap%d", i+1), "eth0")
		up, down := tx-before[i].tx, rx-before[i].rx
		limit := time.Duration(float64(max(up, down)) / rate * float64(time.Second))
		t.Logf("lap%d link: %.2f MB up, %.2f MB down; the link's own limit for the larger direction %v (%.0f%% of the time taken)",
			i+1, float64(up)/1e6, float64(down)/1e6, limit.Round(time.Second), 100*limit.Seconds()/took.Seconds())
	}
	conflicts, err := cb.ConflictsList(ctx, api.ConflictsListRequest{Space: space.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(conflicts) != len(w.Conflicts) {
		t.Errorf("%d conflicts after the delta, want %d", len(conflicts), len(w.Conflicts))
	}
}
