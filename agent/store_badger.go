package agent

// This is the only file that imports Badger (STYLE.md). Everything above it
// sees a key-value store of sealed values: kv.

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// kvOptions tune Badger for a laptop (docs/design.md §7): small memtables and caches,
// no compression (every value is sealed, so it would not compress), few
// compactors, and every commit fsynced.
type kvOptions struct {
	Dir            string
	EncryptionKey  []byte // 32 bytes: Badger's AES encryption at rest (hides keys too)
	ValueThreshold int64  // values larger than this go to the value log (0 = default)
	Logger         *slog.Logger
	ReadOnly       bool
}

// errKVNotFound is returned by kv.get for an absent key.
var errKVNotFound = errors.New("key not found")

// errStoreLocked means another process holds the store's directory lock.
var errStoreLocked = errors.New("store is in use by another process")

// kv wraps one Badger database.
type kv struct {
	db *badger.DB
}

func openKV(o kvOptions) (*kv, error) {
	threshold := o.ValueThreshold
	if threshold == 0 {
		threshold = 32 << 10
	}
	opts := badger.DefaultOptions(o.Dir).
		WithSyncWrites(true).
		WithEncryptionKey(o.EncryptionKey).
		WithIndexCacheSize(8 << 20). // required with encryption, or Badger panics
		WithBlockCacheSize(8 << 20).
		WithMemTableSize(4 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(3).
		WithNumLevelZeroTablesStall(8).
		WithBaseTableSize(2 << 20).
		WithValueLogFileSize(64 << 20).
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
	db, err := badger.Open(opts)
	if err != nil {
		if strings.Contains(err.Error(), "Cannot acquire directory lock") || strings.Contains(err.Error(), "resource temporarily unavailable") {
			return nil, fmt.Errorf("%w (%v)", errStoreLocked, err)
		}
		return nil, err
	}
	return &kv{db: db}, nil
}

func (k *kv) close() error { return k.db.Close() }

// get returns a copy of the value at key, or errKVNotFound.
func (k *kv) get(key []byte) ([]byte, error) {
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
		return nil, errKVNotFound
	}
	return out, err
}

// scan calls fn for every key with the prefix, in key order, with copies of
// key and value. fn returning errStopScan ends the scan without error.
func (k *kv) scan(prefix []byte, fn func(key, val []byte) error) error {
	return k.scanFrom(prefix, prefix, fn)
}

// scanKeys is scan without reading values.
func (k *kv) scanKeys(prefix []byte, fn func(key []byte) error) error {
	return k.scanKeysFrom(prefix, prefix, fn)
}

// scanKeysFrom is scanKeys starting at key start (≥ prefix).
func (k *kv) scanKeysFrom(prefix, start []byte, fn func(key []byte) error) error {
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
	if errors.Is(err, errStopScan) {
		return nil
	}
	return err
}

var errStopScan = errors.New("stop scan")

// kvEntry is one key to set (or delete, when del is true).
type kvEntry struct {
	key, val []byte
	del      bool
}

// commitGroups writes groups of entries, each group atomically, in order,
// packing as many whole groups into one fsynced transaction as fit (the group
// commit: one fsync for every writer waiting at that moment). It returns, for
// each group, the error of the transaction that carried it; once a
// transaction fails, every later group fails with that error too, since later
// writes may have been built on earlier ones.
func (k *kv) commitGroups(groups [][]kvEntry) []error {
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
				err = fmt.Errorf("%w: one write is larger than a store transaction", errTooLarge)
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

// maxGroupBytes bounds the entries the agent puts in one atomic group when
// it may choose (replays, batches of waiting envelopes): far below Badger's
// transaction limit (15% of a memtable), since values over the value
// threshold count only as pointers but smaller ones count whole.
const maxGroupBytes = 256 << 10

func entriesSize(es []kvEntry) int {
	n := 0
	for _, e := range es {
		n += len(e.key) + len(e.val)
	}
	return n
}

// errTooLarge means a request, value or change exceeds a limit.
var errTooLarge = errors.New("too large")

func addGroup(txn *badger.Txn, g []kvEntry) error {
	for _, e := range g {
		var err error
		if e.del {
			err = txn.Delete(e.key)
		} else {
			err = txn.SetEntry(badger.NewEntry(e.key, e.val))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// size reports the bytes Badger holds on disk (LSM, value log).
func (k *kv) size() (int64, int64) { return k.db.Size() }

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

// scanFrom is scan starting at key start (≥ prefix) instead of the prefix's
// first key.
func (k *kv) scanFrom(prefix, start []byte, fn func(key, val []byte) error) error {
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
	if errors.Is(err, errStopScan) {
		return nil
	}
	return err
}
