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
	"runtime/metrics"
	"runtime/pprof"
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
	log   []*crdt.Change
	phys  int64
}

func (s *side) change(ops []crdt.Op) *crdt.Change {
	s.seq++
	s.phys++
	return &crdt.Change{Author: s.id, Seq: s.seq, HLC: s.clock.Now(s.phys), Ops: ops}
}

// update makes one local update: build the op from the current record,
// wrap it in its own change, apply it, log it.
func (s *side) update(rec crdt.RecordID, field string, value []byte) error {
	r := s.space.Records[rec]
	ch := s.change([]crdt.Op{r.Put(field, value)})
	if err := s.space.Apply(ch); err != nil {
		return err
	}
	s.log = append(s.log, ch)
	return nil
}

// FrameBytes bounds the encoded changes of one sync frame (docs/design.md §6:
// frames of at most 1 MiB).
const FrameBytes = 1 << 20

// missing returns the changes of src's log that dst lacks: what a version
// vector exchange tells the sender before it streams.
func missing(src, dst *side) []*crdt.Change {
	var out []*crdt.Change
	for _, ch := range src.log {
		if !dst.space.Context.Contains(ch.Dot()) {
			out = append(out, ch)
		}
	}
	return out
}

// transfer streams chs from one replica to another as the two would over a
// connection: a sender goroutine encodes (and compresses) frames of at most
// FrameBytes, a receiver decodes and applies them to dst as they come, so
// the two sides work at the same time, as two machines do. It returns the
// bytes sent. The sender reads only chs (immutable); the receiver alone
// writes dst.
func transfer(chs []*crdt.Change, dst *side, opt Options) (int64, error) {
	level := crdt.NoCompression
	if opt.Compress {
		level = opt.Level
		if level == 0 {
			level = flate.BestSpeed
		}
	}
	frames := make(chan []byte, 2)
	sendErr := make(chan error, 1)
	var total int64
	go func() {
		defer close(frames)
		start, size := 0, 0
		for i, ch := range chs {
			n := ch.EncodedSizeHint()
			if i > start && size+n > FrameBytes {
				b, err := crdt.EncodeChangesLevel(chs[start:i], level)
				if err != nil {
					sendErr <- err
					return
				}
				total += int64(len(b))
				frames <- b
				start, size = i, 0
			}
			size += n
		}
		if start < len(chs) {
			b, err := crdt.EncodeChangesLevel(chs[start:], level)
			if err != nil {
				sendErr <- err
				return
			}
			total += int64(len(b))
			frames <- b
		}
		sendErr <- nil
	}()
	var recvErr error
	for b := range frames {
		if recvErr != nil {
			continue // drain
		}
		dec, err := crdt.DecodeChanges(b)
		if err != nil {
			recvErr = err
			continue
		}
		for _, ch := range dec {
			if err := dst.space.Apply(ch); err != nil {
				recvErr = err
				break
			}
		}
	}
	if err := <-sendErr; err != nil {
		return 0, err
	}
	// With two replicas each side only ever ships its own changes, so the
	// received ones are not logged (they live on in dst's state).
	return total, recvErr
}

// trim drops from s's log the changes peer holds: with one peer, a change
// it acknowledged (its context contains it) is never sent again. (The
// agent keeps every envelope in its store, on disk; this in-memory layer
// keeps what its one peer still lacks.)
func (s *side) trim(peer *side) {
	keep := s.log[:0]
	for _, ch := range s.log {
		if !peer.space.Context.Contains(ch.Dot()) {
			keep = append(keep, ch)
		}
	}
	clear(s.log[len(keep):])
	s.log = keep
	if cap(s.log) > 2*len(s.log)+64 {
		s.log = append([]*crdt.Change(nil), s.log...)
	}
}

// sync sends from src to dst the changes dst lacks.
func sync(src, dst *side, opt Options) (int64, error) {
	return transfer(missing(src, dst), dst, opt)
}

// deflatedSize is the size of chs cut into the same frames as transfer's,
// each compressed with DEFLATE (BestSpeed). Not timed.
func deflatedSize(chs []*crdt.Change) (int64, error) {
	var total int64
	start, size := 0, 0
	for i := 0; i <= len(chs); i++ {
		if i == len(chs) || i > start && size+chs[i].EncodedSizeHint() > FrameBytes {
			if i == start {
				break
			}
			b, err := crdt.EncodeChangesLevel(chs[start:i], flate.BestSpeed)
			if err != nil {
				return 0, err
			}
			total += int64(len(b))
			start, size = i, 0
		}
		if i < len(chs) {
			size += chs[i].EncodedSizeHint()
		}
	}
	return total, nil
}

// syncBoth runs both directions at once, after both sides learnt what the
// other lacks (the version-vector exchange).
func syncBoth(a, b *side, opt Options) (ab, ba int64, err error) {
	toB, toA := missing(a, b), missing(b, a)
	done := make(chan error, 1)
	go func() {
		var err error
		ba, err = transfer(toA, a, opt)
		done <- err
	}()
	ab, err = transfer(toB, b, opt)
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
	w := Generate(size)
	res.ExpectedConflicts = len(w.Conflicts)
	ids := make([]crdt.RecordID, size.Records)
	for i := range ids {
		ids[i] = crdt.RecordID(RecordID(i))
	}
	a := &side{id: replica(0xa), space: crdt.NewSpace(), phys: startWall}
	b := &side{id: replica(0xb), space: crdt.NewSpace(), phys: startWall}

	// Step 2: A creates every record, one change per record.
	var slab valueSlab
	for r := range w.Initial {
		ops := make([]crdt.Op, len(Fields))
		for f, name := range Fields {
			ops[f] = crdt.NewPut(ids[r], name, slab.bytes(w.Initial[r][f]))
		}
		ch := a.change(ops)
		if err := a.space.Apply(ch); err != nil {
			return res, err
		}
		a.log = append(a.log, ch)
	}
	w.Initial = nil // the values now live in A's changes
	memCheckpoint("after create")
	// Step 3: initial sync A -> B.
	c0 := cpuTime()
	t0 := time.Now()
	res.Compressed = opt.Compress
	initial := missing(a, b)
	n, err := transfer(initial, b, opt)
	if err != nil {
		return res, err
	}
	res.InitSyncMS = ms(time.Since(t0))
	res.InitSyncCPUMS = cpuTime() - c0
	res.InitSyncBytes = n
	if opt.ReportDeflate {
		if res.InitSyncBytesDeflate, err = deflatedSize(initial); err != nil {
			return res, err
		}
	}
	initial = nil
	a.trim(b)
	memCheckpoint("after initial sync")

	// Step 4: offline phase. Values are prepared outside the timed loop.
	valsA := make([][]byte, len(w.A))
	for i, p := range w.A {
		valsA[i] = slab.bytes(p.Value)
	}
	valsB := make([][]byte, len(w.B))
	for i, p := range w.B {
		valsB[i] = slab.bytes(p.Value)
	}
	picksA, picksB := w.A, w.B
	w.A, w.B = nil, nil
	runtime.GC()
	c0 = cpuTime()
	t0 = time.Now()
	for i, p := range picksA {
		if err := a.update(ids[p.Record], Fields[p.Field], valsA[i]); err != nil {
			return res, err
		}
	}
	res.UpdatesPerS = float64(len(picksA)) / time.Since(t0).Seconds()
	res.UpdatesCPUMS = cpuTime() - c0
	for i, p := range picksB {
		if err := b.update(ids[p.Record], Fields[p.Field], valsB[i]); err != nil {
			return res, err
		}
	}
	picksA, picksB, valsA, valsB = nil, nil, nil, nil
	noteLive()
	// Step 5: delta sync both ways.
	var toB, toA []*crdt.Change
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
	a.trim(b)
	b.trim(a)
	memCheckpoint("after delta sync")
	if opt.ReportDeflate {
		if res.DeltaBytesABDeflate, err = deflatedSize(toB); err != nil {
			return res, err
		}
		if res.DeltaBytesBADeflate, err = deflatedSize(toA); err != nil {
			return res, err
		}
		toB, toA = nil, nil
	}

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

// valueSlab hands out values carved from shared blocks: W1's values are
// ~57 bytes, which the allocator rounds up to 64, and each is immutable
// once made (Apply keeps a reference).
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
		fmt.Fprintf(os.Stderr, "w1: %-20s live heap (last GC) %.1f MB, peak RSS %.1f MB\n", where, float64(maxLive)/1e6, PeakRSSMB())
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
