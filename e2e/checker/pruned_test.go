package checker

import "testing"

// A history listing an op as pruned gets its value from a device holding
// it whole, and then reads the same as that device's; one held whole
// nowhere stays as it is, and is counted.
func TestRestorePruned(t *testing.T) {
	whole := `[{"author":"a","seq":1,"ops":[{"kind":"put","record":"r","field":"f","value":"v1"}]},{"author":"a","seq":2,"ops":[{"kind":"put","record":"r","field":"f","value":"v2","resolves":["a:1.0"]}]}]`
	pruned := `[{"author":"a","seq":1,"ops":[{"kind":"put","record":"r","field":"f","pruned":true}]},{"author":"a","seq":2,"ops":[{"kind":"put","record":"r","field":"f","value":"v2","resolves":["a:1.0"]}]}]`
	lone := `[{"author":"b","seq":1,"ops":[{"kind":"put","record":"q","field":"f","pruned":true}]}]`
	nodes := []Node{
		{Name: "o1", Histories: map[string][]byte{"r": []byte(whole)}},
		{Name: "o2", Histories: map[string][]byte{"r": []byte(pruned), "q": []byte(lone)}},
	}
	filled, missing := restorePruned(nodes)
	if filled != 1 || missing != 1 {
		t.Fatalf("filled %d, missing %d", filled, missing)
	}
	if !sameJSON(nodes[0].Histories["r"], nodes[1].Histories["r"]) {
		t.Fatalf("still differ:\n%s\n%s", nodes[0].Histories["r"], nodes[1].Histories["r"])
	}
	if string(nodes[1].Histories["q"]) != lone {
		t.Fatal("a history with nothing to fill changed")
	}
}
