// Package checker judges a randomized mesh run (e2e's chaos test) from the
// outside, the way Jepsen's checkers do: it imports no fieldsync package and
// reads only what a user could see — the clients' operation log (JSON lines,
// one per attempted write, with its outcome ok / failed / unknown) and the
// CLI's `--json` output on every agent after the faults healed (`space
// digest`, `record get`, `history`, `conflicts list`, and `status`).
//
// What it checks (DESIGN §3):
//
//   - convergence: every officer has the same state digest, every agent
//     (relays included) the same envelope set; `record get`, `history` and
//     `conflicts list` print the same on every officer;
//   - no lost update, as an oracle over the history: the live siblings of a
//     field are exactly the writes to it that no other write names in its
//     `resolves` (the dots it saw and replaced). A write missing from that
//     set is a lost update; a visible sibling some write resolved is a zombie;
//   - every acknowledged write is in every officer's history (durability and
//     propagation), with the dot its acknowledgement printed;
//   - no value appears that no client wrote, and no write reported as failed
//     was applied;
//   - writes on one agent see that agent's earlier acknowledged writes: if
//     write A to a field was acknowledged by agent N before write B to the
//     same field started on N, B's resolves reach A (directly or through
//     writes that replaced A);
//   - no agent's `status` reports a fork, a gap, a missing acknowledged
//     envelope or a corrupt value (rejections are counted, not judged);
//   - every dot a write resolves is a write to the same field in the history;
//   - an author's HLC grows with its seq (the HLC survives restarts);
//   - `conflicts list` names exactly the fields `record get` shows with more
//     than one sibling, and every history signature is valid.
//
// Ops whose outcome is unknown (timed out, agent killed or paused mid-call)
// may or may not have happened: the checker accepts both.
package checker
