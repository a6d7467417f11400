package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"fieldsync/agent"
	"fieldsync/agent/api"
	"fieldsync/internal/harness"
)

// metricsCanary is in every space name, record ID, field, value and officer
// name of the metrics test; no scrape and no diagnostics bundle may hold it.
const metricsCanary = "zqmetricscanary"

// scraped is one scrape: its text and each family's samples.
type scraped struct {
	text string
	mfs  map[string][]sample
}

type sample struct {
	labels map[string]string
	value  float64
}

// scrapeMetrics fetches and parses http://addr/metrics.
func scrapeMetrics(addr string) (scraped, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return scraped{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return scraped{}, err
	}
	if res.StatusCode != http.StatusOK {
		return scraped{}, fmt.Errorf("scrape %s: HTTP %d: %s", addr, res.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		return scraped{}, fmt.Errorf("scrape %s: %v", addr, err)
	}
	s := scraped{text: string(b), mfs: map[string][]sample{}}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
			s.mfs[name] = append(s.mfs[name], sample{l, v})
		}
	}
	return s, nil
}

// sum adds the samples of a family whose labels include want (key=value pairs).
func (s scraped) sum(name string, want ...string) float64 {
	var t float64
	for _, x := range s.mfs[name] {
		ok := true
		for i := 0; i+1 < len(want); i += 2 {
			ok = ok && x.labels[want[i]] == want[i+1]
		}
		if ok {
			t += x.value
		}
	}
	return t
}

// TestMetricsDuringSync runs two officers and a relay as real agent
// processes with --metrics-addr. Scrapes taken while they sync show stored,
// sent and received envelopes and completed rounds (counted and in the
// duration histogram) and carry no case data; `fieldsync diag` on a running
// officer writes every section and no case data; a busy metrics address
// stops an agent with an error that names it.
func TestMetricsDuringSync(t *testing.T) {
	cl, ctx := newCluster(t)
	a, err := cl.Add(ctx, "a", metricsCanary+" Officer A", false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cl.Add(ctx, "b", metricsCanary+" Officer B", false)
	if err != nil {
		t.Fatal(err)
	}
	r, err := cl.Add(ctx, "r", metricsCanary+" relay", true)
	if err != nil {
		t.Fatal(err)
	}
	addrs := map[string]string{}
	for _, n := range []*harness.Node{a, b, r} {
		m, err := harness.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		addrs[n.Name] = m
		n.Args = []string{"--metrics-addr", m}
	}
	if err := cl.Start(ctx, a, ""); err != nil {
		t.Fatal(err)
	}
	if err := cl.Start(ctx, r, "", a.Bind); err != nil {
		t.Fatal(err)
	}
	sp, err := a.Client().SpaceCreate(ctx, api.SpaceCreateRequest{Name: metricsCanary + " space"})
	if err != nil {
		t.Fatal(err)
	}
	put := func(n *harness.Node, i int) {
		t.Helper()
		_, err := n.Client().RecordPut(ctx, api.RecordPutRequest{Space: sp.ID, Record: fmt.Sprintf("%s-record-%s-%d", metricsCanary, n.Name, i),
			Fields: []api.FieldValue{{Name: metricsCanary + "_field", Value: metricsCanary + " value " + n.Name}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 20; i++ {
		put(a, i)
	}
	if err := cl.Start(ctx, b, "", a.Bind); err != nil {
		t.Fatal(err)
	}
	// b writes once it holds the space (and its key).
	if _, err := harness.WaitUntil(ctx, 2*time.Minute, "b to hold a's records", func() (bool, error) {
		_, err := b.Client().RecordGet(ctx, api.RecordRef{Space: sp.ID, Record: metricsCanary + "-record-a-19"})
		return err == nil, err
	}); err != nil {
		t.Fatal(err)
	}
	// Scrape while writes keep flowing both ways, until every agent shows
	// envelopes stored, sent and received and a completed round.
	i := 0
	scrapes := map[string]scraped{}
	if _, err := harness.WaitUntil(ctx, 2*time.Minute, "metrics of sync", func() (bool, error) {
		put(a, 100+i)
		put(b, 100+i)
		i++
		done := true
		for _, n := range []*harness.Node{a, b, r} {
			s, err := scrapeMetrics(addrs[n.Name])
			if err != nil {
				return false, err
			}
			scrapes[n.Name] = s
			done = done && s.sum("fieldsync_envelopes_stored_total") > 0 &&
				s.sum("fieldsync_envelopes_sent_total") > 0 &&
				s.sum("fieldsync_envelopes_received_total") > 0 &&
				s.sum("fieldsync_sync_rounds_total", "result", "ok") > 0 &&
				s.sum("fieldsync_sync_round_duration_seconds", "result", "ok") > 0
		}
		return done, nil
	}); err != nil {
		for name, s := range scrapes {
			t.Logf("%s: stored %v sent %v received %v rounds %v", name, s.sum("fieldsync_envelopes_stored_total"),
				s.sum("fieldsync_envelopes_sent_total"), s.sum("fieldsync_envelopes_received_total"), s.sum("fieldsync_sync_rounds_total"))
		}
		t.Fatal(err)
	}
	for name, s := range scrapes {
		if lines := canaryLines(s.text); lines != "" {
			t.Fatalf("%s's metrics carry case data:\n%s", name, lines)
		}
		for _, fam := range []string{"go_goroutines", "process_resident_memory_bytes", "fieldsync_peers", "fieldsync_sync_bytes_total",
			"fieldsync_unsynced_local_writes", "fieldsync_rejections_total", "fieldsync_pending_envelopes", "fieldsync_store_disk_bytes",
			"fieldsync_open_conflicts", "fieldsync_skewed_authors", "fieldsync_gaps", "fieldsync_forks"} {
			if len(s.mfs[fam]) == 0 {
				t.Errorf("%s: metric %s missing", name, fam)
			}
		}
		if s.sum("fieldsync_peers", "state", "alive")+s.sum("fieldsync_peers", "state", "suspect") < 1 {
			t.Errorf("%s: no live peer in the metrics", name)
		}
	}
	if got := scrapes["r"].sum("fieldsync_build_info", "role", "relay"); got != 1 {
		t.Errorf("relay's build_info with role relay: %v", got)
	}

	// The diagnostics bundle of a running officer.
	out := filepath.Join(cl.Root, "a-diag.json")
	if _, err := cl.CLI(ctx, a.Dir, "diag", "--out", out); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var bundle map[string]json.RawMessage
	if err := json.Unmarshal(raw, &bundle); err != nil {
		t.Fatal(err)
	}
	for _, s := range agent.DiagSections {
		if v, ok := bundle[s]; !ok || string(v) == "null" {
			t.Errorf("diag section %s absent", s)
		}
	}
	if string(bundle["missing"]) != "{}" {
		t.Errorf("diag of a running agent misses sections: %s", bundle["missing"])
	}
	if lines := canaryLines(string(raw)); lines != "" {
		t.Fatalf("diag bundle carries case data:\n%s", lines)
	}
	if pass := cl.Passphrase(); strings.Contains(string(raw), string(pass)) {
		t.Fatal("diag bundle holds the passphrase")
	}

	// A busy metrics address: the agent stops at once and says which.
	c, err := cl.Add(ctx, "c", metricsCanary+" Officer C", false)
	if err != nil {
		t.Fatal(err)
	}
	c.Args = []string{"--metrics-addr", addrs["a"]}
	err = cl.Start(ctx, c, "", a.Bind)
	if err == nil || !strings.Contains(err.Error(), "metrics address "+addrs["a"]) {
		t.Fatalf("agent with a busy metrics address: %v", err)
	}
}

// canaryLines returns the lines of text that hold metricsCanary (any case).
func canaryLines(text string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(strings.ToLower(l), metricsCanary) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
