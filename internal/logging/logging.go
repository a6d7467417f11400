package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// Format is the shape of log lines: FormatText (logfmt, slog's
// TextHandler) or FormatJSON (one JSON object a line, slog's JSONHandler).
type Format string

// The formats --log-format accepts.
const (
	FormatText Format = "text"
	FormatJSON Format = "json"
)

// DefaultEvery is the rate limiter's default window.
const DefaultEvery = 10 * time.Second

// ParseLevel reads a log level name: debug, info, warn (or warning) or
// error, in any case.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q: want debug, info, warn or error", s)
}

// ParseFormat reads a log format name: text or json.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case FormatText, FormatJSON:
		return f, nil
	case "":
		return FormatText, nil
	}
	return "", fmt.Errorf("unknown log format %q: want text or json", s)
}

// Options configures New.
type Options struct {
	Level  slog.Leveler // minimum level; nil means info
	Format Format       // "" means text
	// Every is the rate limiter's window: 0 means DefaultEvery, a negative
	// value turns rate limiting off.
	Every time.Duration
}

// New returns a logger writing to w as o says, and its rate limiter (nil
// when o.Every is negative) so that the caller can Flush it before exiting.
func New(w io.Writer, o Options) (*slog.Logger, *RateLimiter) {
	ho := &slog.HandlerOptions{Level: o.Level}
	if ho.Level == nil {
		ho.Level = slog.LevelInfo
	}
	var h slog.Handler
	if o.Format == FormatJSON {
		h = slog.NewJSONHandler(w, ho)
	} else {
		h = slog.NewTextHandler(w, ho)
	}
	if o.Every < 0 {
		return slog.New(h), nil
	}
	rl := NewRateLimiter(h, RateLimitOptions{Every: o.Every})
	return slog.New(rl), rl
}
