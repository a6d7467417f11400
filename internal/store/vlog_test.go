package store

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// vlogBytes is the size of the value-log files in dir.
func vlogBytes(t *testing.T, dir string) int64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".vlog") {
			fi, err := os.Stat(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			n += fi.Size()
		}
	}
	return n
}

// Values at or above the threshold (records, envelopes) live in the value
// log, where every overwrite leaves the old value behind as garbage that no
// compaction removes: only a collection does. Here 30 rounds of overwrites
// of 300 records of ~1 KiB leave ~9 MiB of value log for ~290 KiB of live
// values; one collection pass (after a compaction has counted the
// discarded versions) brings it down, and every record still reads back
// as its last value.
func TestValueLogOverwritesCollected(t *testing.T) {
	dir := t.TempDir()
	open := func() *DB {
		db, err := Open(Options{Dir: dir, EncryptionKey: make([]byte, 32), ValueLogFileSize: 1 << 20, tinyTables: true})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	db := open()
	const records, rounds = 300, 30
	val := func(i, r int) []byte {
		return bytes.Repeat([]byte(fmt.Sprintf("record %d round %d;", i, r)), 1024/20)
	}
	for r := range rounds {
		var g [][]Entry
		for i := range records {
			g = append(g, []Entry{{Key: []byte(fmt.Sprintf("R%04d", i)), Val: val(i, r)}})
		}
		for _, err := range db.CommitGroups(g) {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	// A new value-log file is begun at every open: the ones written
	// before become collectable. Compactions (tiny tables: many, as in a
	// store that has lived) count what they discard.
	db.Close()
	db = open()
	defer func() { db.Close() }()
	if err := db.db.Flatten(2); err != nil {
		t.Fatal(err)
	}
	live := int64(records * len(val(0, 0)))
	before := vlogBytes(t, dir)
	if before < 10*live {
		t.Fatalf("value log %d bytes for %d live: the overwrites did not reach it (value threshold?)", before, live)
	}
	n, err := db.CollectValueLogUpTo(0.5, 100)
	if err != nil {
		t.Fatal(err)
	}
	after := vlogBytes(t, dir)
	t.Logf("value log %d → %d bytes (%d files rewritten) for %d live", before, after, n, live)
	if n == 0 || after > before/4 {
		t.Fatalf("collection rewrote %d files: value log %d → %d bytes", n, before, after)
	}
	for i := range records {
		got, err := db.Get([]byte(fmt.Sprintf("R%04d", i)))
		if err != nil || !bytes.Equal(got, val(i, rounds-1)) {
			t.Fatalf("record %d after collection: %q, %v", i, got, err)
		}
	}
}
