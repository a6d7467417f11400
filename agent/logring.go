package agent

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	gosync "sync"
	"time"
	"unicode/utf8"

	"fieldsync/agent/api"
)

// The agent keeps its most recent log records in memory, so that `fieldsync
// diag` can hand them to support without access to wherever stderr went
// (docs/metrics.md, "Diagnostics bundle"). Logs never carry case data by
// design; the ring still redacts attributes whose keys name case data and,
// when served, any space or officer name the agent knows.

// Log ring limits.
const (
	logRingSize  = 1000             // records kept
	logRingLevel = slog.LevelInfo   // lowest level kept, whatever the logger's own level
	maxLogText   = 1024             // bytes kept of a message or an attribute value
	redactedText = "[redacted]"     // what a redacted value becomes
	logRingTime  = time.RFC3339Nano // api.LogRecord.Time format
)

// redactedKeys are attribute keys whose values may be case data: they are
// never kept in the ring (compared after any group prefix).
var redactedKeys = []string{"name", "officer", "record", "field", "value", "values", "text", "note", "alias", "passphrase", "secret", "key", "token"}

// logRing is a bounded ring of recent log records, safe for concurrent use.
type logRing struct {
	mu      gosync.Mutex
	recs    []api.LogRecord
	next    int    // where the next record goes once the ring is full
	dropped uint64 // records that fell off the ring
}

func (r *logRing) add(rec api.LogRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.recs) < logRingSize {
		r.recs = append(r.recs, rec)
		return
	}
	r.recs[r.next] = rec
	r.next = (r.next + 1) % logRingSize
	r.dropped++
}

// records returns the ring's records, oldest first.
func (r *logRing) records() []api.LogRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]api.LogRecord, 0, len(r.recs))
	out = append(out, r.recs[r.next:]...)
	return append(out, r.recs[:r.next]...)
}

// withLogRing returns a logger that writes where log does and also keeps
// records at logRingLevel and above in a new ring.
func withLogRing(log *slog.Logger) (*slog.Logger, *logRing) {
	r := &logRing{}
	return slog.New(&ringHandler{inner: log.Handler(), ring: r}), r
}

// ringHandler tees records into the ring and on to the inner handler (which
// sees only the records its own level lets through).
type ringHandler struct {
	inner  slog.Handler
	ring   *logRing
	attrs  []slog.Attr // from WithAttrs, keys already prefixed by their groups
	prefix string      // current group prefix ("g1.g2.")
}

var _ slog.Handler = (*ringHandler)(nil)

func (h *ringHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= logRingLevel || h.inner.Enabled(ctx, l)
}

func (h *ringHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= logRingLevel {
		rec := api.LogRecord{Time: r.Time.UTC().Format(logRingTime), Level: r.Level.String(), Message: clip(r.Message)}
		put := func(a slog.Attr) {
			if rec.Attrs == nil {
				rec.Attrs = map[string]string{}
			}
			rec.Attrs[a.Key] = a.Value.String()
		}
		for _, a := range h.attrs {
			put(a)
		}
		r.Attrs(func(a slog.Attr) bool {
			for _, f := range flatten(h.prefix, a) {
				put(f)
			}
			return true
		})
		h.ring.add(rec)
	}
	if h.inner.Enabled(ctx, r.Level) {
		return h.inner.Handle(ctx, r)
	}
	return nil
}

func (h *ringHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.inner = h.inner.WithAttrs(as)
	n.attrs = slices.Clip(h.attrs)
	for _, a := range as {
		n.attrs = append(n.attrs, flatten(h.prefix, a)...)
	}
	return &n
}

func (h *ringHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.inner = h.inner.WithGroup(name)
	n.prefix = h.prefix + name + "."
	return &n
}

// flatten turns an attribute (groups included) into prefixed string
// attributes, redacted and clipped.
func flatten(prefix string, a slog.Attr) []slog.Attr {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		var out []slog.Attr
		for _, g := range v.Group() {
			out = append(out, flatten(p, g)...)
		}
		return out
	}
	if a.Key == "" {
		return nil
	}
	s := redactedText
	if !slices.Contains(redactedKeys, strings.ToLower(a.Key)) {
		s = clip(v.String())
	}
	return []slog.Attr{slog.String(prefix+a.Key, s)}
}

// clip shortens s to maxLogText bytes on a rune boundary.
func clip(s string) string {
	if len(s) <= maxLogText {
		return s
	}
	n := maxLogText
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// RecentLogs returns the agent's recent log records, oldest first, with any
// space or officer name this agent knows replaced by "[redacted]".
func (a *Agent) RecentLogs() []api.LogRecord {
	if a.logs == nil {
		return []api.LogRecord{}
	}
	recs := a.logs.records()
	scrub := a.caseNameScrubber()
	for i := range recs {
		recs[i].Message = scrub.Replace(recs[i].Message)
		for k, v := range recs[i].Attrs {
			recs[i].Attrs[k] = scrub.Replace(v)
		}
	}
	return recs
}

// caseNameScrubber replaces the names of this agent's spaces and of the
// officers it knows (case data, docs/design.md §2) by "[redacted]". Names shorter
// than three bytes are left alone: they would mangle every line.
func (a *Agent) caseNameScrubber() *strings.Replacer {
	var names []string
	a.withRead(func() error {
		for _, sp := range a.spaces {
			names = append(names, sp.meta.Name)
		}
		return nil
	})
	a.statMu.Lock()
	for _, n := range a.officers {
		names = append(names, n)
	}
	a.statMu.Unlock()
	// Longest first, so that a name inside a longer one does not leave the rest.
	slices.SortFunc(names, func(x, y string) int {
		if len(x) != len(y) {
			return len(y) - len(x)
		}
		return strings.Compare(x, y)
	})
	var pairs []string
	for _, n := range slices.Compact(names) {
		if len(n) >= 3 {
			pairs = append(pairs, n, redactedText)
		}
	}
	return strings.NewReplacer(pairs...)
}

func init() {
	apiExtensions = append(apiExtensions, func(a *Agent, mux *http.ServeMux) {
		mux.HandleFunc("GET "+api.PathLogs, func(w http.ResponseWriter, r *http.Request) {
			a.reply(w, a.RecentLogs(), nil)
		})
	})
}
