package sync

import (
	"errors"
	"io"
	"log"
	"net"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// tlsRecordHandshake is the first byte of a TLS ClientHello record. memberlist
// streams start with a message type (0–13), an encryption version (0–1) or
// its label marker (244), so 0x16 (22) is ours.
const tlsRecordHandshake = 0x16

// errDropped is returned for traffic cut by Faults.
var errDropped = errors.New("sync: traffic dropped by fault injection")

// muxTransport wraps memberlist's NetTransport so that one port carries both
// memberlist (UDP gossip, TCP streams) and our TLS sync streams: inbound TCP
// streams are classified by their first byte. It is also where traffic is
// counted and where tests inject faults.
type muxTransport struct {
	inner  *memberlist.NetTransport
	faults Faults
	lim    Limits
	// onSync is set before memberlist starts and runs in the stream's own
	// goroutine; it must call release (idempotent) once the stream no
	// longer counts against its source address (authenticated or closed).
	onSync func(c net.Conn, release func())

	name atomic.Pointer[string] // local node name

	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	peeks    chan struct{} // bounds streams waiting for their first byte
	gossip   chan struct{} // bounds memberlist streams being served
	done     chan struct{}
	wg       gosync.WaitGroup
	closeMu  gosync.Once

	mu       gosync.Mutex
	addrName map[string]string       // "ip:port" -> node name, from memberlist events
	perIP    map[string]*sourceSlots // source key -> its unauthenticated inbound streams
	waiting  atomic.Int64            // streams waiting for their source's slot

	gossipIn, gossipOut atomic.Uint64 // bytes: UDP packets and memberlist streams
	refused             atomic.Uint64 // inbound streams closed by a limit
}

var _ memberlist.NodeAwareTransport = (*muxTransport)(nil)

func newMuxTransport(bindIP string, port int, logger *log.Logger, faults Faults, lim Limits) (*muxTransport, error) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{bindIP}, BindPort: port, Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	t := &muxTransport{
		inner:    nt,
		faults:   faults,
		lim:      lim,
		packetCh: make(chan *memberlist.Packet),
		streamCh: make(chan net.Conn),
		peeks:    make(chan struct{}, lim.PendingPeeks),
		gossip:   make(chan struct{}, lim.GossipStreams),
		done:     make(chan struct{}),
		addrName: make(map[string]string),
		perIP:    make(map[string]*sourceSlots),
	}
	empty := ""
	t.name.Store(&empty)
	t.wg.Add(2)
	go t.pumpPackets()
	go t.pumpStreams()
	return t, nil
}

func (t *muxTransport) localName() string { return *t.name.Load() }

func (t *muxTransport) setName(addr, name string) {
	t.mu.Lock()
	t.addrName[addr] = name
	t.mu.Unlock()
}

func (t *muxTransport) forgetName(addr string) {
	t.mu.Lock()
	delete(t.addrName, addr)
	t.mu.Unlock()
}

// sourceKey is what per-address limits count by: the IPv4 address, or the
// /64 of an IPv6 address (one host usually holds a whole /64).
func sourceKey(a net.Addr) string {
	var ip net.IP
	switch x := a.(type) {
	case *net.TCPAddr:
		ip = x.IP
	default:
		h, _, err := net.SplitHostPort(a.String())
		if err != nil {
			return a.String()
		}
		ip = net.ParseIP(h)
	}
	if ip4 := ip.To4(); ip4 != nil {
		return ip4.String()
	}
	if len(ip) == net.IPv6len {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return a.String()
}

// sourceSlots are one source address's slots: at most ConnsPerIP of its
// streams are unauthenticated at once, and at most as many more wait (up to
// PeekTimeout) for one of those slots; the rest are refused at once. Many
// devices behind one address (or 50 nodes on one test machine) that all
// pull at once after a hint wait a moment instead of failing.
type sourceSlots struct {
	key   string
	sem   chan struct{}
	users int // holding or waiting; the entry is dropped at 0
}

// reserveSource counts one more stream of key, unless as many already hold
// or wait for its slots as the limits allow.
func (t *muxTransport) reserveSource(key string) *sourceSlots {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.perIP[key]
	if s == nil {
		s = &sourceSlots{key: key, sem: make(chan struct{}, t.lim.ConnsPerIP)}
		t.perIP[key] = s
	}
	if s.users >= 2*t.lim.ConnsPerIP {
		return nil
	}
	s.users++
	return s
}

func (t *muxTransport) unreserveSource(s *sourceSlots) {
	t.mu.Lock()
	if s.users--; s.users <= 0 {
		delete(t.perIP, s.key)
	}
	t.mu.Unlock()
}

// waitSource waits (up to PeekTimeout) for a slot of s.
func (t *muxTransport) waitSource(s *sourceSlots) bool {
	timer := time.NewTimer(t.lim.PeekTimeout)
	defer timer.Stop()
	select {
	case s.sem <- struct{}{}:
		return true
	case <-timer.C:
	case <-t.done:
	}
	return false
}

func (t *muxTransport) refuse(c net.Conn) {
	t.refused.Add(1)
	_ = c.Close()
}

func (t *muxTransport) nameOf(addr string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addrName[addr]
}

func (t *muxTransport) dropped(to string) bool {
	return t.faults != nil && to != "" && t.faults.Drop(t.localName(), to)
}

func (t *muxTransport) pumpPackets() {
	defer t.wg.Done()
	in := t.inner.PacketCh()
	for {
		select {
		case <-t.done:
			return
		case p := <-in:
			if t.faults != nil {
				if from := t.nameOf(p.From.String()); from != "" && t.faults.Drop(from, t.localName()) {
					continue
				}
			}
			t.gossipIn.Add(uint64(len(p.Buf)))
			select {
			case t.packetCh <- p:
			case <-t.done:
				return
			}
		}
	}
}

func (t *muxTransport) pumpStreams() {
	defer t.wg.Done()
	in := t.inner.StreamCh()
	for {
		select {
		case <-t.done:
			return
		case c := <-in:
			// One source address cannot hold more than its share of
			// anything before it authenticates.
			src := t.reserveSource(sourceKey(c.RemoteAddr()))
			if src == nil {
				t.refuse(c)
				continue
			}
			select {
			case src.sem <- struct{}{}:
				t.startClassify(c, src)
				continue
			default:
			}
			if t.waiting.Add(1) > int64(t.lim.PendingPeeks) {
				t.waiting.Add(-1)
				t.unreserveSource(src)
				t.refuse(c)
				continue
			}
			t.wg.Add(1)
			go func() {
				defer t.wg.Done()
				ok := t.waitSource(src)
				t.waiting.Add(-1)
				if !ok {
					t.unreserveSource(src)
					t.refuse(c)
					return
				}
				t.startClassify(c, src)
			}()
		}
	}
}

// startClassify takes a slot of the pending-peek table (or refuses the
// stream) and classifies it in its own goroutine. The stream holds a slot
// of its source.
func (t *muxTransport) startClassify(c net.Conn, src *sourceSlots) {
	select {
	case t.peeks <- struct{}{}:
	default: // too many streams still silent: refuse this one
		<-src.sem
		t.unreserveSource(src)
		t.refuse(c)
		return
	}
	t.wg.Add(1)
	go t.classify(c, src)
}

// classify peeks the first byte of an inbound stream, with a deadline, in
// its own goroutine, and hands the stream to the sync engine or memberlist.
// Sync streams and memberlist streams have budgets of their own, so a flood
// of one kind cannot starve the other.
func (t *muxTransport) classify(c net.Conn, src *sourceSlots) {
	defer t.wg.Done()
	release := gosync.OnceFunc(func() {
		<-src.sem
		t.unreserveSource(src)
	})
	_ = c.SetReadDeadline(time.Now().Add(t.lim.PeekTimeout))
	var b [1]byte
	_, err := io.ReadFull(c, b[:])
	<-t.peeks
	if err != nil {
		release()
		_ = c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	pc := &peekedConn{Conn: c, first: b[:]}
	if b[0] == tlsRecordHandshake && t.onSync != nil {
		t.onSync(pc, release)
		return
	}
	select {
	case t.gossip <- struct{}{}:
	default:
		release()
		t.refuse(c)
		return
	}
	// memberlist closes every stream it is handed (handleConn); the slot
	// and the address's count are given back then.
	rc := &releaseConn{Conn: &countConn{Conn: pc, in: &t.gossipIn, out: &t.gossipOut}}
	rc.release = gosync.OnceFunc(func() {
		release()
		<-t.gossip
	})
	select {
	case t.streamCh <- rc:
	case <-t.done:
		_ = rc.Close()
	}
}

// releaseConn gives its budget back when closed.
type releaseConn struct {
	net.Conn
	release func()
}

func (c *releaseConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

// dialSync opens a raw TCP connection for a sync stream to node `to`.
func (t *muxTransport) dialSync(addr, to string, timeout time.Duration) (net.Conn, error) {
	if t.dropped(to) {
		return nil, errDropped
	}
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	return t.faultConn(c, to), nil
}

// faultConn makes an open connection to or from node `peer` fail once
// Faults cuts the pair. No-op without Faults.
func (t *muxTransport) faultConn(c net.Conn, peer string) net.Conn {
	if t.faults == nil || peer == "" {
		return c
	}
	return &faultConn{Conn: c, t: t, peer: peer}
}

// FinalAdvertiseAddr implements memberlist.Transport.
func (t *muxTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.inner.FinalAdvertiseAddr(ip, port)
}

// WriteTo implements memberlist.Transport.
func (t *muxTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress implements memberlist.NodeAwareTransport.
func (t *muxTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	name := a.Name
	if name == "" {
		name = t.nameOf(a.Addr)
	}
	if t.dropped(name) {
		return time.Now(), nil // lost in the network, as UDP is
	}
	t.gossipOut.Add(uint64(len(b)))
	return t.inner.WriteToAddress(b, a)
}

// PacketCh implements memberlist.Transport.
func (t *muxTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout implements memberlist.Transport.
func (t *muxTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (t *muxTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	name := a.Name
	if name == "" {
		name = t.nameOf(a.Addr)
	}
	if t.dropped(name) {
		return nil, errDropped
	}
	c, err := t.inner.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	return &countConn{Conn: t.faultConn(c, name), in: &t.gossipIn, out: &t.gossipOut}, nil
}

// StreamCh implements memberlist.Transport.
func (t *muxTransport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown implements memberlist.Transport.
func (t *muxTransport) Shutdown() error {
	var err error
	t.closeMu.Do(func() {
		close(t.done)
		// NetTransport's listeners block sending on unbuffered channels
		// with no shutdown check: keep draining them until its Shutdown
		// (which waits for those listeners) returns.
		finished := make(chan error, 1)
		go func() { finished <- t.inner.Shutdown() }()
		for waiting := true; waiting; {
			select {
			case <-t.inner.PacketCh():
			case c := <-t.inner.StreamCh():
				_ = c.Close()
			case err = <-finished:
				waiting = false
			}
		}
		t.wg.Wait()
	})
	return err
}

// peekedConn returns the peeked bytes before reading on.
type peekedConn struct {
	net.Conn
	first []byte
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if len(c.first) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// countConn counts the bytes that cross a connection.
type countConn struct {
	net.Conn
	in, out *atomic.Uint64
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(uint64(n))
	return n, err
}

func (c *countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(uint64(n))
	return n, err
}

// faultConn fails reads and writes once Faults cuts the pair.
type faultConn struct {
	net.Conn
	t    *muxTransport
	peer string
}

func (c *faultConn) cut() bool {
	me := c.t.localName()
	if c.t.faults.Drop(me, c.peer) || c.t.faults.Drop(c.peer, me) {
		_ = c.Conn.Close()
		return true
	}
	return false
}

func (c *faultConn) Read(p []byte) (int, error) {
	if c.cut() {
		return 0, errDropped
	}
	n, err := c.Conn.Read(p)
	if err == nil && c.cut() {
		return 0, errDropped
	}
	return n, err
}

func (c *faultConn) Write(p []byte) (int, error) {
	if c.cut() {
		return 0, errDropped
	}
	return c.Conn.Write(p)
}
