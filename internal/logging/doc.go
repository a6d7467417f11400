// Package logging builds the agent's and the CLI's slog handlers: text or
// JSON on a writer, at a level named on the command line (--log-level,
// --log-format), behind a rate limiter that lets the first of a run of
// identical lines through and reports later how many it suppressed.
//
// # Rate limiting
//
// Two records are identical when they have the same level, message and
// attributes (the handler's own, from With and WithGroup, included); the
// time does not count. Within one window (Every) only the first of them is
// written; the next identical record after the window, a sweep when any
// record is logged after a window ends, or Flush writes one line with the
// message followed by " (repeated)" and suppressed=K. Records that differ in
// any attribute pass, so a line that carries a changing value (a count, a
// duration) is never held back.
package logging
