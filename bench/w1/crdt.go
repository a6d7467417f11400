package w1

import (
	"bytes"
	"compress/flate"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"fieldsync/crdt"
)

// Result is one W1 run. The JSON names are BENCH.md's.
type Result struct {
	Workload          string  `json:"workload"`
	Size              string  `json:"size"`
	Layer             string  `json:"layer"`
	UpdatesPerS       float64 `json:"updates_per_s"`
	InitSyncMS        float64 `json:"init_sync_ms"`
	InitSyncBytes     int64   `json:"init_sync_bytes"`
	DeltaSyncMS       float64 `json:"delta_sync_ms"`
	DeltaBytesAB      int64   `json:"delta_bytes_ab"`
	DeltaBytesBA      int64   `json:"delta_bytes_ba"`
	Conflicts         int     `json:"conflicts"`
	ExpectedConflicts int     `json:"expected_conflicts"`
	Converged         bool    `json:"converged"`
	StateBytes        int64   `json:"state_bytes"`
	PeakRSSMB         float64 `json:"peak_rss_mb"`
	// LiveHeapMB is the largest live heap (as marked by the last GC, read
	// at the end of each phase without forcing one) in MB: what the two
	// replicas and the bench really hold; peak RSS adds the GC's headroom.
	LiveHeapMB float64 `json:"live_heap_mb"`
	Nproc      int     `json:"nproc"`
	GoVersion  string  `json:"go_version"`
	// Not in BENCH.md's list, useful to compare:
	Records        int     `json:"records"`
	Updates        int     `json:"updates_per_side"`
	ConflictsMatch bool    `json:"conflicts_match"` // every expected pair shows both values, nothing else conflicts
	StateEncodeMS  float64 `json:"state_encode_ms"`
	Compressed     bool    `json:"compressed"` // sync frames were DEFLATE-compressed
	// With Options.ReportDeflate: the sync bytes had the frames been
	// compressed (BestSpeed); 0 otherwise.
	InitSyncBytesDeflate int64 `json:"init_sync_bytes_deflate,omitempty"`
	DeltaBytesABDeflate  int64 `json:"delta_bytes_ab_deflate,omitempty"`
	DeltaBytesBADeflate  int64 `json:"delta_bytes_ba_deflate,omitempty"`
	// CPU time (user+system, all threads, GC included) of the same phases:
	// on a shared, loaded machine these are steadier than wall times.
	UpdatesCPUMS   float64 `json:"updates_cpu_ms"`
	InitSyncCPUMS  float64 `json:"init_sync_cpu_ms"`
	DeltaSyncCPUMS float64 `json:"delta_sync_cpu_ms"`
}

// Options tune RunCRDTWith.
type Options struct {
	// Compress sync batches with DEFLATE at Level (0 = BestSpeed).
	Compress bool
	Level    int
	// ReportDeflate also measures, outside the timed sections, how many
	// bytes the same frames take compressed with DEFLATE (BestSpeed).
	ReportDeflate bool
}

const startWall = 1_780_000_000_000 // 2026-05-28, ms

type side struct {
	id    crdt.ReplicaID
	space *crdt.Space
	clock crdt.Clock
	seq   uint64
	phys  int64
	log   changeLog
}

// changeLog holds a side's own changes encoded, as the agent's store holds
// envelopes: a change costs its encoding (~80 bytes for one field), not
// its Go structs (~240 bytes plus the value).
// Changes are appended in seq order and stored in chunks, so that growing
// the log never copies it and trimming frees whole chunks. A side's seqs
// are contiguous, so refs[i] is seq first+i and a ref need not say it
// (16 bytes a change, not 24).
type changeLog struct {
	chunks [][]byte
	refs   []logRef
	first  uint64 // the seq of refs[0]
}

type logRef struct {
	chunk, off int32
	n          int32
	hint       int32 // the change's EncodedSizeHint, to cut frames without decoding
}

const logChunk = 256 << 10

func (l *changeLog) append(ch *crdt.Change) error {
	if len(l.refs) == 0 {
		l.first = ch.Seq
	} else if ch.Seq != l.first+uint64(len(l.refs)) {
		return fmt.Errorf("w1: log of seqs %d..%d: appending seq %d", l.first, l.first+uint64(len(l.refs))-1, ch.Seq)
	}
	var last []byte
	if n := len(l.chunks); n > 0 {
		last = l.chunks[n-1]
	}
	if hint := ch.EncodedSizeHint(); last == nil || cap(last)-len(last) < hint {
		last = make([]byte, 0, max(logChunk, hint))
		l.chunks = append(l.chunks, last)
	}
	off := len(last)
	b, err := ch.AppendBinary(last)
	if err != nil {
		return err
	}
	l.chunks[len(l.chunks)-1] = b
	l.refs = append(l.refs, logRef{chunk: int32(len(l.chunks) - 1), off: int32(off), n: int32(len(b) - off), hint: int32(ch.EncodedSizeHint())})
	return nil
}

func (l *changeLog) bytes(r logRef) []byte {
	return l.chunks[r.chunk][r.off : r.off+r.n]
}

func (s *side) next() (uint64, crdt.Timestamp) {
	s.seq++
	s.phys++
	return s.seq, s.clock.Now(s.phys)
}

// commit applies a local change and logs it. The change and its ops are
// scratch the caller may reuse: Apply copies what it keeps.
func (s *side) commit(ch *crdt.Change) error {
	if err := s.space.Apply(ch); err != nil {
		return err
	}
	return s.log.append(ch)
}

// update makes one local update: build the op from the current record,
// wrap it in its own change, apply it, log it.
func (s *side) update(rec crdt.RecordID, field string, value []byte, ops *[1]crdt.Op) error {
	r := s.space.Records[rec]
	ops[0] = r.Put(field, value)
	seq, hlc := s.next()
	return s.commit(&crdt.Change{Author: s.id, Seq: seq, HLC: hlc, Ops: ops[:]})
}

// FrameBytes bounds the encoded changes of one sync frame (docs/design.md §6:
// frames of at most 1 MiB).
const FrameBytes = 1 << 20

// missing returns the entries of src's log that dst lacks: what a version
// vector exchange tells the sender before it streams.
func missing(src, dst *side) []logRef {
	refs, first := src.log.refs, src.log.first
	has := func(i int) bool {
		return dst.space.Context.Contains(crdt.Dot{Replica: src.id, Seq: first + uint64(i)})
	}
	// Usually dst holds a prefix of the log: then what it lacks is the
	// rest, shared rather than copied (the log is not written meanwhile).
	i := 0
	for i < len(refs) && has(i) {
		i++
	}
	j := i
	for j < len(refs) && !has(j) {
		j++
	}
	if j == len(refs) {
		return refs[i:len(refs):len(refs)]
	}
	out := slices.Clone(refs[i:j])
	for k := j; k < len(refs); k++ {
		if !has(k) {
			out = append(out, refs[k])
		}
	}
	return out
}

// trim drops from s's log the changes peer holds: with one peer, a change
// it acknowledged (its context contains it) is never sent again. (The
// agent keeps every envelope in its store, on disk; this in-memory layer
// keeps what its one peer still lacks.) Changes are acknowledged in order,
// so this drops a prefix, and with it the chunks it fills.
func (s *side) trim(peer *side) {
	l := &s.log
	i := 0
	for i < len(l.refs) && peer.space.Context.Contains(crdt.Dot{Replica: s.id, Seq: l.first + uint64(i)}) {
		i++
	}
	if i == 0 {
		return
	}
	if i == len(l.refs) {
		*l = changeLog{}
		return
	}
	keep := l.refs[i].chunk
	for c := int32(0); c < keep; c++ {
		l.chunks[c] = nil
	}
	l.refs = append([]logRef(nil), l.refs[i:]...)
	l.first += uint64(i)
}

// frames cuts the logged changes refs into frames of at most FrameBytes
// (one frame can exceed it with a single change) and calls emit with each
// frame's encoded changes, which crdt.TranscodeChanges turns into a batch:
// the sender decodes its log as it streams, a frame at a time, one change
// at a time (holding a frame of decoded changes cost ~4 times the frame).
func frames(l *changeLog, refs []logRef, emit func([][]byte) error) error {
	var batch [][]byte
	size := 0
	for _, r := range refs {
		n := int(r.hint)
		if len(batch) > 0 && size+n > FrameBytes {
			if err := emit(batch); err != nil {
				return err
			}
			batch, size = batch[:0], 0
		}
		batch = append(batch, l.bytes(r))
		size += n
	}
	if len(batch) > 0 {
		return emit(batch)
	}
	return nil
}

// transfer streams the logged changes refs of src to dst as the two would
// over a connection: a sender goroutine decodes its log and encodes (and
// compresses) frames of at most FrameBytes, a receiver decodes and applies
// them to dst as they come, so the two sides work at the same time, as two
// machines do. It returns the bytes sent. The sender reads only src's log
// (not written meanwhile); the receiver alone writes dst.
func transfer(src *side, refs []logRef, dst *side, opt Options) (int64, error) {
	level := crdt.NoCompression
	if opt.Compress {
		level = opt.Level
		if level == 0 {
			level = flate.BestSpeed
		}
	}
	out := make(chan []byte, 2)
	sendErr := make(chan error, 1)
	var total int64
	go func() {
		defer close(out)
		sendErr <- frames(&src.log, refs, func(encs [][]byte) error {
			b, err := crdt.TranscodeChanges(encs, level)
			if err != nil {
				return err
			}
			total += int64(len(b))
			out <- b
			return nil
		})
	}()
	var recvErr error
	for b := range out {
		if recvErr != nil {
			continue // drain
		}
		// Decoded one change at a time into scratch: Apply copies what
		// it keeps, so the receiver holds the frame, not its changes.
		recvErr = crdt.DecodeChangesFunc(b, dst.space.Apply)
	}
	if err := <-sendErr; err != nil {
		return 0, err
	}
	// With two replicas each side only ever ships its own changes, so the
	// received ones are not logged (they live on in dst's state).
	return total, recvErr
}

// sync sends from src to dst the changes dst lacks.
func sync(src, dst *side, opt Options) (int64, error) {
	return transfer(src, missing(src, dst), dst, opt)
}

// deflatedSize is the size of the logged changes refs cut into the same
// frames as transfer's, each compressed with DEFLATE (BestSpeed). Not timed.
func deflatedSize(src *side, refs []logRef) (int64, error) {
	var total int64
	err := frames(&src.log, refs, func(encs [][]byte) error {
		b, err := crdt.TranscodeChanges(encs, flate.BestSpeed)
		total += int64(len(b))
		return err
	})
	return total, err
}

// syncBoth runs both directions at once, after both sides learnt what the
// other lacks (the version-vector exchange).
func syncBoth(a, b *side, opt Options) (ab, ba int64, err error) {
	toB, toA := missing(a, b), missing(b, a)
	done := make(chan error, 1)
	go func() {
		var err error
		ba, err = transfer(b, toA, a, opt)
		done <- err
	}()
	ab, err = transfer(a, toB, b, opt)
	if err2 := <-done; err == nil {
		err = err2
	}
	return ab, ba, err
}

// RunCRDT runs W1 on the crdt layer (in memory) and prints the table, and
// with jsonOut the JSON line. Sync frames are sent plain (the timed figures
// are encode, decode and apply, as in BENCH.md's prototype); the bytes the
// same frames take DEFLATE-compressed are reported beside them.
func RunCRDT(size Size, out io.Writer, jsonOut bool) (Result, error) {
	res, err := RunCRDTWith(size, Options{ReportDeflate: true})
	if err != nil {
		return res, err
	}
	PrintTable(out, res)
	if jsonOut {
		b, _ := json.Marshal(res)
		fmt.Fprintf(out, "%s\n", b)
	}
	return res, nil
}

// RunCRDTWith runs W1 on the crdt layer and returns the measurements.
func RunCRDTWith(size Size, opt Options) (Result, error) {
	res := Result{Workload: "W1", Size: size.Name, Layer: "crdt", Nproc: runtime.NumCPU(),
		GoVersion: runtime.Version(), Records: size.Records, Updates: size.Updates}
	maxLive = 0
	// The workload is drawn in its two stages, so that the initial values
	// and the updates are never held at once.
	gen := NewGenerator(size)
	w := gen.Initial()
	ids := make([]crdt.RecordID, size.Records)
	for i := range ids {
		ids[i] = crdt.RecordID(RecordID(i))
	}
	a := &side{id: replica(0xa), space: crdt.NewSpace(), phys: startWall}
	b := &side{id: replica(0xb), space: crdt.NewSpace(), phys: startWall}

	// Step 2: A creates every record, one change per record.
	var slab valueSlab
	var ops [len(Fields)]crdt.Op
	for r := range w.Initial {
		for f, name := range Fields {
			ops[f] = crdt.NewPut(ids[r], name, slab.bytes(w.Initial[r][f]))
		}
		seq, hlc := a.next()
		if err := a.commit(&crdt.Change{Author: a.id, Seq: seq, HLC: hlc, Ops: ops[:]}); err != nil {
			return res, err
		}
	}
	w.Initial = nil // the values now live in A's changes
	memCheckpoint("after create")
	// Step 3: initial sync A -> B.
	c0 := cpuTime()
	t0 := time.Now()
	res.Compressed = opt.Compress
	initial := missing(a, b)
	n, err := transfer(a, initial, b, opt)
	if err != nil {
		return res, err
	}
	res.InitSyncMS = ms(time.Since(t0))
	res.InitSyncCPUMS = cpuTime() - c0
	res.InitSyncBytes = n
	if opt.ReportDeflate {
		if res.InitSyncBytesDeflate, err = deflatedSize(a, initial); err != nil {
			return res, err
		}
	}
	initial = nil
	a.trim(b)
	memCheckpoint("after initial sync")

	// Step 4: offline phase. Values are prepared outside the timed loop.
	gen.Updates(w)
	res.ExpectedConflicts = len(w.Conflicts)
	// Each value is held once, as bytes: the picks drop their strings (the
	// expected conflicts keep their own), or the generated workload would
	// be held twice over while the replicas work.
	valsA := make([][]byte, len(w.A))
	for i := range w.A {
		valsA[i] = slab.bytes(w.A[i].Value)
		w.A[i].Value = ""
	}
	valsB := make([][]byte, len(w.B))
	for i := range w.B {
		valsB[i] = slab.bytes(w.B[i].Value)
		w.B[i].Value = ""
	}
	picksA, picksB := w.A, w.B
	w.A, w.B = nil, nil
	runtime.GC()
	c0 = cpuTime()
	t0 = time.Now()
	var op [1]crdt.Op
	for i, p := range picksA {
		if err := a.update(ids[p.Record], Fields[p.Field], valsA[i], &op); err != nil {
			return res, err
		}
	}
	res.UpdatesPerS = float64(len(picksA)) / time.Since(t0).Seconds()
	res.UpdatesCPUMS = cpuTime() - c0
	for i, p := range picksB {
		if err := b.update(ids[p.Record], Fields[p.Field], valsB[i], &op); err != nil {
			return res, err
		}
	}
	picksA, picksB, valsA, valsB = nil, nil, nil, nil
	noteLive()
	// Step 5: delta sync both ways.
	var toB, toA []logRef
	if opt.ReportDeflate { // before the clock starts: sync computes its own
		toB, toA = missing(a, b), missing(b, a)
	}
	memCheckpoint("before delta sync")
	c0 = cpuTime()
	t0 = time.Now()
	if res.DeltaBytesAB, res.DeltaBytesBA, err = syncBoth(a, b, opt); err != nil {
		return res, err
	}
	res.DeltaSyncMS = ms(time.Since(t0))
	res.DeltaSyncCPUMS = cpuTime() - c0
	memCheckpoint("after delta sync")
	// What follows (the DEFLATE report, state encoding, the conflict
	// check) is the bench's own measuring, not W1's work: start it from a
	// collected heap, as the update phase does, so that its garbage reuses
	// the sync's freed pages instead of stacking on them.
	runtime.GC()
	if opt.ReportDeflate {
		if res.DeltaBytesABDeflate, err = deflatedSize(a, toB); err != nil {
			return res, err
		}
		if res.DeltaBytesBADeflate, err = deflatedSize(b, toA); err != nil {
			return res, err
		}
		toB, toA = nil, nil
	}
	a.trim(b)
	b.trim(a)
	// The logs are gone: give their pages back before the state encoding's
	// large buffers.
	debug.FreeOSMemory()
	memCheckpoint("after deflate report")
	t0 = time.Now()
	sa, err := a.space.MarshalBinary()
	if err != nil {
		return res, err
	}
	res.StateEncodeMS = ms(time.Since(t0))
	sb, err := b.space.MarshalBinary()
	if err != nil {
		return res, err
	}
	res.StateBytes = int64(len(sa))
	res.Converged = bytes.Equal(sa, sb)
	memCheckpoint("after state encode")
	res.Conflicts, res.ConflictsMatch = checkConflicts(w, ids, a, b)
	res.PeakRSSMB = PeakRSSMB()
	res.LiveHeapMB = liveHeapMB()
	return res, nil
}

// checkConflicts counts conflicted fields on A and matches them pair by
// pair against the generator: each expected pair has exactly A's and B's
// last values, from A and B, and no other field is in conflict.
func checkConflicts(w *Workload, ids []crdt.RecordID, a, b *side) (int, bool) {
	count := 0
	for _, id := range ids {
		count += len(a.space.Records[id].Conflicts())
	}
	ok := count == len(w.Conflicts)
	for _, c := range w.Conflicts {
		f, found := a.space.Records[ids[c.Record]].Register(Fields[c.Field])
		if !found || len(f.Siblings) != 2 {
			ok = false
			continue
		}
		got := map[crdt.ReplicaID]string{}
		for _, s := range f.Siblings {
			got[s.Dot.Replica] = string(s.Value)
		}
		if got[a.id] != c.ValueA || got[b.id] != c.ValueB {
			ok = false
		}
	}
	return count, ok
}

func replica(b byte) crdt.ReplicaID {
	var r crdt.ReplicaID
	for i := range r {
		r[i] = b
	}
	return r
}

// valueSlab hands out the workload's input values carved from shared
// blocks (W1's values are ~57 bytes, which the allocator rounds up to 64):
// the bench holds them outside the timed loops; Apply copies each into the
// record.
type valueSlab struct{ free []byte }

func (s *valueSlab) bytes(v string) []byte {
	if len(v) > 1024 {
		return []byte(v)
	}
	if len(s.free) < len(v) {
		s.free = make([]byte, 64<<10)
	}
	b := s.free[:len(v):len(v)]
	copy(b, v)
	s.free = s.free[len(v):]
	return b
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// PeakRSSMB returns the process's peak resident set size (VmHWM) in MB
// (10^6 bytes), or 0 where /proc is not available.
func PeakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				return kb * 1024 / 1e6
			}
		}
	}
	return 0
}

// PrintTable prints the figures of BENCH.md for people.
func PrintTable(out io.Writer, r Result) {
	frames := "plain"
	if r.Compressed {
		frames = "DEFLATE"
	}
	fmt.Fprintf(out, "W1-%s layer %s: %d records, 2×%d updates, %s sync frames (nproc %d, %s)\n", r.Size, r.Layer, r.Records, r.Updates, frames, r.Nproc, r.GoVersion)
	row := func(k, v string) { fmt.Fprintf(out, "  %-26s %s\n", k, v) }
	cpu := func(ms float64) string { // the agent layer measures wall time only
		if ms <= 0 {
			return ""
		}
		return fmt.Sprintf(" (CPU %.1f ms)", ms)
	}
	ups := fmt.Sprintf("%.0f", r.UpdatesPerS)
	if r.UpdatesCPUMS > 0 {
		ups += fmt.Sprintf(" (CPU: %.0f/s)", float64(r.Updates)/(r.UpdatesCPUMS/1000))
	}
	row("local updates/s", ups)
	row("initial sync", fmt.Sprintf("%.1f ms%s, %s", r.InitSyncMS, cpu(r.InitSyncCPUMS), mb(r.InitSyncBytes)))
	row("delta sync (both ways)", fmt.Sprintf("%.1f ms%s, A→B %s, B→A %s", r.DeltaSyncMS, cpu(r.DeltaSyncCPUMS), mb(r.DeltaBytesAB), mb(r.DeltaBytesBA)))
	if r.Updates > 0 {
		row("bytes per changed field", fmt.Sprintf("%.1f", float64(r.DeltaBytesAB+r.DeltaBytesBA)/float64(2*r.Updates)))
	}
	if r.Records > 0 {
		row("state bytes per record", fmt.Sprintf("%.1f (%s total)", float64(r.StateBytes)/float64(r.Records), mb(r.StateBytes)))
	}
	if r.InitSyncBytesDeflate > 0 {
		row("same frames with DEFLATE", fmt.Sprintf("initial %s, delta A→B %s, B→A %s (%.1f bytes per changed field)",
			mb(r.InitSyncBytesDeflate), mb(r.DeltaBytesABDeflate), mb(r.DeltaBytesBADeflate),
			float64(r.DeltaBytesABDeflate+r.DeltaBytesBADeflate)/float64(2*r.Updates)))
	}
	if r.LiveHeapMB > 0 {
		row("peak RSS", fmt.Sprintf("%.1f MB (largest live heap %.1f MB)", r.PeakRSSMB, r.LiveHeapMB))
	} else {
		row("peak RSS", fmt.Sprintf("%.1f MB", r.PeakRSSMB))
	}
	row("conflicts", fmt.Sprintf("%d of %d expected (matched pair by pair: %v)", r.Conflicts, r.ExpectedConflicts, r.ConflictsMatch))
	row("converged", fmt.Sprintf("%v", r.Converged))
}

func mb(n int64) string { return fmt.Sprintf("%.2f MB", float64(n)/1e6) }

// maxLive is the largest live heap seen at a checkpoint, in bytes.
var maxLive uint64

// noteLive reads the live heap as of the last GC (without forcing one,
// which would lower the peak RSS being measured) and keeps the largest.
func noteLive() {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		maxLive = max(maxLive, s[0].Value.Uint64())
	}
}

// liveHeapMB returns the largest live heap noted in this run, in MB.
func liveHeapMB() float64 {
	noteLive()
	v := maxLive
	maxLive = 0
	return float64(v) / 1e6
}

// memCheckpoint notes the live heap, and prints it when FIELDSYNC_W1_DEBUG
// is set (after a forced GC).
func memCheckpoint(where string) {
	noteLive()
	if os.Getenv("FIELDSYNC_W1_TRACE") != "" {
		ms := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"},
			{Name: "/memory/classes/heap/free:bytes"}, {Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
		metrics.Read(ms)
		fmt.Fprintf(os.Stderr, "w1: %-20s live heap (last GC) %.1f MB, peak RSS %.1f MB; objects %.1f unused %.1f free %.1f released %.1f total %.1f\n", where, float64(maxLive)/1e6, PeakRSSMB(),
			float64(ms[0].Value.Uint64())/1e6, float64(ms[1].Value.Uint64())/1e6, float64(ms[2].Value.Uint64())/1e6, float64(ms[4].Value.Uint64())/1e6, float64(ms[3].Value.Uint64())/1e6)
	}
	if os.Getenv("FIELDSYNC_W1_DEBUG") == "" {
		return
	}
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	fmt.Fprintf(os.Stderr, "w1: %-20s live heap %.1f MB, peak RSS %.1f MB\n", where, float64(m.HeapAlloc)/1e6, PeakRSSMB())
	if dir := os.Getenv("FIELDSYNC_W1_HEAPDIR"); dir != "" {
		if f, err := os.Create(filepath.Join(dir, strings.ReplaceAll(where, " ", "_")+".heap")); err == nil {
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
}
