package agent

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"fieldsync/agent/api"
	"fieldsync/crypto"
)

// BenchmarkDurableWrites compares durable local writes through the API (1
// and 32 concurrent clients, sealed and signed, group-committed) with the
// store's raw rate: Badger with SyncWrites, one transaction per ~300-byte
// value, measured in the same run. Report writes/s = 1e9 / (ns/op).
func BenchmarkDurableWrites(b *testing.B) {
	b.Run("raw-badger-1txn-per-write", func(b *testing.B) {
		db, err := badger.Open(badger.DefaultOptions(b.TempDir()).WithSyncWrites(true).WithLogger(nil).WithCompression(options.None))
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		val := make([]byte, 300)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(fmt.Sprintf("k%09d", i)), val) })
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, clients := range []int{1, 32} {
		b.Run(fmt.Sprintf("api-%d-clients", clients), func(b *testing.B) {
			omn := newTestBureau(b, "OMN")
			a := openTestAgent(b, newTestDevice(b, omn, "Amina", crypto.RoleOfficer))
			runAgent(b, a)
			cl := api.NewClient(a.cfg.Layout)
			ctx := context.Background()
			sp, err := cl.SpaceCreate(ctx, api.SpaceCreateRequest{Name: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			var n atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for c := 0; c < clients; c++ {
				wg.Add(1)
				go func(c int) {
					defer wg.Done()
					cl := api.NewClient(a.cfg.Layout) // one client each, as separate processes would have
					for {
						i := n.Add(1)
						if i > int64(b.N) {
							return
						}
						_, err := cl.RecordPut(ctx, api.RecordPutRequest{Space: sp.ID, Record: fmt.Sprintf("r%06d", i%10000), Fields: []api.FieldValue{{Name: "status_note", Value: "أمينة market حلب clinic #0042"}}})
						if err != nil {
							b.Error(err)
							return
						}
					}
				}(c)
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(a.com.Writes())/float64(max(a.com.Commits(), 1)), "writes/fsync")
		})
	}
}

// BenchmarkReads measures `record get` through the API.
func BenchmarkReads(b *testing.B) {
	omn := newTestBureau(b, "OMN")
	a := openTestAgent(b, newTestDevice(b, omn, "Amina", crypto.RoleOfficer))
	runAgent(b, a)
	cl := api.NewClient(a.cfg.Layout)
	ctx := context.Background()
	sp, _ := cl.SpaceCreate(ctx, api.SpaceCreateRequest{Name: "bench"})
	for i := 0; i < 100; i++ {
		cl.RecordPut(ctx, api.RecordPutRequest{Space: sp.ID, Record: fmt.Sprintf("r%03d", i), Fields: []api.FieldValue{{Name: "f", Value: "v"}}})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := cl.RecordGet(ctx, api.RecordRef{Space: sp.ID, Record: fmt.Sprintf("r%03d", i%100)}); err != nil {
			b.Fatal(err)
		}
	}
}
