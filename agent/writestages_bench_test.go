package agent

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"

	"fieldsync/agent/api"
	"fieldsync/crypto"
	"fieldsync/internal/store"
)

// BenchmarkWriteStages splits one lone durable write into what it is built
// of, each measured on the same agent's store (docs/design.md §7, "Group
// commit"): the raw fsynced commit of a write-sized group, the same group
// through the committer, one write through the agent without the API, and
// one through the API over the Unix socket. The differences are what each
// layer adds to a lone writer's latency.
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
	group := func(i int) []store.Entry {
		es := make([]store.Entry, 5)
		for k := range es {
			v := make([]byte, 160)
			rand.Read(v)
			es[k] = store.Entry{Key: fmt.Appendf(nil, "zbench/%08d/%d", i, k), Val: v}
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
	b.Run("raw-commit", func(b *testing.B) {
		for i := range b.N {
			if err := a.db.kv.CommitGroups([][]store.Entry{group(i)})[0]; err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("committer", func(b *testing.B) {
		for i := range b.N {
			a.stateMu.Lock()
			a.writeID++
			done := a.com.Submit(group(i), a.gen, a.writeID)
			a.stateMu.Unlock()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("agent-no-api", func(b *testing.B) {
		for i := range b.N {
			if _, err := a.PutFields(put(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("api", func(b *testing.B) {
		for i := range b.N {
			if _, err := cl.RecordPut(ctx, put(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
