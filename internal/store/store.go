// Package store is fieldsync's one door to Badger (internal/deptest checks
// that no other package imports it): an ordered key-value store tuned for a
// laptop (DB), and the group committer that writes every waiting writer's
// atomic group with one fsync (Committer). It knows nothing of envelopes,
// keys or sealing: the agent seals every value before it gets here
// (docs/storage.md; docs/design.md §7).
package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Options tune Badger for a laptop (docs/design.md §7): small memtables and caches,
// no compression (every value is sealed, so it would not compress), few
// compactors, and every commit fsynced.
type Options struct {
	Dir            string
	EncryptionKey  []byte // 32 bytes: Badger's AES encryption at rest (hides keys too)
	ValueThreshold int64  // values of this size or larger go to the value log (0 = DefaultValueThreshold)
	// ValueLogFileSize is the size at which Badger begins a new value-log
	// file (0 = DefaultValueLogFileSize); tests make it small to roll files.
	ValueLogFileSize int64

	tinyTables bool // tests: 64 KiB memtables and tables, to flush and compact early
	Logger     *slog.Logger
	ReadOnly   bool
}

// ErrNotFound is returned by Get for an absent key.
var ErrNotFound = errors.New("key not found")

// ErrLocked means another process holds the store's directory lock.
var ErrLocked = errors.New("store is in use by another process")

// ErrTooLarge means one atomic group is larger than a store transaction.
var ErrTooLarge = errors.New("too large")

// ErrStop, returned by a scan's callback, ends the scan without error.
var ErrStop = errors.New("stop scan")

// DB is one Badger database.
type DB struct {
	db *badger.DB
}

// Memory (docs/design.md §7, "Tuned for a laptop"; measured on W1-S).
// Badger's table builders hold most of its heap: a builder keeps a table's
// blocks twice (plain, then encrypted) in an allocator that starts at 2 ×
// the table size rounded up to a power of two and doubles when full;
// Badger pools up to 8 of them (hard-coded), a compaction runs several at
// once, and without jemalloc they are Go heap, doubled in RSS by GOGC.
// Values inline in the tables went through those builders at every flush
// and compaction: with W1's ~0.5–1 KiB records rewritten on every update
// and envelopes of up to 32 KiB,
// Badger's buffers were 70–90 of a 90–100 MB live heap and an agent's peak
// RSS 230–280 MB (RssAnon 155–215). So every value of DefaultValueThreshold
// bytes or more — records and envelopes, all sealed — goes to the value
// log, written once and never rebuilt by a compaction; the tables keep
// keys, pointers and the small values (heads, contexts, metadata). That
// took Badger's share off the heap (RssAnon 40–55 MB, peak RSS ~120–130
// MB) and made the delta sync cheaper. The price is garbage in the value
// log (each overwritten record), which Badger reclaims only when asked:
// the agent collects it periodically (CollectValueLogUpTo), a file of
// DefaultValueLogFileSize at a time; the file being written is never
// collected.
//
// Memtables and tables stay 3 MiB (TableSizeMultiplier 1) with six L0
// tables before a compaction: a flush and a compaction output fit one
// 8 MiB builder buffer. A memtable of 3 MiB keeps Badger's transaction
// limit (15% of it, ~460 KiB, values in the value log counting as
// pointers) well above MaxGroupBytes.
const (
	memTableSize  = 3 << 20
	baseTableSize = 3 << 20

	// DefaultValueThreshold: values of this many bytes or more go to the
	// value log.
	DefaultValueThreshold = 512
	// DefaultValueLogFileSize is the size of a value-log file. It also
	// bounds one value (Badger refuses a larger one): the agent's largest
	// values (24 MiB fields, agent.Config.MaxValueBytes) must fit.
	DefaultValueLogFileSize = 64 << 20
	// DefaultValueLogMaxEntries is how many values a value-log file holds
	// at most before Badger begins the next (Badger's default is a
	// million). It bounds what an erasure writes to begin a new file
	// (BeginValueLogFile: at most this many values of the threshold's
	// size, ~4.5 MB, against up to a whole 64 MiB file by size), and makes
	// files of 4–20 MB on records and envelopes, which collection rewrites
	// in smaller steps.
	DefaultValueLogMaxEntries = 8192
)

// Open opens (or creates) the database in o.Dir.
func Open(o Options) (*DB, error) {
	threshold := o.ValueThreshold
	if threshold == 0 {
		threshold = DefaultValueThreshold
	}
	vlogSize := o.ValueLogFileSize
	if vlogSize == 0 {
		vlogSize = DefaultValueLogFileSize
	}
	opts := badger.DefaultOptions(o.Dir).
		WithSyncWrites(true).
		WithEncryptionKey(o.EncryptionKey).
		WithIndexCacheSize(8 << 20). // required with encryption, or Badger panics
		WithBlockCacheSize(8 << 20).
		WithMemTableSize(memTableSize).
		WithNumMemtables(2).
		WithNumLevelZeroTables(6).
		WithNumLevelZeroTablesStall(8).
		WithBaseTableSize(baseTableSize).
		WithValueLogFileSize(vlogSize).
		WithValueLogMaxEntries(DefaultValueLogMaxEntries).
		WithValueThreshold(threshold).
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithCompression(options.None).
		WithMetricsEnabled(false).
		WithDetectConflicts(false). // the agent serialises its own writes
		WithChecksumVerificationMode(options.OnBlockRead).
		WithVerifyValueChecksum(true).
		WithReadOnly(o.ReadOnly).
		WithLogger(badgerLogger{o.Logger})
	opts.TableSizeMultiplier = 1 // every level's tables baseTableSize (no WithTableSizeMultiplier)
	if o.tinyTables {
		opts = opts.WithMemTableSize(64 << 10).WithBaseTableSize(64 << 10)
	}
	db, err := badger.Open(opts)
	if err != nil {
		if strings.Contains(err.Error(), "Cannot acquire directory lock") || strings.Contains(err.Error(), "resource temporarily unavailable") {
			return nil, fmt.Errorf("%w (%v)", ErrLocked, err)
		}
		return nil, err
	}
	k := &DB{db: db}
	if !o.ReadOnly {
		// A crash between BeginValueLogFile's fillers and their deletion.
		if err := k.deleteFillers(); err != nil {
			db.Close()
			return nil, err
		}
	}
	return k, nil
}

// Close closes the database.
func (k *DB) Close() error { return k.db.Close() }

// Get returns a copy of the value at key, or ErrNotFound.
func (k *DB) Get(key []byte) ([]byte, error) {
	var out []byte
	err := k.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(key)
		if err != nil {
			return err
		}
		out, err = it.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	return out, err
}

// Scan calls fn for every key with the prefix, in key order, with copies of
// key and value. fn returning ErrStop ends the scan without error.
func (k *DB) Scan(prefix []byte, fn func(key, val []byte) error) error {
	return k.ScanFrom(prefix, prefix, fn)
}

// ScanKeys is Scan without reading values.
func (k *DB) ScanKeys(prefix []byte, fn func(key []byte) error) error {
	return k.ScanKeysFrom(prefix, prefix, fn)
}

// ScanKeysFrom is ScanKeys starting at key start (≥ prefix).
func (k *DB) ScanKeysFrom(prefix, start []byte, fn func(key []byte) error) error {
	err := k.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(start); it.ValidForPrefix(prefix); it.Next() {
			if err := fn(it.Item().KeyCopy(nil)); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, ErrStop) {
		return nil
	}
	return err
}

// Entry is one key to set (or delete, when Del is true).
type Entry struct {
	Key, Val []byte
	Del      bool
}

// CommitGroups writes groups of entries, each group atomically, in order,
// packing as many whole groups into one fsynced transaction as fit (the group
// commit: one fsync for every writer waiting at that moment). It returns, for
// each group, the error of the transaction that carried it; once a
// transaction fails, every later group fails with that error too, since later
// writes may have been built on earlier ones.
func (k *DB) CommitGroups(groups [][]Entry) []error {
	errs := make([]error, len(groups))
	var pending []int // groups in the transaction being built
	var failed error
	txn := k.db.NewTransaction(true)
	commit := func() {
		if len(pending) == 0 {
			return
		}
		err := txn.Commit()
		for _, i := range pending {
			errs[i] = err
		}
		if err != nil {
			failed = err
		}
		pending = pending[:0]
		txn = k.db.NewTransaction(true)
	}
	for i, g := range groups {
		if failed != nil {
			errs[i] = failed
			continue
		}
		err := addGroup(txn, g)
		if errors.Is(err, badger.ErrTxnTooBig) && len(pending) > 0 {
			// The transaction now holds part of group i. Badger has no
			// savepoints: rebuild it with the whole groups only, commit them,
			// and give group i a transaction of its own.
			txn.Discard()
			txn = k.db.NewTransaction(true)
			for _, j := range pending {
				if err := addGroup(txn, groups[j]); err != nil {
					for _, j := range pending {
						errs[j] = err
					}
					failed, pending = err, pending[:0]
					break
				}
			}
			if failed != nil {
				errs[i] = failed
				continue
			}
			commit()
			if failed != nil {
				errs[i] = failed
				continue
			}
			err = addGroup(txn, g)
		}
		if err != nil {
			// Group i alone is too large, or Badger refused it: it fails,
			// and nothing of it may reach the disk.
			txn.Discard()
			txn = k.db.NewTransaction(true)
			for _, j := range pending { // discarded with it
				errs[j] = err
			}
			pending = pending[:0]
			if errors.Is(err, badger.ErrTxnTooBig) {
				err = fmt.Errorf("%w: one write is larger than a store transaction", ErrTooLarge)
			}
			errs[i] = err
			failed = err
			continue
		}
		pending = append(pending, i)
	}
	commit()
	txn.Discard()
	return errs
}

// MaxGroupBytes bounds the entries the agent puts in one atomic group when
// it may choose (replays, batches of waiting envelopes): far below Badger's
// transaction limit (15% of a memtable), since values over the value
// threshold count only as pointers but smaller ones count whole.
const MaxGroupBytes = 256 << 10

// Size is the bytes of keys and values of es.
func Size(es []Entry) int {
	n := 0
	for _, e := range es {
		n += len(e.Key) + len(e.Val)
	}
	return n
}

func addGroup(txn *badger.Txn, g []Entry) error {
	for _, e := range g {
		var err error
		if e.Del {
			err = txn.Delete(e.Key)
		} else {
			err = txn.SetEntry(badger.NewEntry(e.Key, e.Val))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// badgerLogger routes Badger's log lines into slog: its info lines at debug.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) log(level slog.Level, f string, a ...any) {
	if b.l != nil {
		b.l.Log(nil, level, strings.TrimSpace(fmt.Sprintf(f, a...)), "subsys", "badger")
	}
}
func (b badgerLogger) Errorf(f string, a ...any)   { b.log(slog.LevelError, f, a...) }
func (b badgerLogger) Warningf(f string, a ...any) { b.log(slog.LevelWarn, f, a...) }
func (b badgerLogger) Infof(f string, a ...any)    { b.log(slog.LevelDebug, f, a...) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.log(slog.LevelDebug-4, f, a...) }

// ScanFrom is Scan starting at key start (≥ prefix) instead of the prefix's
// first key.
func (k *DB) ScanFrom(prefix, start []byte, fn func(key, val []byte) error) error {
	err := k.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(start); it.ValidForPrefix(prefix); it.Next() {
			item := it.Item()
			val, err := item.ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("read %x: %w", item.Key(), err)
			}
			if err := fn(item.KeyCopy(nil), val); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, ErrStop) {
		return nil
	}
	return err
}

// DropPrefixes removes every version of every key under the prefixes from
// the store's files, not only from its view: Badger flushes its memtables
// without those keys (their write-ahead files are deleted after the flush)
// and rewrites every table that holds one, deleting the old table files
// (badger DB.DropPrefix). Writes are refused while it runs: the caller
// holds off its own. Values in the value log are left to CollectValueLog.
//
// Badger skips a prefix under which no live key is left (deleted keys'
// older versions then stay in the tables): the caller writes a live key
// under each prefix first.
func (k *DB) DropPrefixes(prefixes ...[]byte) error { return k.db.DropPrefix(prefixes...) }

// FlushMemtables writes the memtables out to tables (badger DB.DropPrefix
// on sentinel, a key written and dropped here: the caller picks one it
// never reads). Badger refuses writes while it runs (ErrBlockedWrites): the
// caller holds its writers back and lets nothing be in flight.
func (k *DB) FlushMemtables(sentinel []byte) error {
	if err := k.db.Update(func(txn *badger.Txn) error { return txn.Set(sentinel, []byte{0}) }); err != nil {
		return err
	}
	return k.db.DropPrefix(sentinel)
}

// Flatten rewrites the store's tables so that they hold only the newest
// version of every key (badger DB.Flatten: every level compacted into
// one): overwritten values (envelopes whose pruned segments were cut,
// docs/design.md §7 "Bounded storage") otherwise stay in the tables until
// compactions happen to merge them with their newer version. Flush the
// memtables first (FlushMemtables) for it to reach the newest writes.
// Writes go on meanwhile (Badger's other compactions wait). Values in the
// value log are left to CollectValueLog.
func (k *DB) Flatten() error { return k.db.Flatten(1) }

// fillerKey prefixes the keys of the values BeginValueLogFile writes; no
// caller's key starts with a zero byte followed by this text (the agent's
// key spaces begin with a letter, docs/storage.md).
var fillerKey = []byte("\x00store: value-log filler")

// fillerGroup is how many filler values one commit writes (well within a
// Badger transaction's count and size limits at 3 MiB memtables).
const fillerGroup = 512

// BeginValueLogFile makes Badger begin a new value-log file, so that the
// one being written until now can be collected at once (Badger never
// rewrites the file being written, and begins a new one only when a write
// takes it past DefaultValueLogMaxEntries values or its size, or at open).
// It writes the smallest values that go to the value log, in groups under
// fillerKey, until that happens — at most DefaultValueLogMaxEntries of
// them, about 4.5 MB — then deletes them: an erasure uses it so that its
// collection reaches the values it dropped without waiting for a restart
// (docs/storage.md, "Tombstones and purging"). The caller holds off its own
// writes.
func (k *DB) BeginValueLogFile() error {
	first, err := k.maxValueLogFile()
	if err != nil {
		return err
	}
	filler := make([]byte, k.db.Opts().ValueThreshold)
	limit := int(k.db.Opts().ValueLogMaxEntries)/fillerGroup + 2
	for i := 0; ; i++ {
		if fid, err := k.maxValueLogFile(); err != nil {
			return err
		} else if fid != first {
			break
		}
		if i == limit {
			return fmt.Errorf("value log: no new file after %d filler values", i*fillerGroup)
		}
		group := make([]Entry, fillerGroup)
		for j := range group {
			key := binary.BigEndian.AppendUint32(bytes.Clone(fillerKey), uint32(i*fillerGroup+j))
			group[j] = Entry{Key: key, Val: filler}
		}
		if err := k.CommitGroups([][]Entry{group})[0]; err != nil {
			return fmt.Errorf("value log filler: %w", err)
		}
	}
	return k.deleteFillers()
}

// deleteFillers deletes every filler value BeginValueLogFile wrote, in
// groups.
func (k *DB) deleteFillers() error {
	var keys [][]byte
	if err := k.ScanKeys(fillerKey, func(key []byte) error { keys = append(keys, bytes.Clone(key)); return nil }); err != nil {
		return err
	}
	for len(keys) > 0 {
		n := min(len(keys), fillerGroup)
		group := make([]Entry, n)
		for j, key := range keys[:n] {
			group[j] = Entry{Key: key, Del: true}
		}
		if err := k.CommitGroups([][]Entry{group})[0]; err != nil {
			return fmt.Errorf("value log filler: %w", err)
		}
		keys = keys[n:]
	}
	return nil
}

// maxValueLogFile is the name of the newest value-log file (the one being
// written): Badger numbers them in order (zero-padded, so a longer name is
// a larger number).
func (k *DB) maxValueLogFile() (string, error) {
	ents, err := os.ReadDir(k.db.Opts().ValueDir)
	if err != nil {
		return "", err
	}
	last := ""
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, ".vlog") && (len(n) > len(last) || len(n) == len(last) && n > last) {
			last = n
		}
	}
	return last, nil
}

// CollectValueLog rewrites value-log files with discarded data until there
// is none left to rewrite (badger RunValueLogGC with the given ratio), and
// returns how many files it rewrote. The file being written is never
// rewritten by Badger; a new one is begun at every open, so a pass after a
// restart reaches what a pass before could not.
func (k *DB) CollectValueLog(ratio float64) (int, error) {
	return k.CollectValueLogUpTo(ratio, 1<<10)
}

// CollectValueLogUpTo is CollectValueLog rewriting at most max files: the
// periodic collection bounds how long it holds the agent's writes.
func (k *DB) CollectValueLogUpTo(ratio float64, max int) (int, error) {
	n := 0
	for n < max {
		err := k.db.RunValueLogGC(ratio)
		if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// Versions calls fn with every version of every key the store's tables and
// memtables still hold — deleted and overwritten ones included, until a
// compaction drops them — with its value (empty for a deletion marker).
// It is what a reader of the files holding Badger's key would find; the
// erasure tests use it to show that an erased space's bytes are gone.
func (k *DB) Versions(fn func(key, val []byte, deleted bool) error) error {
	return k.VersionsUnder(nil, fn)
}

// VersionsUnder is Versions for the keys under prefix.
func (k *DB) VersionsUnder(prefix []byte, fn func(key, val []byte, deleted bool) error) error {
	return k.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.AllVersions = true
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.ValidForPrefix(prefix); it.Next() {
			item := it.Item()
			var val []byte
			if !item.IsDeletedOrExpired() {
				v, err := item.ValueCopy(nil)
				if err != nil {
					return fmt.Errorf("read %x: %w", item.Key(), err)
				}
				val = v
			}
			if err := fn(item.KeyCopy(nil), val, item.IsDeletedOrExpired()); err != nil {
				return err
			}
		}
		return nil
	})
}
