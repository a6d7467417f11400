// Package checker judges a randomized mesh run (e2e's chaos test) from the
// outside, the way Jepsen's checkers do: it imports no fieldsync package and
// reads only what a user could see — the clients' operation log (JSON lines,
// one per attempted write, with its outcome ok / failed / unknown) and the
// CLI's `--json` output on every agent after the faults healed (`space
// digest`, `record get`, `history`, `conflicts list`, and `status`).
//
// What it checks (docs/design.md §3):
//
//   - convergence: every officer has the same state digest, every agent
//     (relays included) the same envelope set; `record get`, `history` and
//     `conflicts list` print the same on every officer;
//   - no lost update, as an oracle over the history of every record: each
//     op names in its `resolves` the dots it saw and replaced; an entry (a
//     register sibling from a put or a resolve, a set element's add, a note,
//     a delete marker) is live iff no op names it. `record get` must show
//     exactly the live entries: a register's siblings, a set's elements (an
//     element is there while one of its adds is live: add wins over a
//     concurrent remove), every note (a tombstone iff an op saw it),
//     `deleted` iff a delete marker is live, `delete_conflict` iff something
//     the live deletes did not see survives. A live entry not shown is a
//     lost update; a replaced one still shown is a zombie;
//   - what each op may name in its resolves follows docs/crdt.md (a put its
//     field's siblings and the delete markers, a resolve its field's
//     siblings, a set remove its element's adds, a delete anything...);
//   - every acknowledged op is in every officer's history (durability and
//     propagation), with the dot its acknowledgement printed. Puts, notes
//     and resolves are named by a value (or a resolve's reason) unique over
//     the run; set adds and removes (elements from a small pool, so that
//     they collide) and deletes are counted per author, record and element:
//     no fewer than acknowledged, no more than sent (ok or unknown);
//   - no value appears that no client wrote (a resolve --pick gives again a
//     value some write to the field gave), and no op reported as failed
//     was applied;
//   - ops on one agent see that agent's earlier acknowledged ops: if A was
//     acknowledged by agent N before B started on N, and B sees entries
//     like A (same field; same element; a delete sees everything), B's
//     resolves reach A, directly or through ops that replaced A — unless an
//     op B does not see through removed A (a remove, a delete, a revival);
//   - no agent's `status` reports a fork, a gap, a missing acknowledged
//     envelope or a corrupt value (rejections are counted, not judged);
//   - an author's HLC grows with its seq (the HLC survives restarts);
//   - `conflicts list` names exactly the fields `record get` shows with more
//     than one sibling, and every history signature is valid.
//
// CheckHostile judges the hostile relay from its own log (a test-side file)
// and the agents' `status` in its phases: altered envelopes all rejected
// (exactly once each in the withhold phase, never more rejections than
// alterations over the run), no altered value shown, replays that change
// nothing, the exact withheld range in every other officer's gaps while
// the relay was their only path, and convergence once an honest path
// existed.
//
// With trust events in the op log (trust.go: release, withdraw, revoke,
// bundle), convergence and the oracle apply to the entitled agents only
// (bureau on the final release list from `space list`, not revoked); the
// revoked device's acknowledged writes past its cut-off (from the revoke
// JSON) must be visible nowhere, those at or below survive like any
// other; values written on the withdrawing officer after its final
// withdrawal returned must not be readable on the withdrawn bureau's
// devices, which keep their own writes; writes of a bureau withdrawn at
// the end count as unknown (stranded); bundle import reports add up.
//
// Ops whose outcome is unknown (timed out, agent killed or paused mid-call)
// may or may not have happened: the checker accepts both.
package checker
