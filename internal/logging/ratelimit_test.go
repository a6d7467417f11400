package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock           { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }
func lines(b *bytes.Buffer) []string     { return strings.Split(strings.TrimSpace(b.String()), "\n") }
func limited(b *bytes.Buffer, c *fakeClock) (*slog.Logger, *RateLimiter) {
	h := NewRateLimiter(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}),
		RateLimitOptions{Every: 10 * time.Second, Now: c.now})
	return slog.New(h), h
}

func TestRateLimitIdenticalRecords(t *testing.T) {
	var buf bytes.Buffer
	clk := newFakeClock()
	log, _ := limited(&buf, clk)
	for i := 0; i < 50; i++ {
		log.Warn("join failed", "peer", "10.0.0.7:7946")
		clk.add(100 * time.Millisecond) // 50 records in 5 s: one window
	}
	if got := lines(&buf); len(got) != 1 || !strings.Contains(got[0], `msg="join failed"`) || strings.Contains(got[0], "suppressed") {
		t.Fatalf("within the window: %q", got)
	}
	clk.add(6 * time.Second) // the window has ended
	log.Warn("join failed", "peer", "10.0.0.7:7946")
	got := lines(&buf)
	if len(got) != 3 {
		t.Fatalf("after the window: %d lines %q", len(got), got)
	}
	if !strings.Contains(got[1], `msg="join failed (repeated)"`) || !strings.Contains(got[1], "suppressed=49") ||
		!strings.Contains(got[1], "peer=10.0.0.7:7946") || !strings.Contains(got[1], "level=WARN") {
		t.Errorf("summary line: %s", got[1])
	}
	if !strings.Contains(got[2], `msg="join failed"`) || strings.Contains(got[2], "suppressed") {
		t.Errorf("first line of the next window: %s", got[2])
	}
}

func TestRateLimitDifferentRecordsPass(t *testing.T) {
	var buf bytes.Buffer
	clk := newFakeClock()
	log, _ := limited(&buf, clk)
	log.Warn("join failed", "peer", "a")
	log.Warn("join failed", "peer", "b")                        // another attribute value
	log.Error("join failed", "peer", "a")                       // another level
	log.Warn("join refused", "peer", "a")                       // another message
	log.With("subsys", "sync").Warn("join failed", "peer", "a") // another With attribute
	log.WithGroup("g").Warn("join failed", "peer", "a")         // another group
	if got := lines(&buf); len(got) != 6 {
		t.Fatalf("%d lines, want 6: %q", len(got), got)
	}
	log.Warn("join failed", "peer", "a") // identical to the first
	if got := lines(&buf); len(got) != 6 {
		t.Fatalf("an identical record passed: %q", got)
	}
}

func TestRateLimitFlushAndSweep(t *testing.T) {
	var buf bytes.Buffer
	clk := newFakeClock()
	log, h := limited(&buf, clk)
	sub := log.With("subsys", "sync")
	for i := 0; i < 4; i++ {
		sub.Info("peer unreachable", "peer", "p1")
	}
	log.Info("quiet")
	clk.add(11 * time.Second)
	log.Info("something else") // the sweep reports the ended run first
	got := lines(&buf)
	if len(got) != 4 || !strings.Contains(got[2], `msg="peer unreachable (repeated)"`) ||
		!strings.Contains(got[2], "subsys=sync") || !strings.Contains(got[2], "suppressed=3") ||
		!strings.Contains(got[3], `msg="something else"`) {
		t.Fatalf("sweep: %q", got)
	}
	buf.Reset()
	log.Info("burst")
	log.Info("burst")
	log.Info("burst")
	h.Flush(context.Background())
	got = lines(&buf)
	if len(got) != 2 || !strings.Contains(got[1], "suppressed=2") {
		t.Fatalf("flush: %q", got)
	}
	buf.Reset()
	h.Flush(context.Background()) // nothing pending: nothing written
	if buf.Len() != 0 {
		t.Fatalf("second flush wrote %q", buf.String())
	}
}

func TestRateLimitBounded(t *testing.T) {
	var buf bytes.Buffer
	clk := newFakeClock()
	h := NewRateLimiter(slog.NewTextHandler(&buf, nil), RateLimitOptions{Every: time.Minute, MaxTracked: 2, Now: clk.now})
	log := slog.New(h)
	for _, m := range []string{"a", "b", "c", "c", "c"} {
		log.Info(m)
	}
	// a and b are tracked; c cannot be, so every c passes.
	if got := lines(&buf); len(got) != 5 {
		t.Fatalf("%d lines, want 5: %q", len(got), got)
	}
	if len(h.st.seen) != 2 {
		t.Fatalf("tracking %d records, bound 2", len(h.st.seen))
	}
}

func TestNewFormatsAndLevels(t *testing.T) {
	var buf bytes.Buffer
	log, rl := New(&buf, Options{Level: slog.LevelWarn, Format: FormatJSON})
	if rl == nil {
		t.Fatal("no rate limiter by default")
	}
	log.Info("hidden")
	log.Warn("shown", "k", 1)
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil || m["msg"] != "shown" || m["level"] != "WARN" {
		t.Fatalf("json line %q: %v %v", buf.String(), m, err)
	}
	buf.Reset()
	log, rl = New(&buf, Options{Format: FormatText, Every: -1})
	if rl != nil {
		t.Error("rate limiter despite Every < 0")
	}
	log.Debug("hidden")
	log.Info("x")
	log.Info("x")
	if got := lines(&buf); len(got) != 2 || !strings.HasPrefix(got[0], "time=") {
		t.Fatalf("text, unlimited: %q", got)
	}
}

func TestParse(t *testing.T) {
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "INFO": slog.LevelInfo, "warn": slog.LevelWarn, "warning": slog.LevelWarn, "Error": slog.LevelError} {
		if got, err := ParseLevel(in); err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"verbose", "5", "trace"} {
		if _, err := ParseLevel(bad); err == nil || !strings.Contains(err.Error(), "want debug, info, warn or error") {
			t.Errorf("ParseLevel(%q): %v", bad, err)
		}
	}
	for in, want := range map[string]Format{"text": FormatText, "JSON": FormatJSON} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseFormat("xml"); err == nil {
		t.Error("ParseFormat accepted xml")
	}
}

// TestRateLimitConcurrentAccounting: under concurrent use every record is
// either written or counted in a later "suppressed" line, never both, never
// neither.
func TestRateLimitConcurrentAccounting(t *testing.T) {
	var buf lockedBuffer
	h := NewRateLimiter(slog.NewJSONHandler(&buf, nil), RateLimitOptions{Every: time.Hour})
	log := slog.New(h)
	const workers, each = 8, 500
	done := make(chan struct{})
	for w := 0; w < workers; w++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < each; i++ {
				log.Warn("peer unreachable", "peer", i%3) // three distinct records
			}
		}()
	}
	for w := 0; w < workers; w++ {
		<-done
	}
	h.Flush(context.Background())
	written, suppressed := 0, 0
	for _, line := range lines(&buf.b) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if k, ok := m["suppressed"].(float64); ok {
			suppressed += int(k)
		} else {
			written++
		}
	}
	if written != 3 || written+suppressed != workers*each {
		t.Fatalf("written %d + suppressed %d != %d records (want 3 written)", written, suppressed, workers*each)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
