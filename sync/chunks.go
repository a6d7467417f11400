package sync

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
)

// Attachment chunks (docs/sync.md "Attachment chunks"): after the
// envelopes, on streams whose ALPN says both ends know it, both sides
// exchange the chunks of attached files — sealed, content-addressed blobs
// of a space, named by the SHA-256 of their bytes (ChunkRef), outside every
// author's log. Chunks go last in a round, at the lowest priority, within
// the round's budget; what a cut round delivered is kept and the next
// round asks only for the rest, so a large file resumes where it stopped.

// ChunkRef names a chunk: SHA-256 of its sealed bytes. Anyone can check a
// chunk against it; only key holders can open it.
type ChunkRef [32]byte

// ChunkStore is implemented by a Store that holds attachment chunks.
// Methods may be called from several sessions at once.
type ChunkStore interface {
	// ChunkRefs lists the refs of the chunks held in space, ascending.
	ChunkRefs(space SpaceID) ([]ChunkRef, error)
	// WantsAllChunks: this node fetches every chunk peers hold in its spaces
	// (relays; `--attachments all`). Otherwise it fetches only ChunkWants.
	WantsAllChunks() bool
	// ChunkWants lists chunks of space this node wants now and lacks
	// (on-demand fetches).
	ChunkWants(space SpaceID) []ChunkRef
	// GetChunk returns a held chunk's bytes, or ErrNotFound.
	GetChunk(space SpaceID, ref ChunkRef) ([]byte, error)
	// PutChunk stores a chunk received from peer `from` once it is durable.
	// A chunk whose bytes do not hash to ref is refused with a
	// *RejectError (reason "chunk"); a chunk already held returns false.
	PutChunk(from PeerID, space SpaceID, ref ChunkRef, data []byte) (added bool, err error)
}

// ChunkCollector is implemented by a ChunkStore that deletes chunks no
// attachment it holds names any more (docs/sync.md, "Attachment chunks").
// A node that wants every chunk does not fetch those back from peers that
// still hold them.
type ChunkCollector interface {
	// CollectedChunks lists the chunks of space collected and not held
	// again.
	CollectedChunks(space SpaceID) ([]ChunkRef, error)
}

// ChunkStats counts attachment chunks moved by sync rounds.
type ChunkStats struct {
	Sent      uint64 // chunks sent
	BytesSent uint64 // their bytes
	Added     uint64 // chunks received and stored
	BytesIn   uint64 // their bytes
	Rejected  uint64 // chunks refused: bytes that do not match their ref
	HeldBack  uint64 // chunks the last round held back for the budget
}

// Chunk limits (docs/sync.md, "Attachment chunks").
const (
	// MaxChunk is the largest chunk sent or accepted (with its frame
	// header it fits one frame).
	MaxChunk = MaxFrame - chunkHeader
	// MaxChunkRefs bounds the refs one side lists in a round (per space and
	// in all): 8 MiB of refs.
	MaxChunkRefs = 1 << 18
	// MaxChunkWants bounds the chunks one side asks for in a round (at
	// most ~4 GiB at MaxChunk each; the rest waits for the next round).
	MaxChunkWants = 4096
	chunkHeader   = 16 + 32
	chunkSumEntry = 16 + 32 + 4
	refsPerFrame  = (MaxFrame - 16) / 32
)

const (
	chunkFlagAll  = 1 // wants every chunk
	chunkFlagSome = 2 // wants some chunks now
)

func (e *Engine) chunkStore() ChunkStore {
	cs, _ := e.store.(ChunkStore)
	return cs
}

type chunkWant struct {
	sp  SpaceID
	ref ChunkRef
}

type chunkSum struct {
	digest [32]byte
	count  uint32
}

func chunkDigest(refs []ChunkRef) [32]byte {
	h := sha256.New()
	h.Write([]byte("fieldsync chunk digest v1"))
	for _, r := range refs {
		h.Write(r[:])
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

func sortedSpaces[V any](m map[SpaceID]V) []SpaceID {
	out := make([]SpaceID, 0, len(m))
	for sp := range m {
		out = append(out, sp)
	}
	slices.SortFunc(out, func(a, b SpaceID) int { return a.Compare(b) })
	return out
}

// chunkPhase runs the four steps of the chunk phase, each in lockstep:
// sums (a digest of each space's refs, and what each side wants), the
// lists of refs where sums differ and the other side wants everything,
// wants, and the chunks. mine: the spaces we listed (the peer is entitled
// to them: we serve only those); theirs: the spaces the peer listed (we are
// entitled to them: we ask only for those).
func (s *session) chunkPhase(mine, theirs map[SpaceID]Vector) error {
	e := s.e
	cs := e.chunkStore() // negotiated only when set
	if cs == nil {
		return malformed("chunk phase without a chunk store")
	}
	// Chunks move only in spaces both sides hold (each listed it for the
	// other): a peer cannot make us store chunks of a space we do not have,
	// nor make us list the refs of a space it does not hold.
	both := func(sp SpaceID) bool {
		_, a := mine[sp]
		_, b := theirs[sp]
		return a && b
	}
	mySpaces := sortedSpaces(mine)
	myRefs := map[SpaceID][]ChunkRef{}
	mySums := map[SpaceID]chunkSum{}
	total := 0
	for _, sp := range mySpaces {
		refs, err := cs.ChunkRefs(sp)
		if err != nil {
			return err
		}
		if len(refs) > MaxChunkRefs-total {
			refs = refs[:MaxChunkRefs-total]
		}
		total += len(refs)
		myRefs[sp] = refs
		mySums[sp] = chunkSum{chunkDigest(refs), uint32(len(refs))}
	}
	myWants := map[SpaceID][]ChunkRef{}
	someWants := false
	for _, sp := range sortedSpaces(theirs) {
		if !both(sp) {
			continue
		}
		if w := cs.ChunkWants(sp); len(w) > 0 {
			myWants[sp] = w
			someWants = true
		}
	}
	var flags byte
	if cs.WantsAllChunks() {
		flags |= chunkFlagAll
	}
	if someWants {
		flags |= chunkFlagSome
	}

	// 1. Sums.
	peerSums := map[SpaceID]chunkSum{}
	var peerFlags byte
	err := s.exchange(func() error {
		buf := make([]byte, 0, MaxFrame)
		for _, sp := range mySpaces {
			if len(buf)+chunkSumEntry > MaxFrame {
				if err := s.write(frameChunkSum, buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
			sum := mySums[sp]
			buf = append(buf, sp[:]...)
			buf = append(buf, sum.digest[:]...)
			buf = binary.BigEndian.AppendUint32(buf, sum.count)
		}
		if len(buf) > 0 {
			if err := s.write(frameChunkSum, buf); err != nil {
				return err
			}
		}
		return s.write(frameChunkSumEnd, []byte{flags})
	}, func() error {
		for {
			typ, p, err := s.next()
			if err != nil {
				return eofUnexpected(err)
			}
			switch typ {
			case frameChunkSum:
				if len(p)%chunkSumEntry != 0 {
					return malformed("chunk sum of %d bytes", len(p))
				}
				for ; len(p) > 0; p = p[chunkSumEntry:] {
					if len(peerSums) >= MaxSpacesPerDigest {
						return malformed("too many chunk sums")
					}
					var sp SpaceID
					copy(sp[:], p)
					var sum chunkSum
					copy(sum.digest[:], p[16:48])
					sum.count = binary.BigEndian.Uint32(p[48:])
					peerSums[sp] = sum
				}
			case frameChunkSumEnd:
				if len(p) != 1 {
					return malformed("chunk sum end of %d bytes", len(p))
				}
				peerFlags = p[0]
				return nil
			default:
				return malformed("frame type %d in chunk sums", typ)
			}
		}
	})
	if err != nil {
		return err
	}
	// Both ends decide alike whether the rest runs: something differs that
	// a side wants, or a side wants some chunks now.
	differs := func(a, b map[SpaceID]chunkSum) bool { // a's spaces where b's sum is not a's
		for sp, sa := range a {
			if sa.count > 0 && both(sp) && b[sp] != sa {
				return true
			}
		}
		return false
	}
	if flags&chunkFlagSome == 0 && peerFlags&chunkFlagSome == 0 &&
		!(peerFlags&chunkFlagAll != 0 && differs(mySums, peerSums)) &&
		!(flags&chunkFlagAll != 0 && differs(peerSums, mySums)) {
		return nil
	}

	// 2. Refs, where the peer wants every chunk and its sum differs.
	offered := map[SpaceID][]ChunkRef{}
	err = s.exchange(func() error {
		if peerFlags&chunkFlagAll != 0 {
			for _, sp := range mySpaces {
				refs := myRefs[sp]
				if len(refs) == 0 || !both(sp) || peerSums[sp] == mySums[sp] {
					continue
				}
				for len(refs) > 0 {
					n := min(len(refs), refsPerFrame)
					buf := make([]byte, 0, 16+32*n)
					buf = append(buf, sp[:]...)
					for _, r := range refs[:n] {
						buf = append(buf, r[:]...)
					}
					if err := s.write(frameChunkHave, buf); err != nil {
						return err
					}
					refs = refs[n:]
				}
			}
		}
		return s.write(frameChunkHaveEnd)
	}, func() error {
		n := 0
		return s.readRefFrames(frameChunkHave, frameChunkHaveEnd, "chunk refs", func(sp SpaceID, refs []ChunkRef) error {
			if n += len(refs); n > MaxChunkRefs {
				return malformed("more than %d chunk refs offered", MaxChunkRefs)
			}
			if both(sp) {
				offered[sp] = append(offered[sp], refs...)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}

	// 3. Wants: on-demand wants first, then what was offered and is not held.
	// A chunk another session is fetching now is left to it (two rounds
	// at once, or two peers, never carry the same chunk twice); if that
	// session is cut, the next round asks again.
	type want = chunkWant
	var wants []want
	wanted := map[want]bool{}
	e.mu.Lock()
	if e.fetching == nil {
		e.fetching = map[chunkWant]bool{}
	}
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		for w := range wanted {
			delete(e.fetching, w)
		}
		e.mu.Unlock()
	}()
	add := func(sp SpaceID, r ChunkRef) {
		w := want{sp, r}
		if len(wants) >= MaxChunkWants || wanted[w] {
			return
		}
		e.mu.Lock()
		busy := e.fetching[w]
		if !busy {
			e.fetching[w] = true
		}
		e.mu.Unlock()
		if !busy {
			wanted[w] = true
			wants = append(wants, w)
		}
	}
	for _, sp := range sortedSpaces(myWants) {
		for _, r := range myWants[sp] {
			add(sp, r)
		}
	}
	if flags&chunkFlagAll != 0 {
		for _, sp := range sortedSpaces(offered) {
			held := map[ChunkRef]bool{}
			if refs, err := cs.ChunkRefs(sp); err == nil {
				for _, r := range refs {
					held[r] = true
				}
			} else {
				return err
			}
			if cc, ok := cs.(ChunkCollector); ok {
				refs, err := cc.CollectedChunks(sp)
				if err != nil {
					return err
				}
				for _, r := range refs {
					held[r] = true // collected: not fetched back
				}
			}
			for _, r := range offered[sp] {
				if !held[r] {
					add(sp, r)
				}
			}
		}
	}
	var peerWants []want
	err = s.exchange(func() error {
		for i := 0; i < len(wants); {
			sp := wants[i].sp
			buf := append(make([]byte, 0, MaxFrame), sp[:]...)
			for ; i < len(wants) && wants[i].sp == sp && len(buf)+32 <= MaxFrame; i++ {
				buf = append(buf, wants[i].ref[:]...)
			}
			if err := s.write(frameChunkWant, buf); err != nil {
				return err
			}
		}
		return s.write(frameChunkWantEnd)
	}, func() error {
		return s.readRefFrames(frameChunkWant, frameChunkWantEnd, "chunk wants", func(sp SpaceID, refs []ChunkRef) error {
			if len(peerWants)+len(refs) > MaxChunkWants {
				return malformed("more than %d chunks wanted", MaxChunkWants)
			}
			if _, ok := mine[sp]; !ok {
				return nil // not a space we serve this peer
			}
			for _, r := range refs {
				peerWants = append(peerWants, want{sp, r})
			}
			return nil
		})
	})
	if err != nil {
		return err
	}

	// 4. Chunks: what the peer wants and we hold, within the budget.
	// Socket buffers are shrunk first (ChunkSocketBuffer): what a cut
	// stream loses is what was in flight, and on a fast link the kernel's
	// autotuned buffers hold megabytes.
	if len(peerWants) > 0 || len(wants) > 0 {
		if tc := tcpOf(s.raw); tc != nil {
			_ = tc.SetWriteBuffer(ChunkSocketBuffer)
			_ = tc.SetReadBuffer(ChunkSocketBuffer)
		}
	}
	var added, addedBytes, rejected uint64
	err = s.exchange(func() error {
		var sent, sentBytes, held uint64
		defer func() {
			e.mu.Lock()
			e.stats.Chunks.Sent += sent
			e.stats.Chunks.BytesSent += sentBytes
			e.stats.Chunks.HeldBack = held
			e.mu.Unlock()
		}()
		for _, w := range peerWants {
			data, err := cs.GetChunk(w.sp, w.ref)
			if err == ErrNotFound {
				continue
			}
			if err != nil {
				return err
			}
			if len(data) > MaxChunk {
				continue
			}
			if !s.budget.allow(len(data), true) {
				held++
				continue
			}
			if err := s.write(frameChunk, w.sp[:], w.ref[:], data); err != nil {
				return err
			}
			s.e.noteFrame(chunkHeader + len(data))
			sent++
			sentBytes += uint64(len(data))
		}
		return s.write(frameChunkEnd)
	}, func() error {
		got := map[want]bool{}
		for {
			typ, p, err := s.next()
			if err != nil {
				return eofUnexpected(err)
			}
			switch typ {
			case frameChunk:
				if len(p) < chunkHeader {
					return malformed("chunk frame of %d bytes", len(p))
				}
				var w want
				copy(w.sp[:], p[:16])
				copy(w.ref[:], p[16:48])
				if !wanted[w] || got[w] {
					return malformed("a chunk not asked for")
				}
				got[w] = true
				data := p[chunkHeader:]
				ok, err := cs.PutChunk(s.peer.ID, w.sp, w.ref, data)
				if err != nil {
					reason, isReject := rejectReason(err)
					if !isReject {
						return fmt.Errorf("store chunk: %w", err)
					}
					e.countReject(reason)
					rejected++
					e.logw.limited("reject:chunk", slog.LevelWarn, "rejected a chunk", "reason", reason,
						"peer", s.peer.ID.String(), "space", w.sp.String())
					continue
				}
				if ok {
					added++
					addedBytes += uint64(len(data))
				}
			case frameChunkEnd:
				return nil
			default:
				return malformed("frame type %d in chunks", typ)
			}
		}
	})
	e.mu.Lock()
	e.stats.Chunks.Added += added
	e.stats.Chunks.BytesIn += addedBytes
	e.stats.Chunks.Rejected += rejected
	if added > 0 {
		e.nudgeWatchersLocked(s.peer.ID)
	}
	e.mu.Unlock()
	return err
}

// ChunkSocketBuffer is the send and receive buffer of a stream's socket
// from its chunk transfer on (Linux doubles it): it bounds what a cut loses,
// and the throughput of a link with a larger bandwidth-delay product
// (512 KiB at 300 ms round trip: ~3 MiB/s).
const ChunkSocketBuffer = 256 << 10

// tcpOf finds the TCP connection under a stream's wrappers (nil if none).
func tcpOf(c net.Conn) *net.TCPConn {
	for range 16 {
		switch x := c.(type) {
		case *net.TCPConn:
			return x
		case *countConn:
			c = x.Conn
		case *peekedConn:
			c = x.Conn
		case *releaseConn:
			c = x.Conn
		case *faultConn:
			c = x.Conn
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// readRefFrames reads frames of type more, each a space and a list of chunk
// refs handed to fn, until a frame of type end; any other type is
// malformed (what names the list in the error).
func (s *session) readRefFrames(more, end byte, what string, fn func(SpaceID, []ChunkRef) error) error {
	for {
		typ, p, err := s.next()
		if err != nil {
			return eofUnexpected(err)
		}
		switch typ {
		case more:
			sp, refs, err := decodeRefs(p)
			if err != nil {
				return err
			}
			if err := fn(sp, refs); err != nil {
				return err
			}
		case end:
			return nil
		default:
			return malformed("frame type %d in %s", typ, what)
		}
	}
}

func decodeRefs(p []byte) (SpaceID, []ChunkRef, error) {
	var sp SpaceID
	if len(p) < 16 || (len(p)-16)%32 != 0 {
		return sp, nil, malformed("chunk ref list of %d bytes", len(p))
	}
	copy(sp[:], p)
	p = p[16:]
	refs := make([]ChunkRef, len(p)/32)
	for i := range refs {
		copy(refs[i][:], p[i*32:])
	}
	return sp, refs, nil
}

func eofUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
