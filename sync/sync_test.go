package sync_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	fsync "fieldsync/sync"
	"fieldsync/sync/synctest"
)

func TestTwoNodesExchange(t *testing.T) {
	c := synctest.NewCluster(t)
	nodes := c.Start(2, synctest.Options{})
	a, b := nodes[0], nodes[1]
	if !synctest.WaitMembers(10*time.Second, a, b) {
		t.Fatal("no membership")
	}
	sp := synctest.NewSpace()
	for i := 0; i < 5; i++ {
		a.Write(sp, []byte(fmt.Sprintf("a%d", i)))
		b.Write(sp, []byte(fmt.Sprintf("b%d", i)))
	}
	synctest.WaitConverged(t, 10*time.Second, a, b)
	if got := a.Store.Count(); got != 10 {
		t.Fatalf("a holds %d envelopes, want 10", got)
	}
	h, _ := b.Store.Heads(sp)
	if h[a.Dev.ID] != 5 || h[b.Dev.ID] != 5 {
		t.Fatalf("b heads %v", h)
	}
	if a.Engine.Stats().Added == 0 || b.Engine.Stats().Added == 0 {
		t.Fatalf("nothing received: %+v / %+v", a.Engine.Stats(), b.Engine.Stats())
	}
	ps := a.Engine.Peers()
	if len(ps) != 1 || !ps[0].Authenticated || ps[0].BytesSent == 0 || ps[0].LastContact.IsZero() {
		t.Fatalf("peer status %+v", ps)
	}
	_ = context.Background
	_ = fsync.ProfileLocal
}
