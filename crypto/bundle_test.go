package crypto

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const bundleVector = "testdata/bundle/bundle-v1.fsb"

// testBundle writes a small bundle: a certificate, a revocation and two
// chained envelopes of alice, signed by bob.
func testBundle(t testing.TB, w *world) []byte {
	t.Helper()
	e1 := w.seal(t, KindChange, 1, [32]byte{}, []byte("first"))
	e2 := w.seal(t, KindChange, 2, Hash(e1), []byte("second"))
	rev := must(w.bureau.Revoke(w.relay.ID(), nil, 0, t0))
	var buf bytes.Buffer
	bw := must(NewBundleWriter(&buf, BundleExport, w.bob, w.bobCert, w.alice.ID(), t0))
	for _, it := range []struct {
		t ItemType
		b []byte
	}{{ItemCertificate, w.aliceCert.MarshalBinary()}, {ItemRevocation, rev.Marshal()}, {ItemEnvelope, e1}, {ItemEnvelope, e2}} {
		if err := bw.Add(it.t, it.b); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type item struct {
	t ItemType
	b []byte
}

func readBundle(data []byte, kind BundleKind) (*BundleReader, []item, error) {
	br, err := NewBundleReader(bytes.NewReader(data), kind)
	if err != nil {
		return nil, nil, err
	}
	var out []item
	for {
		t, b, err := br.Next()
		if err == io.EOF {
			return br, out, nil
		}
		if err != nil {
			return br, out, err
		}
		out = append(out, item{t, b})
	}
}

func TestBundleRoundTrip(t *testing.T) {
	w := newWorld(t)
	data := testBundle(t, w)
	br, items, err := readBundle(data, BundleExport)
	if err != nil {
		t.Fatal(err)
	}
	if !br.Sender().Device.Equal(w.bob.Public()) {
		t.Fatal("sender is not bob")
	}
	if h := br.Header(); h.Recipient != w.alice.ID() || !h.Created.Equal(t0) || h.Kind != BundleExport {
		t.Fatalf("header %+v", h)
	}
	wantTypes := []ItemType{ItemCertificate, ItemRevocation, ItemEnvelope, ItemEnvelope}
	if len(items) != len(wantTypes) {
		t.Fatalf("%d items, want %d", len(items), len(wantTypes))
	}
	for i, it := range items {
		if it.t != wantTypes[i] {
			t.Fatalf("item %d is a %s, want %s", i, it.t, wantTypes[i])
		}
	}
	if _, err := ParseCertificate(items[0].b); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Verify(items[3].b, w.alice.Public()); err != nil {
		t.Fatal(err)
	}
}

// Every single flipped byte anywhere in the file is refused, as is every
// truncation and any data appended.
func TestBundleTamper(t *testing.T) {
	w := newWorld(t)
	data := testBundle(t, w)
	for i := range data {
		bad := bytes.Clone(data)
		bad[i] ^= 0x01
		if _, _, err := readBundle(bad, BundleExport); err == nil {
			t.Fatalf("flipped byte %d of %d: accepted", i, len(data))
		} else if !errors.Is(err, ErrSignature) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("flipped byte %d: %v is neither ErrSignature nor ErrMalformed", i, err)
		}
	}
	for n := 0; n < len(data); n++ {
		if _, _, err := readBundle(data[:n], BundleExport); err == nil {
			t.Fatalf("truncated to %d bytes: accepted", n)
		}
	}
	_, _, err := readBundle(append(bytes.Clone(data), 0), BundleExport)
	wantErr(t, err, ErrMalformed, ErrInvalid)
}

// A bundle re-signed by another device than the sender it names fails.
func TestBundleWrongSigner(t *testing.T) {
	w := newWorld(t)
	if _, err := NewBundleWriter(io.Discard, BundleExport, w.alice, w.bobCert, DeviceID{}, t0); err == nil {
		t.Fatal("a writer accepted another device's certificate")
	}
	data := testBundle(t, w)
	// Swap the sender certificate for alice's (same length): the signature
	// is bob's, so it must fail.
	bob, alice := w.bobCert.MarshalBinary(), w.aliceCert.MarshalBinary()
	i := bytes.Index(data, bob)
	if i < 0 || len(bob) != len(alice) {
		t.Fatal("test setup: sender certificate not found")
	}
	bad := bytes.Clone(data)
	copy(bad[i:], alice)
	_, _, err := readBundle(bad, BundleExport)
	wantErr(t, err, ErrSignature)
}

func TestBundleKinds(t *testing.T) {
	w := newWorld(t)
	data := testBundle(t, w)
	_, err := NewBundleReader(bytes.NewReader(data), BundleWant)
	wantErr(t, err, ErrMalformed, ErrInvalid)
	bad := bytes.Clone(data)
	bad[4] = 2
	_, err = NewBundleReader(bytes.NewReader(bad), BundleExport)
	wantErr(t, err, ErrMalformed, ErrUnknownVersion)
	var buf bytes.Buffer
	bw := must(NewBundleWriter(&buf, BundleWant, w.bob, w.bobCert, DeviceID{}, t0))
	if err := bw.Add(ItemEnvelope, []byte("x")); err == nil {
		t.Fatal("a want file took an envelope")
	}
}

func TestWantRoundTrip(t *testing.T) {
	w := newWorld(t)
	want := Want{Vectors: map[SpaceID]map[DeviceID]uint64{
		w.space:   {w.alice.ID(): 7, w.bob.ID(): 3},
		{1, 2, 3}: {},
	}}
	var buf bytes.Buffer
	if err := MarshalWant(&buf, want, w.bob, w.bobCert, t1); err != nil {
		t.Fatal(err)
	}
	got, hdr, sender, err := ParseWant(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if !sender.Device.Equal(w.bob.Public()) || !hdr.Created.Equal(t1) {
		t.Fatal("sender or header differ")
	}
	if len(got.Vectors) != 2 || got.Vectors[w.space][w.alice.ID()] != 7 || got.Vectors[w.space][w.bob.ID()] != 3 || len(got.Vectors[SpaceID{1, 2, 3}]) != 0 {
		t.Fatalf("vectors %v", got.Vectors)
	}
	data := buf.Bytes()
	for i := range data {
		bad := bytes.Clone(data)
		bad[i] ^= 0x80
		if _, _, _, err := ParseWant(bytes.NewReader(bad)); err == nil {
			t.Fatalf("want file with byte %d flipped: accepted", i)
		}
	}
}

// The test vector in testdata is a bundle of format version 1: it must keep
// reading (run with -update to rewrite it after a deliberate format change).
func TestBundleVector(t *testing.T) {
	w := newWorld(t)
	if *update {
		if err := os.MkdirAll(filepath.Dir(bundleVector), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bundleVector, testBundle(t, w), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(bundleVector)
	if err != nil {
		t.Fatal(err)
	}
	br, items, err := readBundle(data, BundleExport)
	if err != nil {
		t.Fatal(err)
	}
	if !br.Sender().Device.Equal(w.bob.Public()) || len(items) != 4 || br.Header().Created != t0 {
		t.Fatalf("vector: sender %s, %d items, created %s", br.Sender().ID(), len(items), br.Header().Created)
	}
	if !bytes.Equal(data, testBundle(t, w)) {
		t.Fatal("vector: the writer no longer produces the vector's bytes")
	}
	if _, _, err := Verify(items[2].b, w.alice.Public()); err != nil {
		t.Fatal(err)
	}
}

func FuzzBundleReader(f *testing.F) {
	w := newWorld(f)
	f.Add(testBundle(f, w))
	f.Fuzz(func(t *testing.T, data []byte) {
		readBundle(data, BundleExport)
		ParseWant(bytes.NewReader(data))
	})
}

const wantVector = "testdata/bundle/want-v1.fsw"

// The want file vector: bob holds alice's log up to seq 7 in the test space.
func TestWantVector(t *testing.T) {
	w := newWorld(t)
	write := func() []byte {
		var buf bytes.Buffer
		want := Want{Vectors: map[SpaceID]map[DeviceID]uint64{w.space: {w.alice.ID(): 7}}}
		if err := MarshalWant(&buf, want, w.bob, w.bobCert, t0); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	if *update {
		if err := os.WriteFile(wantVector, write(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(wantVector)
	if err != nil {
		t.Fatal(err)
	}
	got, hdr, sender, err := ParseWant(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if !sender.Device.Equal(w.bob.Public()) || !hdr.Created.Equal(t0) || got.Vectors[w.space][w.alice.ID()] != 7 || len(got.Vectors) != 1 {
		t.Fatalf("want vector: %+v", got)
	}
	if !bytes.Equal(data, write()) {
		t.Fatal("want vector: the writer no longer produces the vector's bytes")
	}
}

// A reader refuses a bundle over any section limit at the item header that
// crosses it, before it reads that item's payload or anything after it, and
// names the limit.
func TestBundleSectionLimits(t *testing.T) {
	w := newWorld(t)
	rev := must(w.bureau.Revoke(w.relay.ID(), nil, 0, t0)).Marshal()
	cert := w.aliceCert.MarshalBinary()
	evidence := bytes.Repeat([]byte{7}, 1000)
	env := w.seal(t, KindChange, 1, [32]byte{}, []byte("x"))
	cases := []struct {
		name  string
		t     ItemType
		item  []byte
		set   func(*BundleLimits)
		count int // items written; the limit is crossed at the last
		want  string
	}{
		{"certificate count", ItemCertificate, cert, func(l *BundleLimits) { l.Certificates = 3 }, 4, "more than 3 certificates"},
		{"certificate bytes", ItemCertificate, cert, func(l *BundleLimits) { l.CertificateBytes = int64(2*len(cert) + 1) }, 3, "bytes of certificates"},
		{"revocation count", ItemRevocation, rev, func(l *BundleLimits) { l.Revocations = 1 }, 2, "more than 1 revocations"},
		{"revocation bytes", ItemRevocation, rev, func(l *BundleLimits) { l.RevocationBytes = int64(len(rev)) }, 2, "bytes of revocations"},
		{"evidence count", ItemEvidence, evidence, func(l *BundleLimits) { l.Evidence = 5 }, 6, "more than 5 pieces of fork evidence"},
		{"evidence bytes", ItemEvidence, evidence, func(l *BundleLimits) { l.EvidenceBytes = 2500 }, 3, "more than 2500 bytes of pieces of fork evidence"},
		{"envelope count", ItemEnvelope, env, func(l *BundleLimits) { l.Envelopes = 2 }, 3, "more than 2 envelopes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			bw := must(NewBundleWriter(&buf, BundleExport, w.bob, w.bobCert, DeviceID{}, t0))
			for i := 0; i < c.count; i++ {
				if err := bw.Add(c.t, c.item); err != nil {
					t.Fatal(err)
				}
			}
			// Much more after the item that crosses the limit: never read.
			for i := 0; i < 200; i++ {
				bw.Add(c.t, c.item)
			}
			if err := bw.Close(); err != nil {
				t.Fatal(err)
			}
			br, err := NewBundleReader(bytes.NewReader(buf.Bytes()), BundleExport)
			if err != nil {
				t.Fatal(err)
			}
			l := DefaultBundleLimits()
			c.set(&l)
			br.SetLimits(l)
			n := 0
			for {
				_, _, err = br.Next()
				if err != nil {
					break
				}
				n++
			}
			if !errors.Is(err, ErrBundleLimit) || !errors.Is(err, ErrOversize) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("after %d items: %v; want ErrBundleLimit naming %q", n, err, c.want)
			}
			if n != c.count-1 {
				t.Fatalf("refused after %d items, want %d", n, c.count-1)
			}
			hdr := int64(4 + 1 + 8 + 16)
			at := hdr + int64(5+len(w.bobCert.MarshalBinary())) + int64(c.count-1)*int64(5+len(c.item)) + 5
			if br.Offset() != at {
				t.Fatalf("reader at byte %d, want %d (the header of the item over the limit)", br.Offset(), at)
			}
		})
	}
	// The defaults hold a bundle under them.
	if _, _, err := readBundle(testBundle(t, w), BundleExport); err != nil {
		t.Fatal(err)
	}
}

// CheckBundleSignature accepts a bundle exactly when a full read does, in
// constant memory, and refuses a stranger's bundle that names a member as
// its sender.
func TestCheckBundleSignature(t *testing.T) {
	w := newWorld(t)
	data := testBundle(t, w)
	hdr, sender, err := CheckBundleSignature(bytes.NewReader(data), int64(len(data)), BundleExport)
	if err != nil || !sender.Device.Equal(w.bob.Public()) || hdr.Recipient != w.alice.ID() {
		t.Fatalf("intact bundle: %+v %v", hdr, err)
	}
	for i := range data {
		bad := bytes.Clone(data)
		bad[i] ^= 0x01
		if _, _, err := CheckBundleSignature(bytes.NewReader(bad), int64(len(bad)), BundleExport); err == nil {
			t.Fatalf("flipped byte %d of %d: accepted", i, len(data))
		} else if !errors.Is(err, ErrSignature) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("flipped byte %d: %v is neither ErrSignature nor ErrMalformed", i, err)
		}
	}
	for n := 0; n < len(data); n++ {
		if _, _, err := CheckBundleSignature(bytes.NewReader(data[:n]), int64(n), BundleExport); err == nil {
			t.Fatalf("truncated to %d bytes: accepted", n)
		}
		// A size that lies about the file.
		if _, _, err := CheckBundleSignature(bytes.NewReader(data), int64(n), BundleExport); err == nil {
			t.Fatalf("size %d of %d: accepted", n, len(data))
		}
	}
	long := append(bytes.Clone(data), 0)
	if _, _, err := CheckBundleSignature(bytes.NewReader(long), int64(len(long)), BundleExport); err == nil {
		t.Fatal("a byte appended: accepted")
	}
	if _, _, err := CheckBundleSignature(bytes.NewReader(long), int64(len(data)), BundleExport); err == nil {
		t.Fatal("a byte beyond the stated size: accepted")
	}
	// Alice's certificate in bob's bundle: a stranger's forgery.
	bob, alice := w.bobCert.MarshalBinary(), w.aliceCert.MarshalBinary()
	i := bytes.Index(data, bob)
	bad := bytes.Clone(data)
	copy(bad[i:], alice)
	_, _, err = CheckBundleSignature(bytes.NewReader(bad), int64(len(bad)), BundleExport)
	wantErr(t, err, ErrSignature)
}

// CheckBundleSignature's memory does not grow with the file: 64 MiB of
// items cost it no more than a small one.
func TestCheckBundleSignatureConstantMemory(t *testing.T) {
	w := newWorld(t)
	var buf bytes.Buffer
	bw := must(NewBundleWriter(&buf, BundleExport, w.bob, w.bobCert, DeviceID{}, t0))
	junk := bytes.Repeat([]byte{1}, 8<<20)
	for i := 0; i < 8; i++ {
		if err := bw.Add(ItemEvidence, junk); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	allocs := testing.AllocsPerRun(3, func() {
		if _, _, err := CheckBundleSignature(bytes.NewReader(data), int64(len(data)), BundleExport); err != nil {
			t.Fatal(err)
		}
	})
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	if _, _, err := CheckBundleSignature(bytes.NewReader(data), int64(len(data)), BundleExport); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&m1)
	if got := m1.TotalAlloc - m0.TotalAlloc; got > 2<<20 {
		t.Fatalf("checking a %d MiB bundle allocated %d KiB (%.0f allocations)", len(data)>>20, got>>10, allocs)
	}
}

// Item 8 (record-erase markers) is read back, counted and bounded; an item
// type past the last known one is refused, not indexed out of range.
func TestBundleRecordErasureItem(t *testing.T) {
	w := newWorld(t)
	e := must(NewRecordErasure(w.alice, w.space, w.nonce, w.bureau.Public().Fingerprint(), w.key, "r",
		[]SegmentRef{{Author: w.alice.ID(), Seq: 1}}, []ChunkRef{{7}}, t0))
	for _, typ := range []ItemType{ItemRecErasure, ItemRecErasure + 1} {
		var buf bytes.Buffer
		bw := must(NewBundleWriter(&buf, BundleExport, w.bob, w.bobCert, w.alice.ID(), t0))
		err := bw.Add(typ, e.Marshal())
		if typ != ItemRecErasure {
			if err == nil {
				t.Fatal("writer took an unknown item type")
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := bw.Close(); err != nil {
			t.Fatal(err)
		}
		data := buf.Bytes()
		_, items, err := readBundle(data, BundleExport)
		if err != nil || len(items) != 1 || items[0].t != ItemRecErasure || !bytes.Equal(items[0].b, e.Marshal()) {
			t.Fatalf("read back: %v %v", items, err)
		}
		// The same bundle with the item's type byte set past the last known
		// type: refused with an error (the signature would fail after; the
		// type is judged first).
		bad := bytes.Clone(data)
		i := bytes.Index(bad, e.Marshal()) - itemHeaderSize
		bad[i] = byte(ItemRecErasure + 1)
		if _, _, err := readBundle(bad, BundleExport); err == nil {
			t.Fatal("unknown item type read")
		}
	}
}
