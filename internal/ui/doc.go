// Package ui is `fieldsync ui`: a local web view of a running agent, served
// on a loopback address to the officer's own browser (docs/ui.md). It is a
// client of the agent's local API (agent/api), like the CLI, and never links
// the agent itself.
//
// The page (static/, embedded: no external assets, no build step) searches,
// shows a record with its fields, sets and notes, its signed history and its
// conflicts side by side, resolves a conflict with a reason, and refreshes
// itself when the agent's data changes (server-sent events driven by a
// once-a-second poll of the agent).
//
// The server defends the officer's data against other local users and
// against web pages open in the same browser: it binds loopback only, every
// request carries a per-launch 256-bit token (compared in constant time),
// the Host header must name the loopback address it listens on (DNS
// rebinding), calls that change anything are POSTs that carry the token in a
// header (CSRF), and every response forbids framing, inline scripts and
// anything not served by itself (Content-Security-Policy).
package ui
