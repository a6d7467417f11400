//go:build fieldsync_bench_nosign

package crypto

// benchNoSign: built with the tag fieldsync_bench_nosign, envelopes are
// "signed" with 64 zero bytes, which verify nowhere. It exists only to
// measure what the Ed25519 signature costs the local write path
// (docs/design.md §7, "Group commit"): such a binary is useless for
// anything else, and nothing builds with the tag by default.
const benchNoSign = true
