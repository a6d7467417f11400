package sync

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Watch streams (docs/sync.md "Client mode"). A client that cannot be
// reached keeps one outbound stream per upstream (a relay or a reachable
// peer), negotiated by ALPN (alpnWatch). The stream runs the usual round,
// then stays open:
//
//	client                         responder
//	ROUNDEND   <-- both -->        ROUNDEND     the round's envelopes are ingested
//	WATCH(keepalive s)   ------>                 registers the watcher
//	KEEPALIVE            ------>                 every keepalive while idle
//	                     <------   KEEPALIVE     the answer
//	                     <------   NUDGE         the responder holds something new
//	ROUND                ------>                 a local write, or a nudge
//	                     <------   ROUNDOK       then MESH, SUMMARY, ENV, ROUNDEND
//
// Only the client starts rounds, so the two ends never start one each at
// once; NUDGE and KEEPALIVE frames already in flight when a client sends
// ROUND are read and dropped until ROUNDOK. An idle watcher holds no
// inbound session slot (Limits.InboundSessions): it takes one for each
// round and counts against Limits.Watchers instead.

// watchReadSlack multiplies the keepalive interval into the read deadline of
// an idle watch stream: two keepalives may be lost before the stream is
// declared dead and the client dials again.
const watchReadSlack = 3

// minKeepalive and maxKeepalive bound the keepalive a client may ask for.
const (
	minKeepalive = 500 * time.Millisecond
	maxKeepalive = 30 * time.Minute
)

// errWatchEnded ends a watch stream that a newer one of the same peer
// superseded (the client came back from another address).
var errWatchEnded = errors.New("watch superseded by a newer stream of the same peer")

// watcher is a client's idle watch stream on the responder.
type watcher struct {
	peer  PeerID
	nudge chan struct{} // capacity 1: nudges coalesce
	s     *session
}

// watchFrame is one frame read by a watch stream's reader goroutine.
type watchFrame struct {
	typ byte
	p   []byte
	err error
}

// watchReader reads frames one at a time for a watch stream's loop: after
// each frame it waits for next() before reading on, so that a round can
// read the stream itself in between. deadline gives each read's deadline.
type watchReader struct {
	frames chan watchFrame
	more   chan struct{}
	stop   chan struct{}
}

func (s *session) startWatchReader(deadline func() time.Time) *watchReader {
	r := &watchReader{frames: make(chan watchFrame), more: make(chan struct{}), stop: make(chan struct{})}
	go func() {
		for {
			_ = s.conn.SetReadDeadline(deadline())
			typ, p, err := s.fr.next()
			if err == nil && typ == frameError {
				err = decodeError(p)
			}
			f := watchFrame{typ: typ, p: bytes.Clone(p), err: err}
			select {
			case r.frames <- f:
			case <-r.stop:
				return
			}
			if err != nil {
				return
			}
			select {
			case <-r.more:
			case <-r.stop:
				return
			}
		}
	}()
	return r
}

// next lets the reader read the next frame.
func (r *watchReader) next() { r.more <- struct{}{} }

// close stops the reader (the stream is closed by the caller, which ends a
// pending read).
func (r *watchReader) close() { close(r.stop) }

// control writes one control frame and flushes it.
func (s *session) control(typ byte, p ...[]byte) error {
	_ = s.conn.SetWriteDeadline(time.Now().Add(StreamIdleTimeout))
	if err := s.fw.write(typ, p...); err != nil {
		return err
	}
	return s.fw.flush()
}

// roundEnd tells the peer that this round's envelopes are ingested and
// waits for it to say the same.
func (s *session) roundEnd() error {
	return s.exchange(func() error { return s.write(frameRoundEnd) }, func() error {
		_, err := s.expectFrame(frameRoundEnd)
		return err
	})
}

// watchRound runs one more round on an open watch stream.
func (s *session) watchRound() error {
	s.roundStart = time.Now()
	s.deadline = s.roundStart.Add(s.e.lim.SessionTimeout)
	s.watchIdle = false
	if err := s.phases(); err != nil {
		return err
	}
	s.e.bookWatchRound(s)
	return nil
}

func encodeWatch(keepalive time.Duration) []byte {
	return binary.BigEndian.AppendUint16(nil, uint16(keepalive/time.Second))
}

// decodeWatch returns the client's keepalive interval, clamped: a client
// that asks for none gets the minimum's read deadline, not an endless one.
func decodeWatch(p []byte) (time.Duration, error) {
	d := dec{b: p}
	secs := d.u16()
	if err := d.end(); err != nil {
		return 0, err
	}
	return min(max(time.Duration(secs)*time.Second, minKeepalive), maxKeepalive), nil
}

// registerWatcher registers this responder's watch stream, so that what
// this node stores from now on nudges the client.
func (s *session) registerWatcher() error {
	s.watchEnd = make(chan struct{})
	s.watcher = &watcher{peer: s.peer.ID, nudge: make(chan struct{}, 1), s: s}
	if err := s.e.addWatcher(s.watcher); err != nil {
		s.fail(codeBusy, "busy: too many watchers")
		return err
	}
	return nil
}

// watchServe is the responder's side of a watch stream once the first round
// is done: register, answer keepalives, nudge, and run the client's rounds.
func (s *session) watchServe() error {
	e := s.e
	p, err := s.expectFrame(frameWatch)
	if err != nil {
		return err
	}
	keepalive, err := decodeWatch(p)
	if err != nil {
		return err
	}
	w := s.watcher
	s.watchIdle = true
	if s.idle != nil {
		s.idle()
	}
	r := s.startWatchReader(func() time.Time { return time.Now().Add(watchReadSlack * keepalive) })
	defer r.close()
	for {
		select {
		case <-w.nudge:
			if err := s.control(frameNudge); err != nil {
				return err
			}
			e.countNudge()
		case f := <-r.frames:
			if f.err != nil {
				return f.err
			}
			switch f.typ {
			case frameKeepalive:
				if err := s.control(frameKeepalive); err != nil {
					return err
				}
			case frameRound:
				if s.busy != nil {
					if err := s.busy(); err != nil {
						s.fail(codeBusy, "busy")
						return err
					}
				}
				if err := s.control(frameRoundOK); err != nil {
					return err
				}
				if err := s.watchRound(); err != nil {
					return err
				}
				s.watchIdle = true
				if s.idle != nil {
					s.idle()
				}
			default:
				return malformed("frame type %d on an idle watch stream", f.typ)
			}
			r.next()
		case <-s.watchEnd:
			return errWatchEnded
		}
	}
}

// watchClient is the client's side of a watch stream once the first round
// is done: keep it alive, and run a round when the responder nudges or this
// device has written something (u.notify).
func (s *session) watchClient(u *upstream) error {
	keepalive := s.e.keepalive()
	if err := s.control(frameWatch, encodeWatch(keepalive)); err != nil {
		return err
	}
	s.watchIdle = true
	u.mu.Lock()
	u.peer = s.peer.ID
	u.mu.Unlock()
	u.setState(upstreamWatching, "")
	r := s.startWatchReader(func() time.Time { return time.Now().Add(watchReadSlack * keepalive) })
	defer r.close()
	tick := time.NewTicker(keepalive)
	defer tick.Stop()
	round := func() error {
		if err := s.control(frameRound); err != nil {
			return err
		}
		for {
			var f watchFrame
			select {
			case f = <-r.frames:
			case <-s.e.ctx.Done():
				return s.e.ctx.Err()
			}
			if f.err != nil {
				return f.err
			}
			switch f.typ {
			case frameRoundOK:
				u.setState(upstreamSyncing, "")
				err := s.watchRound()
				s.watchIdle = true
				if err == nil {
					u.setState(upstreamWatching, "")
					r.next()
				}
				return err
			case frameNudge, frameKeepalive: // sent before it read ROUND
				r.next()
			default:
				return malformed("frame type %d while waiting for ROUNDOK", f.typ)
			}
		}
	}
	for {
		select {
		case <-u.notify:
			if err := round(); err != nil {
				return err
			}
		case f := <-r.frames:
			if f.err != nil {
				return f.err
			}
			switch f.typ {
			case frameKeepalive:
				r.next()
			case frameNudge:
				u.nudges.Add(1)
				r.next()
				if err := round(); err != nil {
					return err
				}
			default:
				return malformed("frame type %d on an idle watch stream", f.typ)
			}
		case <-tick.C:
			if err := s.control(frameKeepalive); err != nil {
				return err
			}
		case <-s.e.ctx.Done():
			return s.e.ctx.Err()
		}
	}
}

// addWatcher registers w, ending an older watch stream of the same peer
// (it came back from another address; the old stream may not have noticed
// yet), within Limits.Watchers.
func (e *Engine) addWatcher(w *watcher) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if old := e.watchers[w.peer]; old != nil {
		close(old.s.watchEnd)
		_ = old.s.conn.Close()
		delete(e.watchers, w.peer)
		e.stats.WatchesSuperseded++
	}
	if len(e.watchers) >= e.lim.Watchers {
		e.stats.StreamsRefused++
		return fmt.Errorf("%w: %d watchers already", errBusy, len(e.watchers))
	}
	e.watchers[w.peer] = w
	return nil
}

func (e *Engine) removeWatcher(w *watcher) {
	e.mu.Lock()
	if e.watchers[w.peer] == w {
		delete(e.watchers, w.peer)
	}
	e.mu.Unlock()
}

// nudgeWatchersLocked tells every watching client but `except` that this
// node holds something new. e.mu held.
func (e *Engine) nudgeWatchersLocked(except PeerID) {
	for id, w := range e.watchers {
		if id == except {
			continue
		}
		select {
		case w.nudge <- struct{}{}:
		default: // one is already pending
		}
	}
}

func (e *Engine) countNudge() {
	e.mu.Lock()
	e.stats.NudgesSent++
	e.mu.Unlock()
}
