package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	gosync "sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/internal/platform"
)

// Prometheus metrics (docs/metrics.md). The agent keeps no metric state of
// its own: a collector reads the counters the agent and its sync engine
// already keep (Status, Engine.Stats, Engine.Peers, Engine.RoundDurations)
// at scrape time, into a private registry with Go's runtime and process
// collectors. No label or value carries case data: labels are fixed words
// (states, reasons, directions), never space names, record IDs, officer
// names or device IDs.

// conflictsTTL is how long a count of open conflicts is reused: counting
// reads every record of every space.
const conflictsTTL = time.Minute

func init() {
	apiExtensions = append(apiExtensions, func(a *Agent, mux *http.ServeMux) {
		mux.HandleFunc("GET "+api.PathMetrics, func(w http.ResponseWriter, r *http.Request) {
			text, err := a.MetricsText()
			a.reply(w, api.MetricsSnapshot{Format: string(expfmt.NewFormat(expfmt.TypeTextPlain)), Text: text}, err)
		})
	})
}

// MetricsText gathers every metric once and returns the text exposition.
func (a *Agent) MetricsText() (string, error) {
	mfs, err := a.metricsRegistry().Gather()
	if err != nil && len(mfs) == 0 {
		return "", fmt.Errorf("gather metrics: %w", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return "", fmt.Errorf("encode metrics: %w", err)
		}
	}
	return buf.String(), nil
}

// metricsRegistry returns a new private registry with the agent's
// collector and Go's runtime and process collectors.
func (a *Agent) metricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newAgentCollector(a),
		newAttachCollector(a), // attach_metrics.go
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// startMetrics serves /metrics on cfg.MetricsAddr (nothing when it is
// empty). A bad or busy address is an error here, before the agent says it
// runs. stop shuts the server down.
func (a *Agent) startMetrics() (stop func(), err error) {
	addr := a.cfg.MetricsAddr
	if addr == "" {
		return func() {}, nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("metrics address %q: %v (want HOST:PORT, e.g. 127.0.0.1:9464)", addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics address %s: %w (is another process using it? choose another --metrics-addr)", addr, err)
	}
	errLog := slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metricsRegistry(), promhttp.HandlerOpts{
		ErrorLog:      errLog,
		ErrorHandling: promhttp.ContinueOnError,
		Timeout:       30 * time.Second,
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "fieldsync serves its metrics at /metrics", http.StatusNotFound)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}
	served := make(chan struct{})
	go func() { srv.Serve(ln); close(served) }()
	a.log.Info("metrics served", "url", "http://"+ln.Addr().String()+"/metrics")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-served // Run waits for what it started
	}, nil
}

// knownRejections are the rejection reasons exposed at 0 before any occurs.
var knownRejections = []string{RejectMalformed, RejectUnknown, RejectSignature, RejectExpired, RejectNotYet,
	RejectRevoked, RejectUntrusted, RejectRole, RejectGap, RejectChain, RejectFork, RejectFrozen,
	RejectMismatch, RejectUndecoded, RejectNotEntitle, RejectErasureCap}

// agentCollector reads the agent's counters at scrape time.
type agentCollector struct {
	a         *Agent
	conflicts conflictCount

	build, certExpiry                          *prometheus.Desc
	peers, pending, peerPending, unsynced      *prometheus.Desc
	sent, received, stored, dups               *prometheus.Desc
	rejections, authFailures, badGossip        *prometheus.Desc
	rounds, roundDur, syncBytes, gossipBytes   *prometheus.Desc
	hintsSent, hintsRecv, broadcastQueue       *prometheus.Desc
	spaces, logEnvelopes, storeBytes, openConf *prometheus.Desc
	skewed, gaps, forks, missing, corrupt      *prometheus.Desc
	unreadable, unreadableSpaces               *prometheus.Desc
}

func newAgentCollector(a *Agent) *agentCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("fieldsync_"+name, help, labels, nil)
	}
	return &agentCollector{
		a:                a,
		build:            d("build_info", "Always 1; labels name the agent's version and role.", "version", "role"),
		certExpiry:       d("certificate_expiry_timestamp_seconds", "When this device's certificate expires (Unix time)."),
		peers:            d("peers", "Known peers by state: alive (live member, last round fine), suspect (live member whose last round failed), dead (not a live member).", "state"),
		pending:          d("pending_envelopes", "Envelopes pending with all peers as of each peer's last round: out = they lack and we hold, in = we lack and they hold.", "direction"),
		peerPending:      d("peer_pending_envelopes", "Envelopes pending with one peer as of its last round (out = it lacks and we hold, in = we lack and it holds); peer is its device ID, never a name.", "peer", "direction"),
		unsynced:         d("unsynced_local_writes", "Envelopes of this device's own logs that no peer is known to hold yet."),
		sent:             d("envelopes_sent_total", "Envelopes sent to peers in sync rounds."),
		received:         d("envelopes_received_total", "Envelopes received from peers in sync rounds (stored, duplicate or rejected)."),
		stored:           d("envelopes_stored_total", "Envelopes received from peers and stored (new to this device)."),
		dups:             d("envelopes_duplicate_total", "Envelopes received from peers that this device already held."),
		rejections:       d("rejections_total", "Envelopes and mesh objects refused, by reason.", "reason"),
		authFailures:     d("auth_failures_total", "Sync streams whose peer failed authentication."),
		badGossip:        d("gossip_dropped_total", "Undecodable gossip messages dropped."),
		rounds:           d("sync_rounds_total", "Anti-entropy rounds, by result (ok, error; errors include failed dials).", "result"),
		roundDur:         d("sync_round_duration_seconds", "Duration of anti-entropy rounds, by this device's role and the result.", "role", "result"),
		syncBytes:        d("sync_bytes_total", "Bytes on the wire in sync streams (TLS included), by direction.", "direction"),
		gossipBytes:      d("gossip_bytes_total", "Bytes on the wire of memberlist gossip and its streams, by direction.", "direction"),
		hintsSent:        d("hints_sent_total", "Hints of new changes this device queued."),
		hintsRecv:        d("hints_received_total", "Hints received (any origin)."),
		broadcastQueue:   d("broadcast_queue", "Hints waiting in memberlist's broadcast queue."),
		spaces:           d("spaces", "Spaces this device holds."),
		logEnvelopes:     d("log_envelopes", "Envelopes in the logs this device holds, up to each author's head: own = this device's, peers = everyone else's.", "origin"),
		storeBytes:       d("store_disk_bytes", "Disk space used by the store directory."),
		openConf:         d("open_conflicts", "Register fields with more than one live value, across all spaces (recounted at most once a minute)."),
		skewed:           d("skewed_authors", "Authors whose clocks run ahead of this device's beyond the allowed drift."),
		gaps:             d("gaps", "Authors' logs with a gap this device waits to fill."),
		forks:            d("forks", "Authors' logs found forked (two envelopes with one seq), frozen from the fork."),
		missing:          d("missing_envelopes", "Ranges of acknowledged envelopes found absent from the store when it opened."),
		corrupt:          d("corrupt_values_total", "Stored values that failed authentication since the agent started."),
		unreadable:       d("unreadable_envelopes", "Envelopes held that this device cannot open yet (no key for their epoch has reached it), all spaces together."),
		unreadableSpaces: d("unreadable_spaces", "Spaces with envelopes held that this device cannot open yet."),
	}
}

var _ prometheus.Collector = (*agentCollector)(nil)

func (c *agentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.build, c.certExpiry, c.peers, c.pending, c.peerPending, c.unsynced, c.sent, c.received, c.stored, c.dups,
		c.rejections, c.authFailures, c.badGossip, c.rounds, c.roundDur, c.syncBytes, c.gossipBytes,
		c.hintsSent, c.hintsRecv, c.broadcastQueue, c.spaces, c.logEnvelopes, c.storeBytes, c.openConf,
		c.skewed, c.gaps, c.forks, c.missing, c.corrupt, c.unreadable, c.unreadableSpaces,
	} {
		ch <- d
	}
}

func (c *agentCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	st := a.Status()
	gauge(c.build, 1, Version, st.Device.Role)
	gauge(c.certExpiry, float64(a.cert.NotAfter.Unix()))

	var alive, suspect, dead, pendOut, pendIn float64
	if e := a.engine(); e != nil {
		for _, p := range e.Peers() {
			switch {
			case !p.Alive:
				dead++
			case p.LastError != "":
				suspect++
			default:
				alive++
			}
			pendOut += float64(p.PendingOut)
			pendIn += float64(p.PendingIn)
			gauge(c.peerPending, float64(p.PendingOut), p.ID.String(), "out")
			gauge(c.peerPending, float64(p.PendingIn), p.ID.String(), "in")
		}
		s := e.Stats()
		counter(c.sent, float64(s.Sent))
		counter(c.received, float64(s.Added+s.Duplicates+s.RejectedEnvs))
		counter(c.stored, float64(s.Added))
		counter(c.dups, float64(s.Duplicates))
		counter(c.authFailures, float64(s.AuthFailures))
		counter(c.badGossip, float64(s.BadGossip))
		counter(c.rounds, float64(s.Rounds), "ok")
		counter(c.rounds, float64(s.RoundErrors), "error")
		counter(c.syncBytes, float64(s.SyncBytesIn), "in")
		counter(c.syncBytes, float64(s.SyncBytesOut), "out")
		counter(c.gossipBytes, float64(s.GossipBytesIn), "in")
		counter(c.gossipBytes, float64(s.GossipBytesOut), "out")
		counter(c.hintsSent, float64(s.HintsSent))
		counter(c.hintsRecv, float64(s.HintsReceived))
		gauge(c.broadcastQueue, float64(s.BroadcastQueue))
		for _, h := range e.RoundDurations() {
			role, result := "responder", "error"
			if h.Initiator {
				role = "initiator"
			}
			if h.OK {
				result = "ok"
			}
			ch <- prometheus.MustNewConstHistogram(c.roundDur, h.Count, h.Sum, h.Cumulative(), role, result)
		}
	}
	gauge(c.peers, alive, "alive")
	gauge(c.peers, suspect, "suspect")
	gauge(c.peers, dead, "dead")
	gauge(c.pending, pendOut, "out")
	gauge(c.pending, pendIn, "in")
	gauge(c.unsynced, float64(st.UnsyncedLocal))
	for _, reason := range knownRejections { // present from the start, for rate()
		if _, ok := st.Rejected[reason]; !ok {
			counter(c.rejections, 0, reason)
		}
	}
	for reason, n := range st.Rejected {
		counter(c.rejections, float64(n), reason)
	}
	gauge(c.skewed, float64(len(st.SkewedAuthors)))
	gauge(c.gaps, float64(len(st.Gaps)))
	gauge(c.forks, float64(len(st.Forks)))
	gauge(c.missing, float64(len(st.Missing)))
	counter(c.corrupt, float64(st.CorruptValues))
	unreadable := 0
	for _, u := range st.Unreadable {
		unreadable += u.Envelopes
	}
	gauge(c.unreadable, float64(unreadable))
	gauge(c.unreadableSpaces, float64(len(st.Unreadable)))

	spaces, own, peers := a.logSizes()
	gauge(c.spaces, float64(spaces))
	gauge(c.logEnvelopes, float64(own), "own")
	gauge(c.logEnvelopes, float64(peers), "peers")
	if n, err := diskUsage(a.cfg.Layout.Store()); err == nil {
		gauge(c.storeBytes, float64(n))
	}
	if n, ok := c.conflicts.get(a); ok {
		gauge(c.openConf, float64(n))
	}
}

// logSizes counts the spaces and the envelopes in the logs held, up to
// each author's head.
func (a *Agent) logSizes() (spaces int, own, peers uint64) {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	for _, sp := range a.spaces {
		for author, h := range sp.heads {
			if author == a.dev {
				own += h.Seq
			} else {
				peers += h.Seq
			}
		}
	}
	return len(a.spaces), own, peers
}

// diskUsage is the disk space (allocated blocks) of the files under dir:
// Badger preallocates and memory-maps its files, so their sizes overstate.
func diskUsage(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a file compaction removed meanwhile
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		n += platform.AllocatedBytes(info)
		return nil
	})
	return n, err
}

// conflictCount caches the number of open conflicts for conflictsTTL.
type conflictCount struct {
	mu gosync.Mutex
	at time.Time
	n  int
}

// get returns the count, recounting when the last one is older than
// conflictsTTL; ok is false when no count could be made yet.
func (c *conflictCount) get(a *Agent) (n int, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < conflictsTTL {
		return c.n, true
	}
	n, err := a.countConflicts()
	if err != nil {
		a.log.Warn("metrics: counting open conflicts failed", "err", err)
		return c.n, !c.at.IsZero()
	}
	c.n, c.at = n, time.Now()
	return n, true
}

// countConflicts counts register fields with more than one live value in
// every space this device can read.
func (a *Agent) countConflicts() (int, error) {
	var spaces []*spaceState
	a.withRead(func() error { spaces = a.sortedSpaces(); return nil })
	n := 0
	for _, sp := range spaces {
		if err := a.eachRecord(sp, func(r *crdt.Record) { n += len(r.Conflicts()) }); err != nil {
			return 0, fmt.Errorf("space %s: %w", sp.id, err)
		}
	}
	return n, nil
}
