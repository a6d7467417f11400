package sync_test

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"testing"
	"time"

	"fieldsync/sync/synctest"
)

var meshN = flag.Int("wmesh.n", 10, "nodes in BenchmarkWMesh")

// BenchmarkIdleRound: one anti-entropy round between two nodes already in
// step (3 authors, 10,000 envelopes). Reports socket bytes per round.
func BenchmarkIdleRound(b *testing.B) {
	_, a, bb, add := idleSetup(b)
	add(10_000)
	ctx := context.Background()
	if _, err := a.Engine.SyncWith(ctx, bb.Dev.ID); err != nil {
		b.Fatal(err)
	}
	var bytes uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := a.Engine.SyncWith(ctx, bb.Dev.ID)
		if err != nil {
			b.Fatal(err)
		}
		bytes += r.BytesSent + r.BytesReceived
	}
	b.ReportMetric(float64(bytes)/float64(b.N), "bytes/round")
}

// BenchmarkWMesh (BENCH.md W-mesh, in one process): N nodes in the local
// profile; each iteration one node writes and we wait until all hold it.
// Reports median and max propagation and idle gossip per node.
func BenchmarkWMesh(b *testing.B) {
	c := synctest.NewCluster(b)
	nodes := c.Start(*meshN, synctest.Options{})
	if !synctest.WaitMembers(180*time.Second, nodes...) {
		b.Fatal("membership did not converge")
	}
	time.Sleep(500 * time.Millisecond)
	sp := synctest.NewSpace()
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w := nodes[i%len(nodes)]
		env := w.Write(sp, []byte(fmt.Sprintf("write %d", i)))
		start := time.Now()
		ok := synctest.WaitForFast(10*time.Second, func() bool {
			for _, n := range nodes {
				h, _ := n.Store.Heads(sp)
				if h[w.Dev.ID] < env.Seq {
					return false
				}
			}
			return true
		})
		if !ok {
			b.Fatalf("write %d did not reach all %d nodes in 10 s", i, len(nodes))
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")

	// Idle gossip: memberlist bytes (UDP + its streams) per node per second,
	// over 3 s with no writes (anti-entropy rounds excluded: counted apart).
	var g0, s0 uint64
	for _, n := range nodes {
		st := n.Engine.Stats()
		g0 += st.GossipBytesOut
		s0 += st.SyncBytesOut
	}
	time.Sleep(3 * time.Second)
	var g1, s1 uint64
	for _, n := range nodes {
		st := n.Engine.Stats()
		g1 += st.GossipBytesOut
		s1 += st.SyncBytesOut
	}
	per := float64(len(nodes)) * 3
	b.ReportMetric(float64(g1-g0)/per, "idle-gossip-B/s/node")
	b.ReportMetric(float64(s1-s0)/per, "idle-sync-B/s/node")
}
