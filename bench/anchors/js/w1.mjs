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

// Values are registers (ImmutableString), as in Yjs's map and fieldsync's
// fields: Automerge 3 makes a plain string a collaborative text object,
// which is another data type and far slower to write.
const reg = (v) => new Automerge.ImmutableString(v);

function automerge() {
  let a = Automerge.init(), b = Automerge.init();
  for (let i = 0; i < w.initial.length; i++) {
    a = Automerge.change(a, (d) => {
      const r = {};
      for (let f = 0; f < F.length; f++) r[F[f]] = reg(w.initial[i][f]);
      d[rid(i)] = r;
    });
  }
  // Sync protocol, in memory, until neither side has anything to send.
  const sync = () => {
    let sa = Automerge.initSyncState(), sb = Automerge.initSyncState();
    let ab = 0, ba = 0;
    for (;;) {
      let msg, sent = false;
      [sa, msg] = Automerge.generateSyncMessage(a, sa);
      if (msg) { ab += msg.length; [b, sb] = Automerge.receiveSyncMessage(b, sb, msg); sent = true; }
      [sb, msg] = Automerge.generateSyncMessage(b, sb);
      if (msg) { ba += msg.length; [a, sa] = Automerge.receiveSyncMessage(a, sa, msg); sent = true; }
      if (!sent) return [ab, ba];
    }
  };
  let t = now();
  let [ab, ba] = sync();
  out.init_sync_ms = now() - t;
  out.init_sync_bytes = ab + ba;
  const upd = (doc, picks) => {
    for (const [r, f, v] of picks) doc = Automerge.change(doc, (d) => { d[rid(r)][F[f]] = reg(v); });
    return doc;
  };
  t = now();
  a = upd(a, w.a);
  out.updates_per_s = w.a.length / ((now() - t) / 1000);
  b = upd(b, w.b);
  t = now();
  [ab, ba] = sync();
  out.delta_sync_ms = now() - t;
  out.delta_bytes_ab = ab;
  out.delta_bytes_ba = ba;
  let kept = 0;
  for (const [r, f, va, vb] of w.conflicts) {
    const c = Automerge.getConflicts(a[rid(r)], F[f]);
    const vals = c ? Object.values(c).map(String) : [];
    if (vals.length === 2 && vals.includes(va) && vals.includes(vb)) kept++;
  }
  out.conflicts = kept;
  const ha = Automerge.getHeads(a).sort().join(), hb = Automerge.getHeads(b).sort().join();
  out.converged = ha === hb;
  out.state_bytes = Automerge.save(a).length;
}

if (lib === "yjs") yjs();
else if (lib === "automerge") automerge();
else { console.error("usage: node w1.mjs yjs|automerge WORKLOAD.json"); process.exit(2); }
out.expected_conflicts = w.conflicts.length;
out.peak_rss_mb = process.resourceUsage().maxRSS / 1024; // KiB -> MiB
out.node = process.version;
console.log(JSON.stringify(out));
