package sync

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"fieldsync/internal/deptest"
	"strings"
)

func TestDependencies(t *testing.T) {
	deptest.Check(t, "fieldsync/sync", func(p string) bool {
		// memberlist and its own dependencies; nothing of ours but crdt.
		return !strings.HasPrefix(p, "fieldsync/") || p == "fieldsync/crdt"
	})
}

func TestHintRoundTrip(t *testing.T) {
	h := hint{Origin: PeerID{1, 2, 3}, Counter: 42, Holder: PeerID{7}}
	b := h.encode()
	if len(b) != hintSize || len(b) > MaxHint {
		t.Fatalf("hint is %d bytes", len(b))
	}
	got, err := decodeHint(b)
	if err != nil || got != h {
		t.Fatalf("got %+v, %v", got, err)
	}
	for _, bad := range [][]byte{nil, {1}, b[:len(b)-1], append(bytes.Clone(b), 0), {2, 1}, append([]byte{1, 3}, b[2:]...)} {
		if _, err := decodeHint(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("decodeHint(%x) = %v, want ErrMalformed", bad, err)
		}
	}
	// Version 1 (older builds) names no holder: the origin holds it.
	v1 := append([]byte{gossipHint, 1}, h.Origin[:]...)
	v1 = binary.BigEndian.AppendUint64(v1, h.Counter)
	got, err = decodeHint(v1)
	if err != nil || got != (hint{Origin: h.Origin, Counter: 42, Holder: h.Origin}) {
		t.Fatalf("version 1: got %+v, %v", got, err)
	}
	if _, err := decodeHint(append(v1, 0)); !errors.Is(err, ErrMalformed) {
		t.Errorf("version 1 with a trailing byte: %v, want ErrMalformed", err)
	}
}

func TestSummaryRoundTrip(t *testing.T) {
	vs := map[SpaceID]Vector{{1}: {PeerID{9}: 5, PeerID{3}: 7}, {2}: {}}
	entries := summaryEntries(vs)
	if len(entries) != 3 || entries[0].Author != (PeerID{3}) {
		t.Fatalf("entries %+v", entries)
	}
	got, err := decodeSummary(encodeSummary(entries))
	if err != nil || len(got) != 3 || got[2] != entries[2] {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := decodeSummary([]byte{0, 0, 0, 2, 1}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short summary: %v", err)
	}
}

func TestFrameLimits(t *testing.T) {
	var buf bytes.Buffer
	fw := newFrameWriter(&buf)
	if err := fw.write(frameEnvCont, make([]byte, MaxFrame+1)); err == nil {
		t.Fatal("wrote an oversize frame")
	}
	// A header announcing more than MaxFrame is refused before reading it.
	fr := newFrameReader(bytes.NewReader([]byte{frameEnvCont, 0, 0x10, 0, 1}))
	if _, _, err := fr.next(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("oversize frame header: %v", err)
	}
	h := envHead{Seq: 1, Total: MaxEnvelope + 1}.encode()
	if _, _, err := decodeEnvHead(h); !errors.Is(err, ErrMalformed) {
		t.Fatalf("oversize envelope: %v", err)
	}
}

// FuzzDecoders: no input panics any decoder; what decodes re-encodes to the
// same bytes.
func FuzzDecoders(f *testing.F) {
	f.Add(hint{Origin: PeerID{1}, Counter: 9}.encode())
	f.Add(hello{Version: 1}.encode())
	f.Add(authMsg{Cert: []byte("c"), Sig: []byte("s")}.encode())
	f.Add(encodeSummary([]summaryEntry{{Seq: 3}}))
	f.Add(envHead{Seq: 1, Total: 3}.encode())
	f.Add(encodeError(codeAuth, "x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := decodeHint(b); err == nil && b[1] == 2 && !bytes.Equal(h.encode(), b) {
			t.Fatal("hint does not round-trip")
		}
		if h, err := decodeHello(b); err == nil && !bytes.Equal(h.encode(), b) {
			t.Fatal("hello does not round-trip")
		}
		if a, err := decodeAuth(b); err == nil && !bytes.Equal(a.encode(), b) {
			t.Fatal("auth does not round-trip")
		}
		if s, err := decodeSummary(b); err == nil && !bytes.Equal(encodeSummary(s), b) {
			t.Fatal("summary does not round-trip")
		}
		_, _, _ = decodeEnvHead(b)
		_, _, _ = decodeMeshDigest(b)
		_ = decodeError(b)
		_, _, _ = decodeMeta(b)
		fr := newFrameReader(bytes.NewReader(b))
		for i := 0; i < 4; i++ {
			if _, _, err := fr.next(); err != nil {
				break
			}
		}
	})
}

func TestConfigValidate(t *testing.T) {
	err := (&Config{}).Validate()
	for _, want := range []string{"store", "authenticator", "bind address", "mesh key"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("empty config: %v, want mention of %q", err, want)
		}
	}
	c := Config{Store: NewMemStore(nil), BindAddr: "localhost:1", MeshKeys: [][]byte{make([]byte, 5)}, Profile: "fast"}
	err = c.Validate()
	for _, want := range []string{"is not an IP", "mesh key 0", "unknown profile"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad config: %v, want mention of %q", err, want)
		}
	}
}

func TestVectorMissing(t *testing.T) {
	a, b := PeerID{1}, PeerID{2}
	v, w := Vector{a: 5, b: 2}, Vector{a: 3, b: 4}
	if v.Missing(w) != 2 || w.Missing(v) != 2 || v.Missing(v) != 0 {
		t.Fatal("Missing")
	}
	if v.Equal(w) || !v.Equal(v.Clone()) || !(Vector{a: 0}).Equal(Vector{}) {
		t.Fatal("Equal")
	}
}

func TestIDText(t *testing.T) {
	id := PeerID{0xff, 1}
	s := id.String()
	if len(s) != 26 || strings.ToLower(s) != s {
		t.Fatalf("%q", s)
	}
	got, err := ParsePeerID(s)
	if err != nil || got != id {
		t.Fatal(got, err)
	}
	if _, err := ParsePeerID("short"); err == nil {
		t.Fatal("parsed a short id")
	}
	sp, err := ParseSpaceID(SpaceID{7}.String())
	if err != nil || sp != (SpaceID{7}) {
		t.Fatal(sp, err)
	}
}
