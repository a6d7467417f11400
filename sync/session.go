package sync

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"sync/atomic"
	"time"
)

// curves: X25519 only. Go's default hybrid X25519MLKEM768 adds ~2.2 KB to
// every round (most of an idle round's cost) on metered field links, and
// what these streams carry is already end-to-end encrypted and signed
// (envelopes) or public within the mesh (certificates); the metadata
// (space IDs, vectors) is what a future quantum adversary would learn.
// Revisit when links allow: add tls.X25519MLKEM768 first.
var curves = []tls.CurveID{tls.X25519}

// exporterLabel is the TLS exporter label of the channel binding.
const exporterLabel = "EXPORTER-fieldsync-sync-v1"

// meshProofContext separates the mesh-key proof from every other MAC.
const meshProofContext = "fieldsync mesh proof v1"

// session is one sync stream, either side. The phases run in lockstep; in
// each, both sides send and receive at once (a goroutine sends while the
// session goroutine reads), so large phases cannot deadlock on full buffers.
type session struct {
	e         *Engine
	conn      *tls.Conn
	raw       net.Conn
	initiator bool
	fw        *frameWriter
	fr        *frameReader
	in, out   atomic.Uint64

	peer                        Peer
	round                       Round
	added, dups, rejected, sent atomic.Uint64
	pendingOut, pendingIn       uint64
	countedInbound              bool      // peerState.inbound was incremented
	deadline                    time.Time // the whole session's (Limits.SessionTimeout)
	admit                       func(*session) error
	// registered: this background round is its peer's peerState.background
	// (e.mu); merged: it was superseded by the peer's round (admitBackground).
	registered bool
	merged     atomic.Bool

	// Watch streams (watch.go). watch: ALPN chose alpnWatch. watchIdle:
	// the stream waits between rounds (a stream that ends then ended no
	// round). idle and busy give back and take again the responder's
	// inbound session slot around idle waits. watchEnd closes when a newer
	// watch stream of the same peer supersedes this one. up is the
	// client's upstream. booked: the counters already booked by
	// bookWatchRound.
	watch     bool
	watchIdle bool
	idle      func()
	busy      func() error
	watchEnd  chan struct{}
	watcher   *watcher
	up        *upstream
	booked    Round
	// roundStart: when the current round began; meshAdded: a mesh object
	// new to this node arrived in it (watching clients are nudged).
	roundStart time.Time
	meshAdded  atomic.Bool
	// budget: what this round may still send (Config.Budget).
	budget roundBudget
	// chunks: ALPN chose a protocol with the chunk phase (chunks.go).
	chunks bool
	// resume: ALPN chose a protocol with resumable envelopes (resume.go);
	// theirPartials: what the peer announced it holds in part; sendHash*:
	// the hash of the large envelope being sent; shrunkOut, shrunkIn: the
	// socket's send (sending goroutine) and receive buffer already shrunk.
	resume              bool
	theirPartials       map[envKey]Partial
	sendHashKey         envKey
	sendHashLen         int
	sendHash            [32]byte
	shrunkOut, shrunkIn bool
}

// runSession authenticates the stream and runs one anti-entropy round.
// expect is the peer we dialed (initiator) or zero (responder). admit, if
// set, is called once the peer has authenticated and may refuse the session
// (limits); it is the responder's.
//
// up is set for a client's stream to an upstream (client.go): it offers
// alpnWatch and, if the responder takes it, the stream stays open for more
// rounds (watch.go) and runSession returns when it ends.
func (e *Engine) runSession(ctx context.Context, raw net.Conn, initiator bool, expect PeerID, admit func(*session) error, up *upstream) (Round, error) {
	start := time.Now()
	s := &session{e: e, initiator: initiator, deadline: start.Add(e.lim.SessionTimeout), admit: admit, up: up, roundStart: start}
	s.budget = e.newRoundBudget()
	protos := []string{alpn}
	if up != nil {
		protos = []string{alpnWatch, alpn}
	}
	if e.chunkStore() != nil {
		protos = append([]string{alpnChunks}, protos...)
		if up != nil {
			protos = append([]string{alpnWatchChunks}, protos...)
		}
	}
	if e.partialStore() != nil {
		protos = append([]string{alpnResume}, protos...)
		if up != nil {
			protos = append([]string{alpnWatchResume}, protos...)
		}
	}
	serverProtos := []string{alpnWatch, alpn}
	if e.chunkStore() != nil {
		serverProtos = []string{alpnWatchChunks, alpnWatch, alpnChunks, alpn}
	}
	if e.partialStore() != nil {
		serverProtos = []string{alpnWatchResume, alpnWatchChunks, alpnWatch, alpnResume, alpnChunks, alpn}
	}
	cc := &countConn{Conn: raw, in: &s.in, out: &s.out}
	if initiator && e.cfg.Faults != nil {
		s.raw = e.cfg.Faults.WrapSync(e.name, expect.String(), cc)
	} else {
		s.raw = cc
	}
	if initiator {
		s.conn = tls.Client(s.raw, &tls.Config{
			Certificates:       []tls.Certificate{e.tlsCrt},
			InsecureSkipVerify: true, // identity comes from the challenge, checked below
			MinVersion:         tls.VersionTLS13,
			CurvePreferences:   curves,
			NextProtos:         protos,
			ServerName:         "fieldsync",
		})
	} else {
		s.conn = tls.Server(s.raw, &tls.Config{
			Certificates:           []tls.Certificate{e.tlsCrt},
			ClientAuth:             tls.RequireAnyClientCert,
			MinVersion:             tls.VersionTLS13,
			CurvePreferences:       curves,
			NextProtos:             serverProtos,
			SessionTicketsDisabled: true,
		})
	}
	stop := context.AfterFunc(ctx, func() { _ = s.conn.Close() })
	defer stop()
	stopE := context.AfterFunc(e.ctx, func() { _ = s.conn.Close() }) // Close ends every stream
	defer stopE()
	defer s.conn.Close()

	err := s.run(expect)
	if s.merged.Load() {
		err = errMerged
	}
	s.round = s.counters()
	s.round.Duration = time.Since(s.roundStart)
	e.finishRound(s, err)
	if err != nil {
		return s.round, fmt.Errorf("sync round (%s): %w", map[bool]string{true: "initiator", false: "responder"}[initiator], err)
	}
	return s.round, nil
}

// counters returns the session's counters so far (cumulative).
func (s *session) counters() Round {
	return Round{Peer: s.peer.ID, BytesSent: s.out.Load(), BytesReceived: s.in.Load(), Sent: s.sent.Load(),
		Added: s.added.Load(), Duplicates: s.dups.Load(), Rejected: s.rejected.Load()}
}

// minus returns r's counters less b's (what happened since b was taken).
func (r Round) minus(b Round) Round {
	r.BytesSent -= b.BytesSent
	r.BytesReceived -= b.BytesReceived
	r.Sent -= b.Sent
	r.Added -= b.Added
	r.Duplicates -= b.Duplicates
	r.Rejected -= b.Rejected
	return r
}

// finishRound books a session's end into the engine's and the peer's
// counters: its round, or, for a watch stream, what is not booked yet (a
// watch stream that ends between rounds ends no round).
func (e *Engine) finishRound(s *session, err error) {
	idleEnd := s.watch && s.watchIdle
	e.mu.Lock()
	hint := e.bookLocked(s, s.round.minus(s.booked), err, !idleEnd, true)
	e.mu.Unlock()
	if hint {
		e.queueHint()
	}
}

// bookWatchRound books a round a watch stream has completed; the stream
// stays open.
func (e *Engine) bookWatchRound(s *session) {
	now := s.counters()
	d := now.minus(s.booked)
	d.Duration = time.Since(s.roundStart)
	s.booked = now
	e.mu.Lock()
	hint := e.bookLocked(s, d, nil, true, false)
	e.mu.Unlock()
	if hint {
		e.queueHint()
	}
}

// bookLocked adds round r's counters. countRound: r is a round (counted as
// one, timed, and the peer's last contact or error); final: the session
// ended (its inbound slot and registration are released). A round that
// brought something new nudges the watching clients. e.mu held.
func (e *Engine) bookLocked(s *session, r Round, err error, countRound, final bool) (hintForClient bool) {
	e.stats.SyncBytesIn += r.BytesReceived
	e.stats.SyncBytesOut += r.BytesSent
	e.bookBudgetLocked(s, r.BytesReceived+r.BytesSent, countRound && err == nil)
	s.budget = e.newRoundBudget() // the next round of a watch stream starts afresh
	e.stats.Added += r.Added
	e.stats.Duplicates += r.Duplicates
	e.stats.Sent += r.Sent
	e.stats.RejectedEnvs += r.Rejected
	if meshNew := s.meshAdded.Swap(false); r.Added > 0 || meshNew {
		e.nudgeWatchersLocked(s.peer.ID)
	}
	// A client sends no hints of its own (it is no member): this node now
	// holds its changes and says so, as for a local write (after e.mu).
	hintForClient = r.Added > 0 && s.watch && !s.initiator
	var p *peerState
	if !s.peer.ID.IsZero() {
		p = e.peerLocked(s.peer.ID)
		if final {
			if s.countedInbound {
				p.inbound--
				s.countedInbound = false
			}
			if s.registered {
				p.background = nil
				s.registered = false
			}
		}
		p.bytesSent += r.BytesSent
		p.bytesRecv += r.BytesReceived
	}
	if merged(err) || !countRound {
		// merged: not a failure, the other round between us carries the work.
		return hintForClient
	}
	e.observeRoundLocked(s.initiator, err == nil, r.Duration)
	if err != nil {
		e.stats.RoundErrors++
	} else {
		e.stats.Rounds++
	}
	if p == nil {
		return hintForClient
	}
	p.rounds++
	if err != nil {
		p.lastErr = err.Error()
		return hintForClient
	}
	p.lastErr = ""
	p.lastContact = time.Now()
	p.pendingOut = sub0(s.pendingOut, r.Sent)
	p.pendingIn = sub0(s.pendingIn, r.Added+r.Duplicates+r.Rejected)
	return hintForClient
}

// merged reports a round ended by the one-session-per-pair tie-break, on
// either end (admitBackground).
func merged(err error) bool {
	var pe *PeerError
	return errors.Is(err, errMerged) || (errors.As(err, &pe) && pe.Code == codeMerged)
}

func sub0(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

func (s *session) run(expect PeerID) error {
	// Short deadlines until the peer has proved who it is: a stranger that
	// sends one byte of a ClientHello and stalls is gone within
	// TLSHandshakeTimeout.
	start := time.Now()
	_ = s.conn.SetDeadline(start.Add(s.e.lim.TLSHandshakeTimeout))
	if err := s.conn.Handshake(); err != nil {
		return fmt.Errorf("tls handshake: %w", err)
	}
	_ = s.conn.SetDeadline(start.Add(s.e.lim.HandshakeTimeout))
	proto := s.conn.ConnectionState().NegotiatedProtocol
	s.watch = proto == alpnWatch || proto == alpnWatchChunks || proto == alpnWatchResume
	s.resume = proto == alpnResume || proto == alpnWatchResume
	s.chunks = proto == alpnChunks || proto == alpnWatchChunks || s.resume
	if err := s.authenticate(expect); err != nil {
		return err
	}
	_ = s.conn.SetDeadline(time.Time{})
	if s.watch && !s.initiator {
		// Registered before the first round: what arrives while it runs,
		// after its summary, must still nudge this client.
		if err := s.registerWatcher(); err != nil {
			return err
		}
		defer s.e.removeWatcher(s.watcher)
	}
	if err := s.phases(); err != nil {
		return err
	}
	if s.watch {
		s.e.bookWatchRound(s)
		if s.initiator {
			return s.watchClient(s.up)
		}
		return s.watchServe()
	}
	// Orderly close: send close_notify and wait for the peer's, which it
	// sends once it has ingested everything we sent. So a round ends when
	// both sides are done (the next round's summary then reflects this
	// one), and both ends count the same bytes (the idle-cost test relies on
	// it). TCP flow control bounds what the peer still has to ingest when
	// our last write returns to its socket buffers.
	_ = s.conn.CloseWrite()
	_ = s.conn.SetReadDeadline(s.idleDeadline())
	_, _ = io.Copy(io.Discard, io.LimitReader(s.conn, 4096))
	return nil
}

// phases runs one round's phases: mesh objects, summaries, envelopes, and
// on a watch stream the ROUNDEND exchange that stands for the orderly close
// of a plain stream (both ends have ingested the round).
func (s *session) phases() error {
	if err := s.meshPhase(); err != nil {
		return fmt.Errorf("mesh objects: %w", err)
	}
	mine, theirs, err := s.summaryPhase()
	if err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	if err := s.envelopePhase(mine, theirs); err != nil {
		return fmt.Errorf("envelopes: %w", err)
	}
	if s.chunks {
		if err := s.chunkPhase(mine, theirs); err != nil {
			return fmt.Errorf("chunks: %w", err)
		}
	}
	if s.watch {
		if err := s.roundEnd(); err != nil {
			return fmt.Errorf("round end: %w", err)
		}
	}
	return nil
}

// exchange runs send in a goroutine while recv reads; either failing closes
// the stream so the other returns too.
func (s *session) exchange(send, recv func() error) error {
	errc := make(chan error, 1)
	go func() {
		err := send()
		if err == nil {
			err = s.fw.flush()
		}
		if err != nil {
			_ = s.conn.Close()
		}
		errc <- err
	}()
	rerr := recv()
	if rerr != nil {
		_ = s.conn.Close()
	}
	werr := <-errc
	if rerr != nil {
		return rerr
	}
	return werr
}

// idleDeadline is the deadline of the next read or write: the idle timeout,
// within the whole session's deadline. Before authentication the handshake
// deadline set in run applies.
func (s *session) idleDeadline() time.Time {
	if s.peer.ID.IsZero() {
		return s.deadlineBefore(time.Now().Add(s.e.lim.HandshakeTimeout))
	}
	return s.deadlineBefore(time.Now().Add(StreamIdleTimeout))
}

func (s *session) deadlineBefore(t time.Time) time.Time {
	if t.After(s.deadline) {
		return s.deadline
	}
	return t
}

// next reads one frame with the idle deadline; an ERROR frame becomes a
// *PeerError.
func (s *session) next() (byte, []byte, error) {
	if !s.peer.ID.IsZero() {
		_ = s.conn.SetReadDeadline(s.idleDeadline())
	}
	typ, p, err := s.fr.next()
	if err != nil {
		return 0, nil, err
	}
	if typ == frameError {
		return 0, nil, decodeError(p)
	}
	return typ, p, nil
}

func (s *session) write(typ byte, parts ...[]byte) error {
	if !s.peer.ID.IsZero() {
		_ = s.conn.SetWriteDeadline(s.idleDeadline())
	}
	return s.fw.write(typ, parts...)
}

// expectFrame reads one frame of the given type.
func (s *session) expectFrame(want byte) ([]byte, error) {
	typ, p, err := s.next()
	if err != nil {
		return nil, err
	}
	if typ != want {
		return nil, malformed("frame type %d, want %d", typ, want)
	}
	return p, nil
}

// fail sends a best-effort ERROR frame.
func (s *session) fail(code uint16, msg string) {
	_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
	if s.fw.write(frameError, encodeError(code, msg)) == nil {
		_ = s.fw.flush()
	}
}

// authenticate: HELLO both ways (IDs, nonces), then AUTH both ways
// (certificate, challenge signature over the transcript bound to this TLS
// stream, proof of the mesh key), then verification.
func (s *session) authenticate(expect PeerID) error {
	e := s.e
	s.fw = newFrameWriter(s.conn)
	s.fr = newFrameReader(s.conn)
	var nonce [32]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return err
	}
	me := hello{Version: ProtocolVersion, ID: e.id, Expect: expect, Nonce: nonce, Addr: e.LocalAddr()}
	var them hello
	err := s.exchange(func() error { return s.write(frameHello, me.encode()) }, func() error {
		p, err := s.expectFrame(frameHello)
		if err != nil {
			return err
		}
		them, err = decodeHello(p)
		return err
	})
	if err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	if them.Version != ProtocolVersion {
		s.fail(codeVersion, "unsupported protocol version")
		return fmt.Errorf("peer speaks protocol %d, we speak %d", them.Version, ProtocolVersion)
	}
	// A client dials an upstream by address and may not know its ID: on a
	// watch stream it expects nobody in particular (the challenge below
	// still proves who answered).
	if s.initiator && them.ID != expect && !(s.watch && expect.IsZero()) {
		return s.authFail(them.ID, fmt.Errorf("dialed %s, answered by %s", expect, them.ID))
	}
	if !s.initiator && them.Expect != e.id && !(s.watch && them.Expect.IsZero()) {
		return s.authFail(them.ID, fmt.Errorf("peer expected %s", them.Expect))
	}
	cs := s.conn.ConnectionState()
	binding, err := cs.ExportKeyingMaterial(exporterLabel, nil, 32)
	if err != nil {
		return fmt.Errorf("channel binding: %w", err)
	}
	t := Transcript{Label: e.label, Binding: binding}
	mySide, theirSide := SideInitiator, SideResponder
	if s.initiator {
		t.Initiator, t.Responder, t.InitiatorNonce, t.ResponderNonce = e.id, them.ID, me.Nonce, them.Nonce
	} else {
		t.Initiator, t.Responder, t.InitiatorNonce, t.ResponderNonce = them.ID, e.id, them.Nonce, me.Nonce
		mySide, theirSide = SideResponder, SideInitiator
	}
	sig, err := e.auth.SignChallenge(t, mySide)
	if err != nil {
		return fmt.Errorf("sign challenge: %w", err)
	}
	mine := authMsg{Cert: e.auth.Certificate(), Sig: sig, MeshProof: meshProof(e.keyring.GetPrimaryKey(), mySide, e.label, binding)}
	if len(mine.Cert) > MaxCertBlob || len(mine.Sig) > MaxSignature {
		return errors.New("own certificate or signature exceeds limits")
	}
	var theirs authMsg
	err = s.exchange(func() error { return s.write(frameAuth, mine.encode()) }, func() error {
		p, err := s.expectFrame(frameAuth)
		if err != nil {
			return err
		}
		theirs, err = decodeAuth(p)
		return err
	})
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	okMesh := false
	for _, k := range e.keyring.GetKeys() {
		want := meshProof(k, theirSide, e.label, binding)
		if hmac.Equal(want[:], theirs.MeshProof[:]) {
			okMesh = true
		}
	}
	if !okMesh {
		return s.authFail(them.ID, errors.New("no proof of the mesh key (another mesh key or label)"))
	}
	if len(theirs.Cert) == 0 {
		return s.authFail(them.ID, errors.New("no certificate presented"))
	}
	peer, err := e.auth.VerifyPeer(theirs.Cert, t, theirSide, theirs.Sig)
	if err != nil {
		return s.authFail(them.ID, err)
	}
	if peer.ID != them.ID {
		return s.authFail(them.ID, fmt.Errorf("certificate names %s, hello %s", peer.ID, them.ID))
	}
	if len(peer.SignKey) > 0 {
		if len(cs.PeerCertificates) == 0 {
			return s.authFail(them.ID, errors.New("no tls certificate"))
		}
		k, ok := cs.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
		if !ok || !bytes.Equal(k, peer.SignKey) {
			return s.authFail(them.ID, errors.New("tls key is not the device key"))
		}
	}
	s.peer = peer
	addr := ""
	if _, _, err := splitHostPort(them.Addr); err == nil {
		addr = them.Addr
	}
	dialed := ""
	if s.initiator && s.raw.RemoteAddr() != nil {
		dialed = s.raw.RemoteAddr().String()
	}
	e.peerAuthenticated(peer, addr, dialed)
	if s.admit != nil {
		if err := s.admit(s); err != nil {
			if errors.Is(err, errMerged) {
				s.fail(codeMerged, "merged into your round with us")
			} else {
				s.fail(codeBusy, "busy")
			}
			return err
		}
	}
	return nil
}

func (s *session) authFail(who PeerID, err error) error {
	s.fail(codeAuth, "authentication failed")
	e := s.e
	e.mu.Lock()
	e.stats.AuthFailures++
	e.mu.Unlock()
	reason := "challenge"
	if r, ok := rejectReason(err); ok {
		reason = r
	}
	e.logw.limited("auth-failed", slog.LevelWarn, "peer failed authentication; no space served",
		"peer", who.String(), "reason", reason, "err", err.Error())
	return fmt.Errorf("%w: %v", ErrUnauthenticated, err)
}

func meshProof(key []byte, side Side, label string, binding []byte) (out [32]byte) {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(meshProofContext))
	m.Write([]byte{byte(side), byte(len(label))})
	m.Write([]byte(label))
	m.Write(binding)
	copy(out[:], m.Sum(nil))
	return out
}

// peerAuthenticated records a peer that passed the challenge, and
// remembers it at the address it advertised (or, if it advertised none, the
// one we reached it at): only such vouched addresses are saved and rejoined.
// An authenticated peer that memberlist does not list as live (it returned
// from a new address, or views are asymmetric) is joined at once.
func (e *Engine) peerAuthenticated(peer Peer, advertised, dialed string) {
	e.mu.Lock()
	p := e.peerLocked(peer.ID)
	p.authenticated = true
	p.role = peer.Role
	p.bureau = peer.Bureau
	p.lastSeen = time.Now()
	p.dialBlocked = time.Time{}
	switch {
	case advertised != "":
		p.vouched = advertised
	case dialed != "":
		p.vouched = dialed
	}
	if p.addr == "" {
		p.addr = p.vouched
	}
	addr := p.vouched
	live := p.alive
	closed := e.closed
	if addr != "" && !live && !closed {
		e.wg.Add(1)
	}
	e.mu.Unlock()
	if addr == "" {
		return
	}
	if err := e.store.SavePeer(KnownPeer{ID: peer.ID, Addr: addr, Role: peer.Role, LastSeen: time.Now()}); err != nil {
		e.log.Warn("save peer", "peer", peer.ID.String(), "err", err)
	}
	if !live && !closed {
		go func() {
			defer e.wg.Done()
			if ml := e.memberlist(); ml != nil {
				_, _ = ml.Join([]string{addr})
			}
		}()
	}
}

// meshOffer is the set of mesh-wide objects this node offers in a round,
// and the digest of exactly that set: objects over MaxMeshObject (never
// sent) are left out of both, duplicates once, and past the per-round caps
// (in hash order, so that peers holding the same set offer the same part)
// the rest waits. Peers in step therefore have equal digests and send
// nothing. skipped counts what was left out.
func (e *Engine) meshOffer() (objs [][]byte, digest [32]byte, skipped int, err error) {
	all, err := e.auth.MeshObjects()
	if err != nil {
		return nil, digest, 0, err
	}
	type hashed struct {
		h [32]byte
		o []byte
	}
	hs := make([]hashed, 0, len(all))
	for _, o := range all {
		if len(o) == 0 || len(o) > MaxMeshObject {
			skipped++
			continue
		}
		hs = append(hs, hashed{sha256.Sum256(o), o})
	}
	sort.Slice(hs, func(i, j int) bool { return bytes.Compare(hs[i].h[:], hs[j].h[:]) < 0 })
	h := sha256.New()
	h.Write([]byte("fieldsync mesh digest v1"))
	var total int64
	for i, x := range hs {
		if i > 0 && x.h == hs[i-1].h {
			continue
		}
		if len(objs) >= e.lim.MeshObjectsPerRound || total+int64(len(x.o)) > e.lim.MeshBytesPerRound {
			skipped++
			continue
		}
		total += int64(len(x.o))
		objs = append(objs, x.o)
		h.Write(x.h[:])
	}
	copy(digest[:], h.Sum(nil))
	return objs, digest, skipped, nil
}

// meshPhase: both send a digest of the mesh-wide objects they offer; if
// they differ, both send those objects and ingest the other's, within the
// per-round caps.
func (s *session) meshPhase() error {
	e := s.e
	objs, digest, skipped, err := e.meshOffer()
	if err != nil {
		return err
	}
	if skipped > 0 {
		e.mu.Lock()
		e.stats.MeshSkipped += uint64(skipped)
		e.mu.Unlock()
		e.logw.limited("mesh-skipped", slog.LevelWarn, "mesh objects not offered: over the size limit or the per-round caps",
			"objects", skipped, "max_object", MaxMeshObject, "per_round", e.lim.MeshObjectsPerRound, "bytes_per_round", e.lim.MeshBytesPerRound)
	}
	var theirDigest [32]byte
	var theirCount uint32
	err = s.exchange(func() error { return s.write(frameMeshDigest, encodeMeshDigest(digest, len(objs))) }, func() error {
		p, err := s.expectFrame(frameMeshDigest)
		if err != nil {
			return err
		}
		theirDigest, theirCount, err = decodeMeshDigest(p)
		return err
	})
	if err != nil {
		return err
	}
	if theirDigest == digest {
		return nil
	}
	if int64(theirCount) > int64(e.lim.MeshObjectsPerRound) {
		return malformed("%d mesh objects announced, more than %d a round", theirCount, e.lim.MeshObjectsPerRound)
	}
	return s.exchange(func() error {
		for _, o := range objs {
			if err := s.write(frameMeshObj, o); err != nil {
				return err
			}
		}
		return s.write(frameMeshEnd)
	}, func() error {
		var total int64
		for n := 0; ; n++ {
			typ, p, err := s.next()
			if err != nil {
				return err
			}
			switch typ {
			case frameMeshEnd:
				return nil
			case frameMeshObj:
				if n >= e.lim.MeshObjectsPerRound {
					return malformed("more than %d mesh objects in a round", e.lim.MeshObjectsPerRound)
				}
				if total += int64(len(p)); total > e.lim.MeshBytesPerRound {
					return malformed("more than %d bytes of mesh objects in a round", e.lim.MeshBytesPerRound)
				}
				added, err := e.auth.IngestMeshObject(s.peer, bytes.Clone(p))
				if added {
					s.meshAdded.Store(true)
				}
				if err != nil {
					reason, ok := rejectReason(err)
					if !ok {
						return fmt.Errorf("ingest mesh object: %w", err)
					}
					e.countReject(reason)
				}
			default:
				return malformed("frame type %d in mesh phase", typ)
			}
		}
	})
}

func meshDigest(objs [][]byte) [32]byte {
	hs := make([][32]byte, len(objs))
	for i, o := range objs {
		hs[i] = sha256.Sum256(o)
	}
	sort.Slice(hs, func(i, j int) bool { return bytes.Compare(hs[i][:], hs[j][:]) < 0 })
	h := sha256.New()
	h.Write([]byte("fieldsync mesh digest v1"))
	for i := range hs {
		if i > 0 && hs[i] == hs[i-1] {
			continue
		}
		h.Write(hs[i][:])
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// summaryPhase: both send the version vectors of the spaces the other is
// entitled to (per the sender's own check), and read the other's.
func (s *session) summaryPhase() (mine, theirs map[SpaceID]Vector, err error) {
	e := s.e
	spaces, err := e.store.Spaces()
	if err != nil {
		return nil, nil, err
	}
	mine = make(map[SpaceID]Vector)
	entries := 0
	for _, sp := range spaces {
		if !e.auth.Entitled(s.peer, sp) {
			continue
		}
		v, err := e.store.Heads(sp)
		if err != nil {
			return nil, nil, err
		}
		n := max(len(v), 1)
		if len(mine) >= MaxSpacesPerDigest || len(v) > MaxAuthorsPerSpace || entries+n > MaxSummaryEntries {
			// Over the protocol's limits: this space waits (a later
			// protocol version pages summaries).
			e.logw.limited("summary-limit", slog.LevelWarn, "space left out of a round: summary limits reached",
				"space", sp.String(), "authors", len(v))
			continue
		}
		entries += n
		mine[sp] = v
	}
	var partials []Partial
	if s.resume {
		if partials, err = s.announcePartials(mine); err != nil {
			return nil, nil, err
		}
	}
	s.theirPartials = nil // a watch stream's earlier round said nothing of this one
	theirs = make(map[SpaceID]Vector)
	total := 0
	err = s.exchange(func() error {
		entries := summaryEntries(mine)
		for len(entries) > 0 {
			n := min(len(entries), maxSummaryEntries)
			if err := s.write(frameSummary, encodeSummary(entries[:n])); err != nil {
				return err
			}
			entries = entries[n:]
		}
		for len(partials) > 0 {
			n := min(len(partials), partialsPerFrame)
			if err := s.write(framePartial, encodePartials(partials[:n])); err != nil {
				return err
			}
			partials = partials[n:]
		}
		return s.write(frameSummaryEnd)
	}, func() error {
		for {
			typ, p, err := s.next()
			if err != nil {
				return err
			}
			switch typ {
			case frameSummaryEnd:
				return nil
			case framePartial:
				if err := s.readPartials(p); err != nil {
					return err
				}
			case frameSummary:
				entries, err := decodeSummary(p)
				if err != nil {
					return err
				}
				if total += len(entries); total > MaxSummaryEntries {
					return malformed("more than %d summary entries", MaxSummaryEntries)
				}
				for _, en := range entries {
					v := theirs[en.Space]
					if v == nil {
						if len(theirs) >= MaxSpacesPerDigest {
							return malformed("more than %d spaces", MaxSpacesPerDigest)
						}
						v = Vector{}
						theirs[en.Space] = v
					}
					if en.Seq == 0 {
						continue
					}
					if _, ok := v[en.Author]; !ok && len(v) >= MaxAuthorsPerSpace {
						return malformed("more than %d authors", MaxAuthorsPerSpace)
					}
					v[en.Author] = en.Seq
				}
			default:
				return malformed("frame type %d in summary phase", typ)
			}
		}
	})
	if err != nil {
		return nil, nil, err
	}
	for sp, v := range mine {
		s.pendingOut += v.Missing(theirs[sp])
	}
	for sp, v := range theirs {
		h := mine[sp]
		if h == nil {
			if h, err = e.store.Heads(sp); err != nil {
				return nil, nil, err
			}
		}
		s.pendingIn += v.Missing(h)
	}
	return mine, theirs, nil
}

type spaceAuthor struct {
	space  SpaceID
	author PeerID
}

// envelopePhase: both stream what the other lacks, then DONE; both ingest
// what arrives, in order.
func (s *session) envelopePhase(mine, theirs map[SpaceID]Vector) error {
	e := s.e
	spaces := make([]SpaceID, 0, len(mine))
	for sp := range mine {
		spaces = append(spaces, sp)
	}
	sort.Slice(spaces, func(i, j int) bool { return spaces[i].Compare(spaces[j]) < 0 })
	return s.exchange(func() error {
		// Small envelopes first, in every space; then, per author, the
		// rest of the log from its first large envelope on (an author's
		// envelopes must arrive in order: a large one holds back the
		// author's later ones, never other authors'). docs/sync.md
		// "Priority and budgets".
		type rest struct {
			space SpaceID
			have  Vector
		}
		var later []rest
		for _, sp := range spaces {
			have := theirs[sp]
			if have == nil {
				have = Vector{}
			}
			if o, ok := e.store.(PeerHeadsObserver); ok {
				o.ObservePeerHeads(s.peer.ID, sp, have)
			}
			stopped := map[PeerID]uint64{}
			// The peer's own envelopes that reached us after our summary
			// came from the peer, in this round (it writes while it
			// pushes): never send them back. Those we held at the summary
			// and it lacks (it lost them) still go.
			peerOwn := mine[sp][s.peer.ID]
			send := func(env Envelope) error {
				if env.Author == s.peer.ID && env.Seq > peerOwn {
					return nil
				}
				if _, ok := stopped[env.Author]; ok {
					return nil
				}
				if len(env.Data) > LargeEnvelope || !s.budget.allow(len(env.Data), false) {
					stopped[env.Author] = env.Seq - 1
					return nil
				}
				return s.sendEnvelope(env)
			}
			// This node's own log first: it holds the key shares this node
			// wrapped for the peer (a device just enrolled, a bureau just
			// released to), without which everything else of the space
			// arrives unreadable and waits for the end of the stream.
			// Then the other authors, as before. docs/sync.md "Priority".
			others := have
			if own := mine[sp][e.id]; own > have[e.id] {
				// Only this node's envelopes: another author's stored
				// since the summary (a concurrent round) goes in the
				// second pass, once.
				sentOwn := have[e.id]
				only := mine[sp].Clone()
				only[e.id] = have[e.id]
				err := e.store.Since(sp, only, func(env Envelope) error {
					if env.Author != e.id {
						return nil
					}
					if err := send(env); err != nil {
						return err
					}
					if _, held := stopped[e.id]; !held {
						sentOwn = env.Seq
					}
					return nil
				})
				if err != nil {
					return err
				}
				others = have.Clone()
				others[e.id] = sentOwn
			}
			if err := e.store.Since(sp, others, send); err != nil {
				return err
			}
			if len(stopped) > 0 {
				// Every other author at our own head: the second pass sends
				// only what the first held back.
				h := mine[sp].Clone()
				for a, seq := range stopped {
					h[a] = seq
				}
				later = append(later, rest{sp, h})
			}
		}
		for _, r := range later {
			stopped := map[PeerID]bool{}
			err := e.store.Since(r.space, r.have, func(env Envelope) error {
				if stopped[env.Author] {
					return nil
				}
				n := s.wireLen(env)
				if part := s.budgetPart(env, n); part > 0 {
					// Resumable and larger than the session budget
					// leaves: its next part goes, the rest (and the
					// author's later envelopes) wait.
					stopped[env.Author] = true
					s.budget.hold(env)
					s.budget.spend(part)
					s.e.mu.Lock()
					s.e.stats.Resume.PartsSent++
					s.e.mu.Unlock()
					return s.sendEnvelopePart(env, part)
				}
				if !s.budget.allow(n, len(env.Data) > LargeEnvelope) {
					stopped[env.Author] = true
					s.budget.hold(env)
					return nil
				}
				return s.sendEnvelope(env)
			})
			if err != nil {
				return err
			}
		}
		return s.write(frameDone)
	}, s.receiveEnvelopes)
}

func (s *session) sendEnvelope(env Envelope) error {
	if len(env.Data) > MaxEnvelope || env.Seq == 0 {
		s.e.logw.limited("local-oversize", slog.LevelWarn, "not sending an envelope over the size limit",
			"space", env.Space.String(), "author", env.Author.String(), "seq", env.Seq, "size", len(env.Data))
		return nil
	}
	if offset, hash, ok := s.resumeFrom(env); ok {
		return s.sendEnvelopeAt(env, offset, hash, 0)
	}
	head := envHead{Space: env.Space, Author: env.Author, Seq: env.Seq, Total: uint32(len(env.Data))}.encode()
	if err := s.writeFramed(frameEnv, head, env.Data); err != nil {
		return err
	}
	s.sent.Add(1)
	return nil
}

// writeFramed sends data after a head in a frame of type typ, and what does
// not fit in it in continuation frames of at most MaxFrame bytes.
func (s *session) writeFramed(typ byte, head, data []byte) error {
	first := min(len(data), MaxFrame-len(head))
	if err := s.write(typ, head, data[:first]); err != nil {
		return err
	}
	s.e.noteFrame(len(head) + first)
	data = data[first:]
	for len(data) > 0 {
		n := min(len(data), MaxFrame)
		if err := s.write(frameEnvCont, data[:n]); err != nil {
			return err
		}
		s.e.noteFrame(n)
		data = data[n:]
	}
	return nil
}

func (e *Engine) noteFrame(n int) {
	e.mu.Lock()
	if n > e.stats.LargestFrameOut {
		e.stats.LargestFrameOut = n
	}
	e.mu.Unlock()
}

func (s *session) receiveEnvelopes() error {
	e := s.e
	var (
		cur  *envHead
		buf  []byte
		skip = map[spaceAuthor]bool{}
	)
	// Complete envelopes wait in a batch (bounded in count and bytes) so a
	// store that verifies in parallel (BatchIngester) gets several at once.
	var batch []Envelope
	batchBytes := 0
	outcome := func(env Envelope, added bool, err error) error {
		key := spaceAuthor{env.Space, env.Author}
		if err != nil {
			reason, ok := rejectReason(err)
			if !ok {
				return fmt.Errorf("ingest: %w", err)
			}
			e.countReject(reason)
			s.rejected.Add(1)
			// The rest of this author's log in this space would only fail
			// the chain: skip it for this round.
			if len(skip) < MaxAuthorsPerSpace {
				skip[key] = true
			}
			e.logw.limited("reject:"+reason, slog.LevelWarn, "rejected an envelope", "reason", reason,
				"peer", s.peer.ID.String(), "space", env.Space.String(), "author", env.Author.String(), "seq", env.Seq)
			return nil
		}
		if added {
			s.added.Add(1)
		} else {
			s.dups.Add(1)
		}
		return nil
	}
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		envs := batch
		batch, batchBytes = nil, 0
		if bi, ok := e.store.(BatchIngester); ok {
			res := bi.IngestBatch(s.peer.ID, envs)
			for i, env := range envs {
				if skip[spaceAuthor{env.Space, env.Author}] {
					continue
				}
				if err := outcome(env, res[i].Added, res[i].Err); err != nil {
					return err
				}
			}
			return nil
		}
		for _, env := range envs {
			if skip[spaceAuthor{env.Space, env.Author}] {
				continue
			}
			added, err := e.store.Ingest(s.peer.ID, env)
			if err := outcome(env, added, err); err != nil {
				return err
			}
		}
		return nil
	}
	deliver := func() error {
		env := Envelope{Space: cur.Space, Author: cur.Author, Seq: cur.Seq, Data: buf}
		cur, buf = nil, nil
		if skip[spaceAuthor{env.Space, env.Author}] {
			return nil
		}
		batch = append(batch, env)
		batchBytes += len(env.Data)
		if len(batch) >= IngestBatch || batchBytes >= MaxFrame {
			return flush()
		}
		return nil
	}
	// large: a resumable envelope being received (resume.go); if the
	// stream ends inside it, what arrived stays on disk for the next round.
	var large *largeRecv
	defer func() { s.abandonLarge(large) }()
	for {
		typ, p, err := s.next()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		switch typ {
		case frameEnvAt:
			if cur != nil || large != nil {
				return malformed("envelope started before the previous one ended")
			}
			h, first, err := decodeEnvAt(p)
			if err != nil {
				return err
			}
			// What arrived before a large envelope is ingested first: a
			// cut inside it must not lose them (the space's first
			// envelopes, without which its prefix is never announced).
			if err := flush(); err != nil {
				return err
			}
			large, err = s.startLarge(h, first, skip[spaceAuthor{h.Space, h.Author}])
			if err != nil {
				return err
			}
		case frameEnv:
			if cur != nil || large != nil {
				return malformed("envelope started before the previous one ended")
			}
			h, chunk, err := decodeEnvHead(p)
			if err != nil {
				return err
			}
			cur = &h
			buf = make([]byte, 0, min(h.Total, MaxFrame)) // grows as chunks arrive
			buf = append(buf, chunk...)
		case frameEnvCont:
			if large != nil {
				if err := s.addLarge(large, p); err != nil {
					return err
				}
				break
			}
			if cur == nil {
				return malformed("continuation without an envelope")
			}
			if uint64(len(buf))+uint64(len(p)) > uint64(cur.Total) {
				return malformed("envelope longer than announced")
			}
			buf = append(buf, p...)
		case frameEnvPause:
			if large == nil || !s.resume {
				return malformed("pause outside a resumable envelope")
			}
			lr := large
			large = nil
			if err := s.pauseLarge(lr); err != nil {
				return err
			}
		case frameDone:
			if cur != nil || large != nil {
				return malformed("stream done inside an envelope")
			}
			return flush()
		default:
			return malformed("frame type %d in envelope phase", typ)
		}
		if cur != nil && uint32(len(buf)) == cur.Total {
			if err := deliver(); err != nil {
				return err
			}
		}
		if large != nil && large.got == large.h.Total {
			lr := large
			large = nil
			data, err := s.finishLarge(lr)
			if err != nil {
				return err
			}
			if data != nil {
				cur, buf = &envHead{Space: lr.h.Space, Author: lr.h.Author, Seq: lr.h.Seq, Total: lr.h.Total}, data
				if err := deliver(); err != nil {
					return err
				}
			}
		}
	}
}
