package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crypto"
	"fieldsync/internal/store"
)

// BenchmarkWriteStages splits one lone durable write into what it is built
// of, on one agent's store, the stages interleaved in rounds so that they
// see the same disk (docs/design.md §7, "Group commit"):
//
//   - raw: one fsynced commit of a write-sized group (5 entries of 160 bytes);
//   - committer: the same group through the group committer, as a write
//     takes it (Reserve under the lock, Fill, Wait: the writer leads);
//   - agent: PutFields without the API (build under the lock, then the
//     commit; agent − committer is the build);
//   - api: `record put` through api.Client over the Unix socket;
//   - http: the same request as a plain HTTP/1.1 exchange on one
//     connection (api − http is the client's own cost: ~30–60 µs with
//     http.Transport, about nothing since api.Client's Call does the same
//     exchange on its kept connection; go test ./agent/api -bench ClientCall).
//
// Each is reported as µs/write; b.N writes of each stage in all. Run it with
// TMPDIR on a tmpfs to take the fsync out.
func BenchmarkWriteStages(b *testing.B) {
	omn := newTestBureau(b, "OMN")
	a := openTestAgent(b, newTestDevice(b, omn, "Amina", crypto.RoleOfficer))
	runAgent(b, a)
	cl := api.NewClient(a.cfg.Layout)
	ctx := context.Background()
	sp, err := cl.SpaceCreate(ctx, api.SpaceCreateRequest{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	group := func() []store.Entry {
		es := make([]store.Entry, 5)
		for k := range es {
			v := make([]byte, 160)
			rand.Read(v)
			n++
			es[k] = store.Entry{Key: fmt.Appendf(nil, "zbench/%08d", n), Val: v}
		}
		return es
	}
	put := func(i int) api.RecordPutRequest {
		return api.RecordPutRequest{Space: sp.ID, Record: fmt.Sprintf("r%03d", i%100), Fields: []api.FieldValue{{Name: "visit_note", Value: "أمينة market حلب clinic #0042"}}}
	}
	for i := range 100 { // the records exist, as in bench/writes
		if _, err := a.PutFields(put(i)); err != nil {
			b.Fatal(err)
		}
	}
	conn, err := net.Dial("unix", a.cfg.Layout.Socket())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	stages := []struct {
		name  string
		write func(i int) error
		took  time.Duration
	}{
		{name: "raw", write: func(int) error { return a.db.kv.CommitGroups([][]store.Entry{group()})[0] }},
		{name: "committer", write: func(int) error {
			a.stateMu.Lock()
			a.writeID++
			tk := a.com.Reserve(a.gen, a.writeID)
			a.stateMu.Unlock()
			tk.Fill(group())
			return tk.Wait()
		}},
		{name: "agent", write: func(i int) error { _, err := a.PutFields(put(i)); return err }},
		{name: "api", write: func(i int) error { _, err := cl.RecordPut(ctx, put(i)); return err }},
		{name: "http", write: func(i int) error {
			body, err := json.Marshal(put(i))
			if err != nil {
				return err
			}
			req, err := http.NewRequest(http.MethodPost, "http://fieldsync"+api.PathRecordPut, bytes.NewReader(body))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			if err := req.Write(conn); err != nil {
				return err
			}
			res, err := http.ReadResponse(br, req)
			if err != nil {
				return err
			}
			defer res.Body.Close()
			if _, err := io.Copy(io.Discard, res.Body); err != nil {
				return err
			}
			if res.StatusCode != http.StatusOK {
				return fmt.Errorf("status %s", res.Status)
			}
			return nil
		}},
	}
	const rounds = 5
	b.ResetTimer()
	for r := range rounds {
		per := b.N/rounds + min(1, max(0, b.N%rounds-r))
		for s := range stages {
			start := time.Now()
			for i := range per {
				if err := stages[s].write(i); err != nil {
					b.Fatalf("%s: %v", stages[s].name, err)
				}
			}
			stages[s].took += time.Since(start)
		}
	}
	b.StopTimer()
	for _, s := range stages {
		b.ReportMetric(float64(s.took.Microseconds())/float64(b.N), s.name+"-µs/write")
	}
	b.ReportMetric(0, "ns/op") // the stages' figures are the result
}
