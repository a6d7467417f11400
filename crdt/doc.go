// Package crdt is the pure core of fieldsync: hybrid logical clocks, dots,
// version vectors and causal contexts, and the record types (multi-value
// registers, add-wins sets, notes, record deletes) with their merge.
//
// Nothing here reads a clock, draws randomness, logs, or does I/O: time and
// replica IDs are arguments, so property tests can replay any interleaving.
// The package imports only the standard library.
//
// # Model
//
// A [Change] is a batch of [Op]s by one author in one space, identified by
// (author, seq) and stamped with a [Timestamp] from a [Clock]. Op i of a
// change has the op-level [Dot] (author, seq, i). Each op carries the dots
// its author saw (Op.Seen): applying it removes exactly those dots, so a
// write concurrent with it survives as a sibling. A space's [Context]
// records which changes were applied (a version vector plus out-of-order
// seqs) and which op dots were overwritten before their own change arrived.
//
// [ApplyChange] applies a change to the records it names (the agent's
// path); [Space] holds a whole space in memory; [Merge] joins two spaces.
// Applying and merging agree, and replicas holding the same changes encode
// to the same bytes whatever the order, duplication or gaps of delivery.
//
// Conflicts are data: [Record.Conflicts] lists the registers with several
// siblings and a delete concurrent with an edit; [Record.Resolve] builds an
// op that replaces exactly the siblings it names.
//
// See docs/crdt.md for the semantics with worked examples and
// docs/format.md for the binary encodings (versioned, deterministic,
// bounded decoders).
package crdt
