package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"fieldsync/agent/api"
	"fieldsync/crypto"
	"fieldsync/internal/datadir"
)

// freeTCPAddr returns a 127.0.0.1 address whose port was free a moment ago.
func freeTCPAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// parseMetrics parses a text exposition into metric families.
func parseMetrics(t *testing.T, text string) map[string]*dtoFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("metrics do not parse: %v\n%s", err, text)
	}
	out := map[string]*dtoFamily{}
	for name, mf := range mfs {
		f := &dtoFamily{}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
			f.samples = append(f.samples, dtoSample{labels, v})
		}
		out[name] = f
	}
	return out
}

type dtoFamily struct{ samples []dtoSample }
type dtoSample struct {
	labels map[string]string
	value  float64
}

// sum adds the family's samples whose labels include want.
func (f *dtoFamily) sum(want map[string]string) float64 {
	if f == nil {
		return 0
	}
	var s float64
	for _, x := range f.samples {
		ok := true
		for k, v := range want {
			ok = ok && x.labels[k] == v
		}
		if ok {
			s += x.value
		}
	}
	return s
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("scrape: HTTP %d, %v: %s", res.StatusCode, err, b)
	}
	return string(b)
}

// TestMetricsDuringSync: two agents in sync; the one with MetricsAddr serves
// counts of envelopes stored, sent and received and of rounds, Go runtime
// metrics, and none of the case data (space name, record ID, field, value,
// officer names) it holds. The local API's copy and the recent logs are
// free of it too.
func TestMetricsDuringSync(t *testing.T) {
	const canary = "zqcanary"
	omn := newTestBureau(t, "OMN")
	cfgA := newTestDevice(t, omn, canary+"-officer-a", crypto.RoleOfficer)
	cfgB := newTestDevice(t, omn, canary+"-officer-b", crypto.RoleOfficer)
	ks, _ := datadir.LoadKeystore(cfgA.Layout, cfgA.Unlock)
	cfgA.MeshKey, cfgB.MeshKey = ks.MeshKey, ks.MeshKey
	cfgA.MetricsAddr = freeTCPAddr(t)
	var logBuf bytes.Buffer
	cfgA.Logger = slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelError}))
	a := startSyncAgent(t, cfgA)
	sp, err := a.CreateSpace(canary+"-space", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		rec := api.RecordPutRequest{Space: sp.ID, Record: fmt.Sprintf("%s-record-%d", canary, i),
			Fields: []api.FieldValue{{Name: canary + "-field", Value: canary + "-value"}}}
		if _, err := a.PutFields(rec); err != nil {
			t.Fatal(err)
		}
	}
	cfgB.Join = []string{a.SyncAddr()}
	b := startSyncAgent(t, cfgB)
	waitFor(t, "b to hold a's records", func() bool {
		r, err := b.GetRecord(api.RecordRef{Space: sp.ID, Record: canary + "-record-2"})
		return err == nil && r.Fields[canary+"-field"].Value == canary+"-value"
	})
	if _, err := b.PutFields(api.RecordPutRequest{Space: sp.ID, Record: canary + "-record-b", Fields: []api.FieldValue{{Name: canary + "-field", Value: canary + "-b"}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a to get b's record", func() bool {
		_, err := a.GetRecord(api.RecordRef{Space: sp.ID, Record: canary + "-record-b"})
		return err == nil
	})

	var text string
	waitFor(t, "metrics to show sent, received and stored envelopes and a round", func() bool {
		text = scrape(t, cfgA.MetricsAddr)
		m := parseMetrics(t, text)
		return m["fieldsync_envelopes_sent_total"].sum(nil) > 0 &&
			m["fieldsync_envelopes_received_total"].sum(nil) > 0 &&
			m["fieldsync_envelopes_stored_total"].sum(nil) > 0 &&
			m["fieldsync_sync_rounds_total"].sum(map[string]string{"result": "ok"}) > 0 &&
			m["fieldsync_sync_round_duration_seconds"].sum(map[string]string{"result": "ok"}) > 0
	})
	m := parseMetrics(t, text)
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "fieldsync_build_info",
		"fieldsync_peers", "fieldsync_sync_bytes_total", "fieldsync_unsynced_local_writes", "fieldsync_open_conflicts",
		"fieldsync_store_disk_bytes", "fieldsync_log_envelopes", "fieldsync_gaps", "fieldsync_forks", "fieldsync_skewed_authors",
		"fieldsync_pending_envelopes", "fieldsync_spaces"} {
		if m[name] == nil {
			t.Errorf("metric %s missing", name)
		}
	}
	if got := m["fieldsync_peers"].sum(map[string]string{"state": "alive"}) + m["fieldsync_peers"].sum(map[string]string{"state": "suspect"}); got != 1 {
		t.Errorf("live peers: %v, want 1", got)
	}
	if !strings.Contains(text, `fieldsync_peer_pending_envelopes{direction="out",peer="`+b.dev.String()+`"}`) {
		t.Errorf("no per-peer pending series for the peer %s", b.dev)
	}
	if got := m["fieldsync_log_envelopes"].sum(map[string]string{"origin": "own"}); got < 3 {
		t.Errorf("own log envelopes: %v, want at least 3", got)
	}
	if m["fieldsync_store_disk_bytes"].sum(nil) <= 0 {
		t.Error("store disk bytes is 0")
	}
	if strings.Contains(strings.ToLower(text), canary) {
		t.Fatalf("metrics carry case data (%q):\n%s", canary, text)
	}

	// A line quoting a space's name (which no log should) reaches the ring
	// but is served redacted.
	a.log.Warn("test line", "err", "cannot do it for "+canary+"-space now")
	// The local API's copy, and the recent logs.
	cl := api.NewClient(cfgA.Layout)
	snap, err := cl.Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(snap.Text, "fieldsync_envelopes_sent_total") || !strings.HasPrefix(snap.Format, "text/plain") {
		t.Fatalf("socket metrics: format %q, text %.200q", snap.Format, snap.Text)
	}
	if strings.Contains(strings.ToLower(snap.Text), canary) {
		t.Fatal("socket metrics carry case data")
	}
	logs, err := cl.Logs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) == 0 {
		t.Fatal("no recent logs although the agent logged at info level (the logger's own level is error)")
	}
	redacted := false
	for _, l := range logs {
		if s := fmt.Sprint(l); strings.Contains(strings.ToLower(s), canary) {
			t.Fatalf("recent log carries case data: %s", s)
		}
		redacted = redacted || l.Message == "test line" && l.Attrs["err"] == "cannot do it for "+redactedText+" now"
	}
	if !redacted {
		t.Fatalf("the test line is not in the recent logs, redacted: %+v", logs)
	}
	if logBuf.Len() != 0 && strings.Contains(logBuf.String(), "level=INFO") {
		t.Fatalf("the inner handler got records below its level: %s", logBuf.String())
	}
}

// TestMetricsAddrBusy: a busy metrics address stops Run with an error that
// names it.
func TestMetricsAddrBusy(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg.MetricsAddr = l.Addr().String()
	a := openTestAgent(t, cfg)
	err = a.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "metrics address "+cfg.MetricsAddr) {
		t.Fatalf("Run with a busy metrics address: %v", err)
	}
}

// TestLogRing: the ring keeps the last logRingSize records at info and up
// whatever the inner level, redacts case-data keys (also inside groups and
// WithAttrs), and passes the inner handler only what its level allows.
func TestLogRing(t *testing.T) {
	var inner bytes.Buffer
	log, ring := withLogRing(slog.New(slog.NewTextHandler(&inner, &slog.HandlerOptions{Level: slog.LevelWarn})))
	log.Debug("debug is not kept")
	log.Info("hello", "officer", "Amina", "seq", 7)
	log.With("subsys", "sync", "name", "Case 7").WithGroup("g").Warn("grouped", "value", "secret value", "peer", "abc")
	recs := ring.records()
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2: %+v", len(recs), recs)
	}
	if recs[0].Message != "hello" || recs[0].Attrs["officer"] != redactedText || recs[0].Attrs["seq"] != "7" {
		t.Fatalf("first record %+v", recs[0])
	}
	w := recs[1].Attrs
	if w["subsys"] != "sync" || w["name"] != redactedText || w["g.value"] != redactedText || w["g.peer"] != "abc" {
		t.Fatalf("second record %+v", recs[1])
	}
	if strings.Contains(inner.String(), "hello") || !strings.Contains(inner.String(), "grouped") {
		t.Fatalf("inner handler got %q", inner.String())
	}
	for i := 0; i < logRingSize+5; i++ {
		log.Info("n", "i", i)
	}
	recs = ring.records()
	if len(recs) != logRingSize || recs[0].Attrs["i"] != "5" || recs[len(recs)-1].Attrs["i"] != fmt.Sprint(logRingSize+4) {
		t.Fatalf("ring holds %d records, first %+v, last %+v", len(recs), recs[0], recs[len(recs)-1])
	}
	long := strings.Repeat("é", maxLogText)
	log.Info(long)
	if got := ring.records()[logRingSize-1].Message; len(got) > maxLogText+len("…") {
		t.Fatalf("message kept at %d bytes", len(got))
	}
}

// BenchmarkMetricsScrape measures one scrape of an agent holding 5,000
// records: "recount" counts open conflicts afresh (what GET /v1/metrics
// does), "cached" reuses a count under a minute old (what /metrics does
// between recounts).
func BenchmarkMetricsScrape(b *testing.B) {
	omn := newTestBureau(b, "OMN")
	a := openTestAgent(b, newTestDevice(b, omn, "Amina", crypto.RoleOfficer))
	sp, err := a.CreateSpace("bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	const records, writers = 5000, 16
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		go func(w int) {
			for i := w; i < records; i += writers {
				if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: fmt.Sprintf("r%05d", i),
					Fields: []api.FieldValue{{Name: "name", Value: strings.Repeat("x", 200)}, {Name: "place", Value: "somewhere"}}}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}(w)
	}
	for w := 0; w < writers; w++ {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	b.Run("recount", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := a.MetricsText(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		reg := a.metricsRegistry()
		for i := 0; i < b.N; i++ {
			if _, err := reg.Gather(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
