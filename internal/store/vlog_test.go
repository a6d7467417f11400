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

// An erasure drops a space's keys, then collects the value log; but Badger
// never rewrites the file being written, so the dropped values written
// there stayed on disk (sealed under the storage key) until a restart
// began a new file. BeginValueLogFile begins one at once: the same pass
// then rewrites the old file, and no file written before the drop
// survives, while the kept values read back.
func TestBeginValueLogFileLetsCollectionReachDroppedValues(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(Options{Dir: dir, EncryptionKey: make([]byte, 32), ValueLogFileSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	keep := bytes.Repeat([]byte("kept value "), 100)
	for i := range 50 {
		for _, err := range db.CommitGroups([][]Entry{
			{{Key: []byte(fmt.Sprintf("Ekeep%03d", i)), Val: keep}},
			{{Key: []byte(fmt.Sprintf("Egone%03d", i)), Val: bytes.Repeat([]byte("CANARY"), 200)}},
		}) {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	before := vlogNames(t, dir)
	if err := db.DropPrefixes([]byte("Egone")); err != nil {
		t.Fatal(err)
	}
	if n, err := db.CollectValueLog(1e-6); err != nil {
		t.Fatal(err)
	} else if survivors := common(before, vlogNames(t, dir)); len(survivors) > 0 {
		t.Logf("collection alone rewrote %d files; %v, written before the drop, survive", n, survivors)
	}
	if err := db.BeginValueLogFile(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CollectValueLog(1e-6); err != nil {
		t.Fatal(err)
	}
	if survivors := common(before, vlogNames(t, dir)); len(survivors) > 0 {
		t.Fatalf("value-log files %v, written before the drop, survive its collection (now %v)", survivors, vlogNames(t, dir))
	}
	for i := range 50 {
		if got, err := db.Get([]byte(fmt.Sprintf("Ekeep%03d", i))); err != nil || !bytes.Equal(got, keep) {
			t.Fatalf("kept value %d: %v", i, err)
		}
		if _, err := db.Get([]byte(fmt.Sprintf("Egone%03d", i))); err != ErrNotFound {
			t.Fatalf("dropped value %d: %v", i, err)
		}
	}
	left := 0
	db.ScanKeys(fillerKey, func([]byte) error { left++; return nil })
	if left > 0 {
		t.Fatalf("%d filler values are left", left)
	}
}

func vlogNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".vlog") {
			out = append(out, e.Name())
		}
	}
	return out
}

func common(a, b []string) []string {
	var out []string
	for _, x := range a {
		for _, y := range b {
			if x == y {
				out = append(out, x)
			}
		}
	}
	return out
}

// Filler values a crash left between BeginValueLogFile's writes and their
// deletion are deleted at the next open.
func TestFillersLeftByACrashDeletedAtOpen(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(Options{Dir: dir, EncryptionKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	var group []Entry
	for i := range 3 {
		group = append(group, Entry{Key: append(bytes.Clone(fillerKey), byte(i)), Val: make([]byte, DefaultValueThreshold)})
	}
	if err := db.CommitGroups([][]Entry{group})[0]; err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err = Open(Options{Dir: dir, EncryptionKey: make([]byte, 32)}); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	left := 0
	db.ScanKeys(fillerKey, func([]byte) error { left++; return nil })
	if left != 0 {
		t.Fatalf("%d filler values survive a reopen", left)
	}
}
