// Package crdt is the pure core of fieldsync: hybrid logical clocks, dots,
// version vectors and causal contexts, and the record types (multi-value
// registers, add-wins sets, notes, record deletes) with their merge.
//
// Nothing here reads a clock, draws randomness, logs, or does I/O: time and
// replica IDs are arguments, so property tests can replay any interleaving.
// See docs/crdt.md for the semantics and docs/format.md for the encodings.
package crdt
