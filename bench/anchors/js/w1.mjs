// W1 in memory on an anchor library (BENCH.md, "Anchors"): Yjs (one
// document, a map per record) or Automerge (one document). It reads the
// workload fieldsync's reference generator wrote (bench/w1), so both sides
// run exactly the same data, and prints one JSON line of figures.
//
//   node w1.mjs yjs|automerge WORKLOAD.json
import { readFileSync } from "node:fs";
import * as Y from "yjs";
import * as Automerge from "@automerge/automerge";

const [lib, file] = process.argv.slice(2);
const w = JSON.parse(readFileSync(file, "utf8"));
const F = w.fields;
const rid = (i) => "r" + String(i).padStart(6, "0");
const now = () => performance.now();
const out = { lib, records: w.initial.length, updates: w.a.length };

function yjs() {
  const a = new Y.Doc(), b = new Y.Doc();
  const recsA = a.getMap("records");
  for (let i = 0; i < w.initial.length; i++) {
    a.transact(() => {
      const m = new Y.Map();
      recsA.set(rid(i), m);
      for (let f = 0; f < F.length; f++) m.set(F[f], w.initial[i][f]);
    });
  }
  // Initial sync: A's state as one update, applied by B.
  let t = now();
  const init = Y.encodeStateAsUpdate(a);
  Y.applyUpdate(b, init);
  out.init_sync_ms = now() - t;
  out.init_sync_bytes = init.length;
  // Offline: each update its own transaction.
  const upd = (doc, picks) => {
    const recs = doc.getMap("records");
    for (const [r, f, v] of picks) doc.transact(() => recs.get(rid(r)).set(F[f], v));
  };
  t = now();
  upd(a, w.a);
  out.updates_per_s = w.a.length / ((now() - t) / 1000);
  upd(b, w.b);
  // Delta both ways by state vectors.
  t = now();
  const svA = Y.encodeStateVector(a), svB = Y.encodeStateVector(b);
  const ab = Y.encodeStateAsUpdate(a, svB), ba = Y.encodeStateAsUpdate(b, svA);
  Y.applyUpdate(b, ab);
  Y.applyUpdate(a, ba);
  out.delta_sync_ms = now() - t;
  out.delta_bytes_ab = ab.length;
  out.delta_bytes_ba = ba.length;
  // A map register keeps one value: a conflict is kept only if both
  // values can be read, which Yjs never offers.
  out.conflicts = 0;
  out.converged = JSON.stringify(a.getMap("records").toJSON()) === JSON.stringify(b.getMap("records").toJSON());
  out.state_bytes = Y.encodeStateAsUpdate(a).length;
}

// Automerge through its wasm handle (the Rust core), as BENCH.md's anchor:
// the JS proxy API keeps an immutable JS copy of the document and copies
// the root map of 10,000 records on every change, which is a cost of that
// wrapper, not of the CRDT. Values are plain scalar strings (registers, as
// Yjs's map entries and fieldsync's fields), one change per record created
// and per update. Sync is in memory by heads: each side's changes the
// other lacks (getChanges), applied (applyChanges).
function automerge() {
  const a = Automerge.getBackend(Automerge.init()), b = Automerge.getBackend(Automerge.init());
  const objs = new Array(w.initial.length);
  for (let i = 0; i < w.initial.length; i++) {
    const id = a.putObject("_root", rid(i), {});
    for (let f = 0; f < F.length; f++) a.put(id, F[f], w.initial[i][f]);
    a.commit();
    objs[i] = id; // an object's ID is the same on every replica
  }
  const size = (chs) => chs.reduce((n, c) => n + c.length, 0);
  let t = now();
  const init = a.getChanges(b.getHeads());
  b.applyChanges(init);
  out.init_sync_ms = now() - t;
  out.init_sync_bytes = size(init);
  const upd = (doc, picks) => {
    for (const [r, f, v] of picks) { doc.put(objs[r], F[f], v); doc.commit(); }
  };
  t = now();
  upd(a, w.a);
  out.updates_per_s = w.a.length / ((now() - t) / 1000);
  upd(b, w.b);
  t = now();
  const ab = a.getChanges(b.getHeads()), ba = b.getChanges(a.getHeads());
  b.applyChanges(ab);
  a.applyChanges(ba);
  out.delta_sync_ms = now() - t;
  out.delta_bytes_ab = size(ab);
  out.delta_bytes_ba = size(ba);
  let kept = 0;
  for (const [r, f, va, vb] of w.conflicts) {
    const vals = a.getAll(objs[r], F[f]).map((x) => x[1]);
    if (vals.length === 2 && vals.includes(va) && vals.includes(vb)) kept++;
  }
  out.conflicts = kept;
  out.converged = a.getHeads().sort().join() === b.getHeads().sort().join();
  out.state_bytes = a.save().length;
}

if (lib === "yjs") yjs();
else if (lib === "automerge") automerge();
else { console.error("usage: node w1.mjs yjs|automerge WORKLOAD.json"); process.exit(2); }
out.expected_conflicts = w.conflicts.length;
out.peak_rss_mb = process.resourceUsage().maxRSS / 1024; // KiB -> MiB
out.node = process.version;
console.log(JSON.stringify(out));
