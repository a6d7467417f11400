// Package rules holds fieldsync's trust rules as pure functions: who a
// space is released to (release lists over routing records), which epoch
// key is current (epochs ordered by the lists their key shares carry),
// which of two revocations of a device wins and what it cuts, what
// fork evidence and a conflicting certificate decide, and who may erase a
// space and which of two erase markers is kept. Every replica must
// reach the same answer from the same inputs, whatever order they came in;
// the property tests check that (docs/crdt.md, "Release lists" and
// "Epochs"; docs/crypto.md §4).
//
// The package does no I/O and keeps no state: no disk, sockets, clocks or
// randomness. Its inputs are plain values (fingerprints, key and device
// IDs, parsed certificates and revocations from fieldsync/crypto, which
// is all it imports besides the standard library). Holding the state,
// verifying signatures and acting on the answers stays in agent.
package rules
