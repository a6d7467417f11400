package sync

import (
	"context"
	"log/slog"
	"regexp"
	"strings"
	gosync "sync"
	"time"
)

// logBridge receives memberlist's log lines ("[LEVEL] memberlist: ...") and
// routes them into slog: its routine lines at debug (its INFO and DEBUG
// lines, and the WARN and ERR lines that only say a peer is unreachable or
// suspected us, the normal state of a field mesh, which `fieldsync peers`
// shows), problems at warn or error, and repeated problems of one kind
// rate-limited to one line per interval with a count of the lines
// suppressed. It is also the engine's own rate limiter for noisy warnings.
type logBridge struct {
	log   *slog.Logger
	every time.Duration

	mu    gosync.Mutex
	kinds map[string]*logKind

	// onRefute, if set, is told of each time memberlist refuted a message
	// that this node is suspect or dead (set before memberlist starts).
	onRefute func()
}

type logKind struct {
	last       time.Time
	suppressed uint64
	level      slog.Level
	msg        string
}

// maxLogKinds bounds the distinct rate-limited kinds tracked.
const maxLogKinds = 256

func newLogBridge(l *slog.Logger, every time.Duration) *logBridge {
	return &logBridge{log: l, every: every, kinds: make(map[string]*logKind)}
}

// Write implements io.Writer for memberlist's *log.Logger (one line a call).
func (b *logBridge) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	if b.onRefute != nil && (strings.Contains(line, "Refuting a suspect message") || strings.Contains(line, "Refuting a dead message")) {
		b.onRefute()
	}
	level, rest := memberlistLevel(line)
	if level < slog.LevelWarn || routineMemberlist(rest) {
		b.log.Debug(rest, "src", "memberlist")
		return len(p), nil
	}
	kind, msg, reason := classifyMemberlist(rest)
	b.limited(kind, level, msg, "src", "memberlist", "reason", reason, "detail", rest)
	return len(p), nil
}

// limited logs at most one line of a kind per interval; the next line that
// passes (or flush) carries how many were suppressed in between.
func (b *logBridge) limited(kind string, level slog.Level, msg string, args ...any) {
	now := time.Now()
	b.mu.Lock()
	k := b.kinds[kind]
	if k == nil {
		if len(b.kinds) >= maxLogKinds {
			kind = "other"
			k = b.kinds[kind]
		}
		if k == nil {
			k = &logKind{}
			b.kinds[kind] = k
		}
	}
	k.level, k.msg = level, msg
	if !k.last.IsZero() && now.Sub(k.last) < b.every {
		k.suppressed++
		b.mu.Unlock()
		return
	}
	sup := k.suppressed
	k.suppressed = 0
	k.last = now
	b.mu.Unlock()
	if sup > 0 {
		args = append(args, "suppressed", sup)
	}
	b.log.Log(context.Background(), level, msg, append(args, "kind", kind)...)
}

// flush reports suppressed counts whose interval has passed (all of them if
// final).
func (b *logBridge) flush(final bool) {
	now := time.Now()
	type out struct {
		kind, msg string
		level     slog.Level
		n         uint64
	}
	var outs []out
	b.mu.Lock()
	for kind, k := range b.kinds {
		if k.suppressed > 0 && (final || now.Sub(k.last) >= b.every) {
			outs = append(outs, out{kind, k.msg, k.level, k.suppressed})
			k.suppressed = 0
			k.last = now
		}
	}
	b.mu.Unlock()
	for _, o := range outs {
		b.log.Log(context.Background(), o.level, o.msg+" (repeated)", "kind", o.kind, "suppressed", o.n)
	}
}

// memberlistLevel maps memberlist's "[LEVEL]" prefix to a slog level.
func memberlistLevel(line string) (slog.Level, string) {
	for _, p := range []struct {
		tag string
		l   slog.Level
	}{{"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelDebug}, {"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}, {"[ERROR]", slog.LevelError}} {
		if i := strings.Index(line, p.tag); i >= 0 {
			return p.l, strings.TrimSpace(line[i+len(p.tag):])
		}
	}
	if strings.HasPrefix(line, "Err") {
		return slog.LevelError, line
	}
	return slog.LevelDebug, line
}

// routineLines are memberlist WARN and ERR lines (lower case) that report
// no problem of this node's: a peer that does not answer (laptops go
// offline), or a peer that suspected us and was refuted (lossy links).
var routineLines = []string{
	"push/pull with ", "failed fallback tcp ping", "failed to send udp ping", "failed to send indirect",
	"failed to send udp compound ping", "failed to send gossip to", "refuting a suspect message",
	"refuting a dead message",
}

// routineMemberlist reports whether a WARN or ERR line of memberlist's is
// routine (logged at debug). A line naming a mesh key or label problem is
// never routine, whatever else it says.
func routineMemberlist(s string) bool {
	l := strings.ToLower(s)
	if kind, _, _ := classifyMemberlist(s); kind == "mesh-key" || kind == "mesh-label" {
		return false
	}
	for _, r := range routineLines {
		if strings.Contains(l, r) {
			return true
		}
	}
	return false
}

var logNoise = regexp.MustCompile(`[0-9a-f:.\[\]]*[0-9][0-9a-f:.\[\]]*|"[^"]*"`)

// classifyMemberlist names the kind of a problem line and says why in words.
func classifyMemberlist(s string) (kind, msg, reason string) {
	s = strings.TrimPrefix(s, "memberlist: ")
	l := strings.ToLower(s)
	switch {
	case strings.Contains(l, "no installed keys could decrypt"), strings.Contains(l, "decrypt packet failed"),
		strings.Contains(l, "message authentication failed"), strings.Contains(l, "encryption is configured but"):
		return "mesh-key", "refused traffic from a node with another mesh key", "mesh key mismatch"
	case strings.Contains(l, "unacceptable label"), strings.Contains(l, "label header"):
		return "mesh-label", "refused traffic from another mesh (label mismatch)", "label mismatch"
	case strings.Contains(l, "failed to join"), strings.Contains(l, "failed push/pull"):
		return "join", "join failed", "peer unreachable or refused"
	case strings.Contains(l, "udp probes failed"):
		return "udp-blocked", "peers reach this node over TCP but not UDP", "open the gossip port for UDP as well as TCP"
	case strings.Contains(l, "conflicting address"):
		return "name-conflict", "two nodes claim one device id", "a cloned data directory, or a device restored without a new incarnation"
	}
	k := logNoise.ReplaceAllString(s, "#")
	if len(k) > 60 {
		k = k[:60]
	}
	return "memberlist:" + k, "memberlist: " + k, "see detail"
}
