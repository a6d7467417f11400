package agent

import (
	"context"
	"errors"
	"time"
)

// Badger's value log holds every value of store.DefaultValueThreshold bytes
// or more (records and envelopes): an overwritten record leaves its old
// value there as garbage, which no compaction removes and which Badger
// reclaims only when asked (docs/storage.md, "Value log"). The agent asks
// every valueLogGCEvery: files of which compactions have counted at least
// valueLogGCRatio discarded are rewritten, at most valueLogGCMaxFiles a
// pass (64 MiB each; rewriting one mostly discarded file took ~0.4 s on the
// development machine), so a pass holds writes for a bounded time.
const (
	valueLogGCEvery    = 5 * time.Minute
	valueLogGCRatio    = 0.5
	valueLogGCMaxFiles = 2
)

// startValueLogGC collects the value log every valueLogGCEvery until ctx
// ends or stop is called; stop waits for a pass in progress.
func (a *Agent) startValueLogGC(ctx context.Context) (stop func()) {
	return every(ctx, valueLogGCEvery, valueLogGCEvery, func() { a.gcValueLog() })
}

// every runs fn after first and then every period until ctx ends or stop
// is called; stop waits for a run in progress.
func every(ctx context.Context, first, period time.Duration, fn func()) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTimer(first)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			fn()
			t.Reset(period)
		}
	}()
	return func() { cancel(); <-done }
}

// gcValueLog runs one bounded collection pass, quiesced (state.go) as an
// erasure's collection is: Badger's collection must not overlap a write
// being applied (docs/storage.md), and it must run on a full disk too.
func (a *Agent) gcValueLog() (int, error) {
	n := 0
	err := a.quiesced(func() error {
		var err error
		n, err = a.db.kv.CollectValueLogUpTo(valueLogGCRatio, valueLogGCMaxFiles)
		return err
	})
	switch {
	case errors.Is(err, ErrClosed):
	case err != nil:
		a.log.Warn("collecting the value log", "err", err)
	case n > 0:
		a.log.Info("value log collected", "files", n)
	}
	return n, err
}
