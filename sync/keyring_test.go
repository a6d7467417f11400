package sync_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	fsync "fieldsync/sync"
	"fieldsync/sync/synctest"
)

// TestMeshKeyRotationKeepsStreams rotates the mesh key of two running
// engines one step at a time. After every single step (so also while their
// primaries differ) a sync round in each direction authenticates, and a
// fresh write reaches the other node.
func TestMeshKeyRotationKeepsStreams(t *testing.T) {
	c := synctest.NewCluster(t)
	nodes := c.Start(2, synctest.Options{})
	a, b := nodes[0], nodes[1]
	if !synctest.WaitMembers(10*time.Second, a, b) {
		t.Fatal("no membership")
	}
	old := bytes.Clone(c.MeshKey)
	next := bytes.Repeat([]byte{42}, 32)
	sp := synctest.NewSpace()
	step := 0
	check := func(what string) {
		t.Helper()
		step++
		for _, pair := range [][2]*synctest.Node{{a, b}, {b, a}} {
			from, to := pair[0], pair[1]
			from.Write(sp, []byte(fmt.Sprintf("step %d %s", step, what)))
			if _, err := from.Engine.SyncWith(context.Background(), to.Dev.ID); err != nil {
				t.Fatalf("after %s: round %s -> %s: %v", what, from.Name()[:6], to.Name()[:6], err)
			}
		}
		synctest.WaitConverged(t, 10*time.Second, a, b)
	}
	steps := []struct {
		what string
		do   func(*synctest.Node) error
	}{
		{"add", func(n *synctest.Node) error { return n.Engine.AddMeshKey(next) }},
		{"use", func(n *synctest.Node) error { return n.Engine.UseMeshKey(next) }},
		{"remove", func(n *synctest.Node) error { return n.Engine.RemoveMeshKey(old) }},
	}
	for _, s := range steps {
		for _, n := range []*synctest.Node{a, b} {
			if err := s.do(n); err != nil {
				t.Fatalf("%s on %s: %v", s.what, n.Name()[:6], err)
			}
			check(s.what + " on " + n.Name()[:6])
		}
	}
	for _, n := range []*synctest.Node{a, b} {
		if ks := n.Engine.MeshKeys(); len(ks) != 1 || !bytes.Equal(ks[0], next) {
			t.Fatalf("keyring after rotation: %d keys", len(ks))
		}
	}
	// The old key is refused now: a node that holds only it fails the challenge.
	stale := c.NewNode(synctest.Options{MeshKey: old, Join: []string{}})
	if err := stale.Engine.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer stale.Engine.Close()
	if _, err := stale.Engine.SyncWithAddr(context.Background(), a.Dev.ID, a.Engine.LocalAddr()); !errors.Is(err, fsync.ErrUnauthenticated) {
		t.Fatalf("a node with the removed key: %v", err)
	}
}

// TestMeshKeyringRefusals: the primary cannot be removed, an absent key
// cannot be used or removed, a bad length cannot be added.
func TestMeshKeyringRefusals(t *testing.T) {
	c := synctest.NewCluster(t)
	a := c.NewNode(synctest.Options{Join: []string{}})
	other := bytes.Repeat([]byte{9}, 32)
	if err := a.Engine.RemoveMeshKey(c.MeshKey); !errors.Is(err, fsync.ErrMeshKeyPrimary) {
		t.Fatalf("remove primary: %v", err)
	}
	if err := a.Engine.UseMeshKey(other); !errors.Is(err, fsync.ErrMeshKeyAbsent) {
		t.Fatalf("use absent: %v", err)
	}
	if err := a.Engine.RemoveMeshKey(other); !errors.Is(err, fsync.ErrMeshKeyAbsent) {
		t.Fatalf("remove absent: %v", err)
	}
	if err := a.Engine.AddMeshKey(make([]byte, 5)); err == nil {
		t.Fatal("added a 5-byte key")
	}
	if err := a.Engine.AddMeshKey(other); err != nil {
		t.Fatal(err)
	}
	if err := a.Engine.AddMeshKey(other); err != nil || len(a.Engine.MeshKeys()) != 2 {
		t.Fatalf("adding twice: %v, %d keys", err, len(a.Engine.MeshKeys()))
	}
	if !bytes.Equal(a.Engine.MeshKeys()[0], c.MeshKey) {
		t.Fatal("add changed the primary")
	}
}
