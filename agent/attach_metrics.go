package agent

import "github.com/prometheus/client_golang/prometheus"

// attachCollector exports attachment chunks and partial envelopes
// (docs/metrics.md): what this device holds and what sync moved, read at
// scrape time.
type attachCollector struct {
	a                             *Agent
	held, wanted, moved, rejected *prometheus.Desc
	partials, partialBytes        *prometheus.Desc
	skipped, bad                  *prometheus.Desc
	collected, healed             *prometheus.Desc
}

func newAttachCollector(a *Agent) *attachCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("fieldsync_"+name, help, labels, nil)
	}
	return &attachCollector{
		a:            a,
		held:         d("attachment_chunks", "Attachment chunks held, all spaces."),
		wanted:       d("attachment_chunks_wanted", "Attachment chunks `record open` asked for and not held yet."),
		moved:        d("attachment_chunk_bytes_total", "Attachment chunk bytes moved by sync, by direction.", "direction"),
		rejected:     d("attachment_chunks_rejected_total", "Attachment chunks from peers refused: bytes not matching their ref."),
		partials:     d("partial_envelopes", "Large envelopes held in part from cut rounds (docs/sync.md \"Resumable envelopes\")."),
		partialBytes: d("partial_envelope_bytes", "Bytes of those partial envelopes held."),
		skipped:      d("resumed_bytes_skipped_total", "Bytes of large envelopes not sent again: peers held them from a cut round."),
		collected:    d("attachment_chunks_collected_total", "Attachment chunks of superseded attachments deleted by compaction (docs/design.md §7)."),
		healed:       d("stub_values_healed_total", "Values segments of live writes held from a stub, put back from a whole copy that came later (docs/design.md §7)."),
		bad:          d("resumed_envelopes_bad_total", "Large envelopes completed from a held prefix whose bytes did not match their announced hash (dropped, fetched again)."),
	}
}

func (c *attachCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.held
	ch <- c.wanted
	ch <- c.moved
	ch <- c.rejected
	ch <- c.partials
	ch <- c.partialBytes
	ch <- c.skipped
	ch <- c.bad
	ch <- c.collected
	ch <- c.healed
}

func (c *attachCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.a.AttachStatus()
	ch <- prometheus.MustNewConstMetric(c.held, prometheus.GaugeValue, float64(st.Chunks))
	ch <- prometheus.MustNewConstMetric(c.wanted, prometheus.GaugeValue, float64(st.Wanted))
	ch <- prometheus.MustNewConstMetric(c.moved, prometheus.CounterValue, float64(st.ReceivedBytes), "in")
	ch <- prometheus.MustNewConstMetric(c.moved, prometheus.CounterValue, float64(st.SentBytes), "out")
	ch <- prometheus.MustNewConstMetric(c.rejected, prometheus.CounterValue, float64(st.Rejected))
	ch <- prometheus.MustNewConstMetric(c.collected, prometheus.CounterValue, float64(st.Collected))
	ch <- prometheus.MustNewConstMetric(c.healed, prometheus.CounterValue, float64(c.a.healedValues.Load()))
	ps := c.a.PartialStatus()
	ch <- prometheus.MustNewConstMetric(c.partials, prometheus.GaugeValue, float64(ps.Held))
	ch <- prometheus.MustNewConstMetric(c.partialBytes, prometheus.GaugeValue, float64(ps.HeldBytes))
	ch <- prometheus.MustNewConstMetric(c.skipped, prometheus.CounterValue, float64(ps.BytesSkipped))
	ch <- prometheus.MustNewConstMetric(c.bad, prometheus.CounterValue, float64(ps.Bad))
}
