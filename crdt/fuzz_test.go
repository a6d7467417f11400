package crdt_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"fieldsync/crdt"
	"fieldsync/crdt/crdttest"

	"pgregory.net/rapid"
)

var updateCorpus = flag.Bool("crdt.update-corpus", false, "rewrite the fuzz seed corpora in testdata/fuzz")

// fuzzSpace is a small state that decoded changes are applied to.
func fuzzSpace() *crdt.Space {
	s := crdt.NewSpace()
	var a crdt.ReplicaID
	a[0] = 1
	s.Apply(&crdt.Change{Author: a, Seq: 1, HLC: crdt.Timestamp{Wall: 1}, Ops: []crdt.Op{
		crdt.NewPut("r", "f", []byte("v")), crdt.NoteAdd("r", "n"),
		{Kind: crdt.OpSetAdd, Record: "r", Field: "s", Value: []byte("e")}}})
	return s
}

func FuzzUnmarshalChange(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := crdt.UnmarshalChange(b)
		if err != nil {
			return
		}
		out, err := c.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded change does not encode: %v", err)
		}
		if b[0] == 1 {
			// A version-1 change (no dependencies) re-encodes as version 2,
			// with the same content.
			c2, err := crdt.UnmarshalChange(out)
			if err != nil || !reflect.DeepEqual(c, c2) {
				t.Fatalf("a version-1 change does not survive re-encoding: %v", err)
			}
		} else if !bytes.Equal(out, b) {
			t.Fatalf("decode/encode is not the identity")
		}
		s := fuzzSpace()
		if err := s.Apply(c); err != nil {
			t.Fatalf("decoded change does not apply: %v", err)
		}
		if _, err := s.MarshalBinary(); err != nil {
			t.Fatal(err)
		}
		for _, r := range s.Records {
			r.Registers()
			r.Conflicts()
			r.Notes()
			r.Sets()
		}
	})
}

func FuzzUnmarshalRecord(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := crdt.UnmarshalRecord(b)
		if err != nil {
			return
		}
		out, _ := r.MarshalBinary()
		if !bytes.Equal(out, b) {
			t.Fatalf("decode/encode is not the identity")
		}
		r.Registers()
		r.Conflicts()
		r.Notes()
		r.Sets()
		r.Delete()
	})
}

func FuzzUnmarshalContext(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := crdt.UnmarshalContext(b)
		if err != nil {
			return
		}
		out, _ := c.MarshalBinary()
		if !bytes.Equal(out, b) {
			t.Fatalf("decode/encode is not the identity")
		}
		c.Vector()
	})
}

func FuzzUnmarshalSpace(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := crdt.UnmarshalSpace(b)
		if err != nil {
			return
		}
		out, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		s2, err := crdt.UnmarshalSpace(out)
		if err != nil {
			t.Fatalf("re-encoded space does not decode: %v", err)
		}
		if !bytes.Equal(s.AppendCanonical(nil), s2.AppendCanonical(nil)) {
			t.Fatal("space round trip changed the state")
		}
		crdt.Merge(s, fuzzSpace())
	})
}

func FuzzDecodeChanges(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		chs, err := crdt.DecodeChanges(b)
		// The streaming decoder agrees: same verdict, same changes, none
		// handed out from a refused batch.
		var streamed [][]byte
		serr := crdt.DecodeChangesFunc(b, func(c *crdt.Change) error {
			enc, err := c.MarshalBinary()
			streamed = append(streamed, enc)
			return err
		})
		if (err != nil) != (serr != nil) || err != nil && len(streamed) > 0 {
			t.Fatalf("DecodeChanges: %v; DecodeChangesFunc: %v after %d changes", err, serr, len(streamed))
		}
		if err != nil {
			return
		}
		encs := make([][]byte, len(chs))
		for i, c := range chs {
			enc, err := c.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, streamed[i]) {
				t.Fatalf("change %d: streamed differently", i)
			}
			encs[i] = enc
		}
		// Transcoding the changes' own encodings gives the same batch.
		plain, err := crdt.EncodeChanges(chs, false)
		if err != nil {
			t.Fatal(err)
		}
		if tr, err := crdt.TranscodeChanges(encs, crdt.NoCompression); err != nil || !bytes.Equal(tr, plain) {
			t.Fatalf("transcoded batch differs (%v)", err)
		}
		out, err := crdt.EncodeChanges(chs, b[1] == 1)
		if err != nil {
			t.Fatal(err)
		}
		if b[1] == 0 && !bytes.Equal(out, b) {
			t.Fatal("decode/encode is not the identity")
		}
		s := fuzzSpace()
		for _, c := range chs {
			if err := s.Apply(c); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/* from a random history
// when run with -crdt.update-corpus; otherwise it checks that the corpora
// exist.
func TestWriteFuzzCorpus(t *testing.T) {
	names := []string{"FuzzUnmarshalChange", "FuzzUnmarshalRecord", "FuzzUnmarshalContext", "FuzzUnmarshalSpace", "FuzzDecodeChanges"}
	if !*updateCorpus {
		for _, n := range names {
			ents, err := os.ReadDir(filepath.Join("testdata", "fuzz", n))
			if err != nil || len(ents) == 0 {
				t.Errorf("no seed corpus for %s (run with -crdt.update-corpus)", n)
			}
		}
		return
	}
	seeds := map[string][][]byte{}
	rapid.Check(t, func(rt *rapid.T) {
		sim := crdttest.NewSim(crdttest.DefaultConfig(3))
		for k := 0; k < 30; k++ {
			sim.Step(rt)
		}
		var chs []*crdt.Change
		for _, ev := range sim.History {
			chs = append(chs, ev.Change)
			if len(seeds["FuzzUnmarshalChange"]) < 40 {
				b, _ := ev.Change.MarshalBinary()
				seeds["FuzzUnmarshalChange"] = append(seeds["FuzzUnmarshalChange"], b)
			}
		}
		r := sim.Replicas[0]
		for _, rec := range r.Space.Records {
			if len(seeds["FuzzUnmarshalRecord"]) < 20 {
				b, _ := rec.MarshalBinary()
				seeds["FuzzUnmarshalRecord"] = append(seeds["FuzzUnmarshalRecord"], b)
			}
		}
		if len(seeds["FuzzUnmarshalContext"]) < 10 {
			b, _ := r.Space.Context.MarshalBinary()
			seeds["FuzzUnmarshalContext"] = append(seeds["FuzzUnmarshalContext"], b)
			b, _ = r.Space.MarshalBinary()
			seeds["FuzzUnmarshalSpace"] = append(seeds["FuzzUnmarshalSpace"], b)
			for _, z := range []bool{false, true} {
				b, _ = crdt.EncodeChanges(chs, z)
				seeds["FuzzDecodeChanges"] = append(seeds["FuzzDecodeChanges"], b)
			}
		}
	})
	for _, n := range names {
		dir := filepath.Join("testdata", "fuzz", n)
		os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, b := range seeds[n] {
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%03d", i)), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
