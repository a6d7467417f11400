package agent

import "github.com/prometheus/client_golang/prometheus"

// attachCollector exports attachment chunks (docs/metrics.md): what this
// device holds and what sync moved, read at scrape time.
type attachCollector struct {
	a                             *Agent
	held, wanted, moved, rejected *prometheus.Desc
}

func newAttachCollector(a *Agent) *attachCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("fieldsync_"+name, help, labels, nil)
	}
	return &attachCollector{
		a:        a,
		held:     d("attachment_chunks", "Attachment chunks held, all spaces."),
		wanted:   d("attachment_chunks_wanted", "Attachment chunks `record open` asked for and not held yet."),
		moved:    d("attachment_chunk_bytes_total", "Attachment chunk bytes moved by sync, by direction.", "direction"),
		rejected: d("attachment_chunks_rejected_total", "Attachment chunks from peers refused: bytes not matching their ref."),
	}
}

func (c *attachCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.held
	ch <- c.wanted
	ch <- c.moved
	ch <- c.rejected
}

func (c *attachCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.a.AttachStatus()
	ch <- prometheus.MustNewConstMetric(c.held, prometheus.GaugeValue, float64(st.Chunks))
	ch <- prometheus.MustNewConstMetric(c.wanted, prometheus.GaugeValue, float64(st.Wanted))
	ch <- prometheus.MustNewConstMetric(c.moved, prometheus.CounterValue, float64(st.ReceivedBytes), "in")
	ch <- prometheus.MustNewConstMetric(c.moved, prometheus.CounterValue, float64(st.SentBytes), "out")
	ch <- prometheus.MustNewConstMetric(c.rejected, prometheus.CounterValue, float64(st.Rejected))
}
