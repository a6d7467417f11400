package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crypto"
	fsync "fieldsync/sync"
)

// BenchmarkReceiptCosts measures what delivery receipts cost per 1,000
// changes received: KAZ's device K ingests 1,000 one-field changes of OMN's
// device A in sync frames of ≤ 1 MiB (as sync sends them), with the space's
// policy off, per-change and per-batch; then A ingests K's receipts. It
// prints a table and one JSON line (figures in BENCH.md style):
//
//	go test ./agent -run '^$' -bench BenchmarkReceiptCosts -benchtime 1x
func BenchmarkReceiptCosts(b *testing.B) {
	const changes = 1000
	type row struct {
		Policy        string  `json:"policy"`
		Changes       int     `json:"changes"`
		Frames        int     `json:"frames"`
		ChangeBytes   int     `json:"change_bytes"`
		Receipts      int     `json:"receipts"`
		ReceiptBytes  int     `json:"receipt_bytes"`
		IngestMS      float64 `json:"ingest_ms"`        // K: ingest the changes, write the receipts
		BackMS        float64 `json:"receipts_back_ms"` // A: ingest K's receipts
		ListMS        float64 `json:"list_ms"`          // A: `receipts SPACE`, every row verified
		ReceiptsShown int     `json:"rows_shown"`
	}
	var rows []row
	for _, policy := range []string{api.ReceiptsOff, api.ReceiptsPerChange, api.ReceiptsPerBatch} {
		b.Run(policy, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				a, k, space := receiptPair(b, policy)
				receiptSync(b, a, k) // the routing record, key shares: what precedes the changes
				for i := range changes {
					advPut(b, a, space, fmt.Sprintf("r%04d", i), fmt.Sprintf("person %d of Hama", i))
				}
				id := advSpaceID(b, space)
				var frames [][]fsync.Envelope
				var cur []fsync.Envelope
				size, changeBytes := 0, 0
				a.Envelopes(id, func(env []byte) error {
					h, _ := crypto.ParseHeader(env)
					if h.Kind == crypto.KindChange && h.Seq > k.spaces[id].heads[a.dev].Seq {
						changeBytes += len(env)
					}
					if size+len(env) > 1<<20 && len(cur) > 0 {
						frames, cur, size = append(frames, cur), nil, 0
					}
					cur = append(cur, fsync.Envelope{Space: fsync.SpaceID(h.Space), Author: fsync.PeerID(h.Author), Seq: h.Seq, Data: bytes.Clone(env)})
					size += len(env)
					return nil
				})
				frames = append(frames, cur)
				b.StartTimer()
				t0 := time.Now()
				for _, f := range frames {
					(syncAdapter{a: k}).IngestBatch(fsync.PeerID(a.dev), f)
				}
				k.com.Barrier()
				ingest := time.Since(t0)
				b.StopTimer()
				r := row{Policy: policy, Changes: changes, Frames: len(frames), ChangeBytes: changeBytes, IngestMS: float64(ingest.Microseconds()) / 1000}
				k.Envelopes(id, func(env []byte) error {
					h, _ := crypto.ParseHeader(env)
					if h.Author == k.dev && h.Kind == crypto.KindChange {
						r.Receipts++
						r.ReceiptBytes += len(env)
					}
					return nil
				})
				t1 := time.Now()
				receiptSync(b, k, a)
				r.BackMS = float64(time.Since(t1).Microseconds()) / 1000
				t2 := time.Now()
				rs, err := a.Receipts(api.ReceiptsRequest{Space: space})
				if err != nil {
					b.Fatal(err)
				}
				r.ListMS = float64(time.Since(t2).Microseconds()) / 1000
				r.ReceiptsShown = len(rs)
				rows = append(rows, r)
				a.Close()
				k.Close()
			}
		})
	}
	fmt.Fprintf(os.Stdout, "\nreceipt costs per %d changes received (one-field changes; sync frames ≤ 1 MiB)\n", changes)
	fmt.Fprintf(os.Stdout, "%-11s %7s %7s %13s %9s %14s %11s %14s %9s\n", "policy", "frames", "changes", "change bytes", "receipts", "receipt bytes", "ingest ms", "back (A) ms", "list ms")
	for _, r := range rows {
		fmt.Fprintf(os.Stdout, "%-11s %7d %7d %13d %9d %14d %11.1f %14.1f %9.1f\n", r.Policy, r.Frames, r.Changes, r.ChangeBytes, r.Receipts, r.ReceiptBytes, r.IngestMS, r.BackMS, r.ListMS)
	}
	j, _ := json.Marshal(map[string]any{"bench": "receipts", "rows": rows})
	fmt.Fprintln(os.Stdout, string(j))
}
