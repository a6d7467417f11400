package crypto

import (
	"errors"
	"testing"
)

// TestRoutingSupersedes: a routing record naming the records it replaces
// round-trips as version 2 in one canonical encoding; one naming none stays
// version 1; non-canonical lists are refused.
func TestRoutingSupersedes(t *testing.T) {
	owner := BureauPublic{Key: make([]byte, 32)}.Fingerprint()
	r := Routing{Space: SpaceID{7}, Owner: owner, SealedName: []byte("sealed"),
		Supersedes: []RoutingRef{{Author: DeviceID{2}, Seq: 9}, {Author: DeviceID{1}, Seq: 4}, {Author: DeviceID{2}, Seq: 9}}}
	b := r.Marshal()
	if b[0] != routingVersion2 {
		t.Fatalf("version %d, want 2", b[0])
	}
	got, err := ParseRouting(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Supersedes) != 2 || got.Supersedes[0] != (RoutingRef{Author: DeviceID{1}, Seq: 4}) || got.Supersedes[1] != (RoutingRef{Author: DeviceID{2}, Seq: 9}) {
		t.Fatalf("supersedes = %+v", got.Supersedes)
	}
	if string(got.Marshal()) != string(b) {
		t.Fatal("not canonical: re-encoding differs")
	}
	if v1 := (Routing{Space: SpaceID{7}, Owner: owner}).Marshal(); v1[0] != routingVersion1 {
		t.Fatalf("a record superseding nothing is version %d", v1[0])
	}
	// Swap the two refs: no longer sorted.
	bad := append([]byte(nil), b...)
	n := len(bad)
	copy(bad[n-48:n-24], b[n-24:])
	copy(bad[n-24:], b[n-48:n-24])
	if _, err := ParseRouting(bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("unsorted supersedes: %v", err)
	}
	// Version 2 with an empty list.
	empty := append(append([]byte{routingVersion2}, (Routing{Space: SpaceID{7}, Owner: owner}).Marshal()[1:]...), 0)
	if _, err := ParseRouting(empty); !errors.Is(err, ErrMalformed) {
		t.Fatalf("empty version 2 list: %v", err)
	}
}
