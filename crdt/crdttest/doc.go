// Package crdttest holds test helpers for package crdt and its users: a
// simulator of replicas that write random operations and exchange changes
// in random orders (with duplicates, delays, gaps and whole-state merges),
// and an oracle that computes, independently of crdt's merge code, what
// every replica must show.
//
// The oracle works from the full history: for every change it knows what
// its author had applied when writing it (its knowledge, K). A register
// write w is live iff no write to the same field, no delete of the record
// (and no resolve naming w) by an author whose K contained w exists among
// the changes held. This matches the merge only on states whose held
// changes are closed under K (every change held has all its K held too),
// so CheckOracle is applied to those states, and always to the final one.
package crdttest
