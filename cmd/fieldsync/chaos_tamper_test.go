//go:build fieldsync_chaos

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	fsync "fieldsync/sync"
)

// TestTamperer: the hostile relay withholds exactly the range, every
// alteration differs from the original and is logged once sent, replays are
// older envelopes of the same author, one seed gives the same decisions,
// and within a round nothing of an author follows what the receiver will
// reject (an alteration, or the first envelope after a withheld one): the
// receiver would skip it, and the test counts each alteration sent as one
// rejection.
// Run with: go test -tags fieldsync_chaos ./cmd/fieldsync -run Tamperer
func TestTamperer(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules")
	author := fsync.PeerID{1, 2, 3}
	os.WriteFile(rules, []byte("flip 0.1\ntruncate 0.1\nsplice 0.1\nreplay 0.5\nwithhold "+author.String()+" 15 17\n"), 0o600)
	run := func(logName string) []string {
		tm := newTamperer(42, rules, filepath.Join(dir, logName))
		var got []string
		for round := 0; round < 40; round++ {
			send := tm.round()
			var sent []fsync.Envelope
			for seq := uint64(1); seq <= 20; seq++ {
				e := fsync.Envelope{Author: author, Seq: seq, Data: bytes.Repeat([]byte{byte(seq)}, 200)}
				n := len(sent)
				if err := send(e, func(o fsync.Envelope) error { sent = append(sent, o); return nil }); err != nil {
					t.Fatal(err)
				}
				if seq >= 15 && seq <= 17 && len(sent) != n {
					t.Fatalf("seq %d withheld, yet sent", seq)
				}
				for i, o := range sent[n:] {
					switch {
					case i == 0 && o.Seq != seq:
						t.Fatalf("seq %d sent as %d", seq, o.Seq)
					case i == 0 && !bytes.Equal(o.Data, e.Data):
						got = append(got, "altered")
					case i == 0:
						got = append(got, "ok")
					case o.Seq >= seq || (o.Seq >= 15 && o.Seq <= 17):
						t.Fatalf("replayed seq %d with seq %d", o.Seq, seq)
					default:
						got = append(got, "replay")
					}
				}
			}
			// Nothing after the round's first alteration, nor after the
			// first envelope past the withheld range.
			for i, o := range sent {
				altered := !bytes.Equal(o.Data, bytes.Repeat([]byte{byte(o.Seq)}, 200))
				if !altered && o.Seq <= 17 {
					continue
				}
				rest := sent[i+1:]
				if altered && len(rest) > 0 || len(rest) > 1 || len(rest) == 1 && rest[0].Seq >= o.Seq {
					t.Fatalf("round %d: %v sent after seq %d, which the receiver rejects", round, seqsOf(rest), o.Seq)
				}
				break
			}
		}
		tm.log.Close()
		return got
	}
	a, b := run("a.log"), run("b.log")
	if len(a) != len(b) {
		t.Fatalf("one seed, two decision streams: %d vs %d", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("one seed, two decision streams at %d", i)
		}
	}
	kinds := map[string]int{}
	f, _ := os.Open(filepath.Join(dir, "a.log"))
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev tamperEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		kinds[ev.Kind]++
	}
	altered := 0
	for _, g := range a {
		if g == "altered" {
			altered++
		}
	}
	if kinds["flip"]+kinds["truncate"]+kinds["splice"] != altered || altered == 0 {
		t.Fatalf("log %v, %d altered", kinds, altered)
	}
	if kinds["withhold"] != 3 || kinds["replay"] == 0 || kinds["splice"] == 0 || kinds["truncate"] == 0 {
		t.Fatalf("log %v", kinds)
	}

	// A send that fails logs nothing: the alteration never left.
	os.WriteFile(rules, []byte("flip 1\n"), 0o600)
	tm := newTamperer(42, rules, filepath.Join(dir, "c.log"))
	err := tm.round()(fsync.Envelope{Author: author, Seq: 1, Data: []byte("envelope")}, func(fsync.Envelope) error { return os.ErrClosed })
	tm.log.Close()
	if err == nil {
		t.Fatal("a failed send: want its error")
	}
	if c, _ := os.ReadFile(filepath.Join(dir, "c.log")); len(c) != 0 {
		t.Fatalf("a failed send logged %q", c)
	}
}

func seqsOf(es []fsync.Envelope) []uint64 {
	var out []uint64
	for _, e := range es {
		out = append(out, e.Seq)
	}
	return out
}

// TestJumpClock: the offset follows the file the test rewrites; a missing
// or empty file is no offset; a malformed one keeps the last.
func TestJumpClock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clock")
	j := &jumpClock{path: path}
	if j.offset() != 0 {
		t.Fatal("missing file: want no offset")
	}
	for _, tc := range []struct {
		content string
		want    time.Duration
	}{{"36h", 36 * time.Hour}, {"garbage", 36 * time.Hour}, {"-90m\n", -90 * time.Minute}, {"", 0}} {
		os.WriteFile(path, []byte(tc.content), 0o600)
		j.read = time.Time{} // as if 100 ms had passed
		if got := j.offset(); got != tc.want {
			t.Fatalf("file %q: offset %s, want %s", tc.content, got, tc.want)
		}
	}
}
