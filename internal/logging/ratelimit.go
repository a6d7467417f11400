package logging

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RateLimitOptions configures NewRateLimiter.
type RateLimitOptions struct {
	// Every is the window in which identical records after the first are
	// suppressed. 0 means DefaultEvery.
	Every time.Duration
	// MaxTracked bounds the distinct records remembered at once (default
	// 1024); a record that cannot be tracked is passed through, never
	// dropped.
	MaxTracked int
	// Now is the clock; nil means time.Now. Tests only.
	Now func() time.Time
}

// RateLimiter is a slog.Handler that passes the first of identical records
// within a window to the next handler and counts the rest; see the package
// doc. Handlers derived with WithAttrs and WithGroup share its state. It is
// safe for concurrent use.
type RateLimiter struct {
	next   slog.Handler
	prefix string // key of the attributes and groups added by With
	st     *limitState
}

var _ slog.Handler = (*RateLimiter)(nil)

type limitState struct {
	every time.Duration
	max   int
	now   func() time.Time

	mu        sync.Mutex
	seen      map[string]*limitEntry
	lastSweep time.Time
}

// limitEntry is one run of identical records: the first one passed at
// start; suppressed counts the rest so far.
type limitEntry struct {
	start      time.Time
	suppressed int
	rec        slog.Record  // the first record, to report the count with
	h          slog.Handler // the handler it went to (With attributes applied)
}

// NewRateLimiter wraps next.
func NewRateLimiter(next slog.Handler, o RateLimitOptions) *RateLimiter {
	if o.Every <= 0 {
		o.Every = DefaultEvery
	}
	if o.MaxTracked <= 0 {
		o.MaxTracked = 1024
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &RateLimiter{next: next, st: &limitState{
		every: o.Every, max: o.MaxTracked, now: o.Now,
		seen: make(map[string]*limitEntry), lastSweep: o.Now(),
	}}
}

// Enabled reports whether the next handler takes records at level l.
func (h *RateLimiter) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

// WithAttrs returns a handler that adds attrs, sharing h's limits.
func (h *RateLimiter) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	var b strings.Builder
	b.WriteString(h.prefix)
	for _, a := range attrs {
		writeAttr(&b, "", a)
	}
	return &RateLimiter{next: h.next.WithAttrs(attrs), prefix: b.String(), st: h.st}
}

// WithGroup returns a handler that opens group name, sharing h's limits.
func (h *RateLimiter) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &RateLimiter{next: h.next.WithGroup(name), prefix: h.prefix + "{" + name + "}", st: h.st}
}

// Handle passes r on unless an identical record passed within the window.
func (h *RateLimiter) Handle(ctx context.Context, r slog.Record) error {
	key := h.key(r)
	st := h.st
	now := st.now()
	st.mu.Lock()
	var reports []limitEntry
	if now.Sub(st.lastSweep) >= st.every {
		reports = st.sweepLocked(now, false)
	}
	e := st.seen[key]
	if e != nil && now.Sub(e.start) < st.every {
		e.suppressed++
		st.mu.Unlock()
		emit(ctx, reports, now)
		return nil
	}
	if e != nil {
		if e.suppressed > 0 {
			reports = append(reports, *e)
		}
		delete(st.seen, key)
	}
	if len(st.seen) < st.max {
		st.seen[key] = &limitEntry{start: now, rec: r.Clone(), h: h.next}
	}
	st.mu.Unlock()
	emit(ctx, reports, now)
	return h.next.Handle(ctx, r)
}

// Flush writes the count of every run with suppressed records, whether or
// not its window has ended, and forgets them all (call it before exiting).
func (h *RateLimiter) Flush(ctx context.Context) {
	st := h.st
	now := st.now()
	st.mu.Lock()
	reports := st.sweepLocked(now, true)
	st.mu.Unlock()
	emit(ctx, reports, now)
}

// sweepLocked forgets the runs whose window ended (all if final) and
// returns those that suppressed records.
func (st *limitState) sweepLocked(now time.Time, final bool) []limitEntry {
	st.lastSweep = now
	var out []limitEntry
	for k, e := range st.seen {
		if final || now.Sub(e.start) >= st.every {
			if e.suppressed > 0 {
				out = append(out, *e)
			}
			delete(st.seen, k)
		}
	}
	return out
}

// emit writes one "(repeated)" line per run, oldest first.
func emit(ctx context.Context, reports []limitEntry, now time.Time) {
	for i := 1; i < len(reports); i++ { // few entries: insertion sort keeps it stable
		for j := i; j > 0 && reports[j].start.Before(reports[j-1].start); j-- {
			reports[j], reports[j-1] = reports[j-1], reports[j]
		}
	}
	for _, e := range reports {
		r := slog.NewRecord(now, e.rec.Level, e.rec.Message+" (repeated)", e.rec.PC)
		e.rec.Attrs(func(a slog.Attr) bool { r.AddAttrs(a); return true })
		r.AddAttrs(slog.Int("suppressed", e.suppressed))
		if e.h.Enabled(ctx, r.Level) {
			e.h.Handle(ctx, r)
		}
	}
}

// key identifies identical records: handler prefix, level, message and
// attributes, in order.
func (h *RateLimiter) key(r slog.Record) string {
	var b strings.Builder
	b.WriteString(h.prefix)
	b.WriteString("|")
	b.WriteString(r.Level.String())
	b.WriteString("|")
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { writeAttr(&b, "", a); return true })
	return b.String()
}

func writeAttr(b *strings.Builder, group string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Value.Kind() == slog.KindGroup {
		g := group + a.Key + "."
		for _, x := range a.Value.Group() {
			writeAttr(b, g, x)
		}
		return
	}
	b.WriteString("\x00")
	b.WriteString(group)
	b.WriteString(a.Key)
	b.WriteString("=")
	b.WriteString(strconv.Quote(a.Value.String()))
}
