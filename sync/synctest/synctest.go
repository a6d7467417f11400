// Package synctest runs fieldsync sync engines in-process on real memberlist
// over 127.0.0.1: fake devices, a fake bureau and certificates (plain
// Ed25519, no package crypto), a verifying sync.MemStore per node, and a
// fault injector that partitions named nodes (gossip and streams) or cuts a
// stream after N bytes. Tests and benchmarks of sync and e2e import it.
package synctest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	gosync "sync"
	"sync/atomic"
	"time"

	fsync "fieldsync/sync"
)

// Bureau is a fake enrolling authority: it signs device certificates.
type Bureau struct {
	Pub  ed25519.PublicKey
	priv ed25519.PrivateKey
}

// NewBureau returns a fresh bureau.
func NewBureau() *Bureau {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	return &Bureau{Pub: pub, priv: priv}
}

// Device is a fake device identity.
type Device struct {
	ID   fsync.PeerID
	Key  ed25519.PrivateKey
	Cert []byte // certificate blob signed by its bureau
	Role fsync.Role
}

// certificate blob: "FSC1" | pub 32 | role 1 | bureau pub 32 | bureau sig 64
const certSize = 4 + 32 + 1 + 32 + 64

// NewDevice makes a device enrolled by b (b nil: unenrolled, no certificate).
func NewDevice(b *Bureau, role fsync.Role) *Device {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	d := &Device{ID: IDOf(pub), Key: priv, Role: role}
	if b != nil {
		d.Cert = b.Issue(pub, role)
	}
	return d
}

// IDOf is the device ID of a public key.
func IDOf(pub ed25519.PublicKey) fsync.PeerID {
	h := sha256.Sum256(pub)
	var id fsync.PeerID
	copy(id[:], h[:16])
	return id
}

// Issue signs a certificate blob for pub.
func (b *Bureau) Issue(pub ed25519.PublicKey, role fsync.Role) []byte {
	body := append([]byte("FSC1"), pub...)
	body = append(body, byte(role))
	body = append(body, b.Pub...)
	return append(body, ed25519.Sign(b.priv, body)...)
}

// parsed certificate
type cert struct {
	pub    ed25519.PublicKey
	role   fsync.Role
	bureau ed25519.PublicKey
}

func parseCert(blob []byte) (cert, error) {
	if len(blob) != certSize || string(blob[:4]) != "FSC1" {
		return cert{}, fsync.Reject("malformed", errors.New("certificate"))
	}
	body, sig := blob[:certSize-64], blob[certSize-64:]
	c := cert{pub: ed25519.PublicKey(blob[4:36]), role: fsync.Role(blob[36]), bureau: ed25519.PublicKey(blob[37:69])}
	if !ed25519.Verify(c.bureau, body, sig) {
		return cert{}, fsync.Reject("signature", errors.New("certificate signature"))
	}
	return c, nil
}

// Auth is a fake sync.Authenticator backed by plain Ed25519.
type Auth struct {
	Dev   *Device
	Trust []ed25519.PublicKey // trusted bureau keys

	// Entitle decides entitlement; nil means every authenticated peer is
	// entitled to every space.
	Entitle func(peer fsync.Peer, space fsync.SpaceID) bool

	// WrongKey makes SignChallenge sign with a key that is not the
	// device's (a peer that cannot answer the challenge).
	WrongKey bool

	// MeshIngested counts IngestMeshObject calls (objects received).
	MeshIngested atomic.Int64

	mu    gosync.Mutex
	certs map[fsync.PeerID][]byte // known certificates (mesh-wide objects)
	extra [][]byte                // see SetExtra
}

// SetExtra sets mesh objects offered besides the known certificates (a
// hostile or unlucky node: oversize or junk objects). Sessions may be
// running: it takes the lock MeshObjects reads under.
func (a *Auth) SetExtra(objs ...[]byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.extra = objs
}

var _ fsync.Authenticator = (*Auth)(nil)

// NewAuth returns an authenticator for dev trusting the given bureaus.
func NewAuth(dev *Device, trust ...*Bureau) *Auth {
	a := &Auth{Dev: dev, certs: map[fsync.PeerID][]byte{}}
	for _, b := range trust {
		a.Trust = append(a.Trust, b.Pub)
	}
	if len(dev.Cert) > 0 {
		a.certs[dev.ID] = dev.Cert
	}
	return a
}

func (a *Auth) trusted(c cert) bool {
	for _, t := range a.Trust {
		if bytes.Equal(t, c.bureau) {
			return true
		}
	}
	return false
}

// LocalID implements sync.Authenticator.
func (a *Auth) LocalID() fsync.PeerID { return a.Dev.ID }

// TLSCertificate implements sync.Authenticator.
func (a *Auth) TLSCertificate() (tls.Certificate, error) { return fsync.SelfSignedTLS(a.Dev.Key) }

// Certificate implements sync.Authenticator.
func (a *Auth) Certificate() []byte { return a.Dev.Cert }

func transcriptBytes(t fsync.Transcript, side fsync.Side) []byte {
	var b bytes.Buffer
	b.WriteString("synctest challenge v1\x00")
	b.WriteByte(byte(len(t.Label)))
	b.WriteString(t.Label)
	b.WriteByte(byte(len(t.Binding)))
	b.Write(t.Binding)
	b.Write(t.Initiator[:])
	b.Write(t.Responder[:])
	b.Write(t.InitiatorNonce[:])
	b.Write(t.ResponderNonce[:])
	b.WriteByte(byte(side))
	return b.Bytes()
}

// SignChallenge implements sync.Authenticator.
func (a *Auth) SignChallenge(t fsync.Transcript, side fsync.Side) ([]byte, error) {
	key := a.Dev.Key
	if a.WrongKey {
		_, key, _ = ed25519.GenerateKey(rand.Reader)
	}
	return ed25519.Sign(key, transcriptBytes(t, side)), nil
}

// VerifyPeer implements sync.Authenticator.
func (a *Auth) VerifyPeer(blob []byte, t fsync.Transcript, side fsync.Side, sig []byte) (fsync.Peer, error) {
	c, err := parseCert(blob)
	if err != nil {
		return fsync.Peer{}, err
	}
	if !a.trusted(c) {
		return fsync.Peer{}, fsync.Reject("untrusted", nil)
	}
	if !ed25519.Verify(c.pub, transcriptBytes(t, side), sig) {
		return fsync.Peer{}, fsync.Reject("challenge", errors.New("bad challenge signature"))
	}
	h := sha256.Sum256(c.bureau)
	return fsync.Peer{ID: IDOf(c.pub), Bureau: fmt.Sprintf("%x", h[:8]), Role: c.role, SignKey: c.pub}, nil
}

// Entitled implements sync.Authenticator.
func (a *Auth) Entitled(p fsync.Peer, s fsync.SpaceID) bool {
	if a.Entitle != nil {
		return a.Entitle(p, s)
	}
	return true
}

// MeshObjects implements sync.Authenticator: the known certificates.
func (a *Auth) MeshObjects() ([][]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([][]byte, 0, len(a.certs)+len(a.extra))
	for _, c := range a.certs {
		out = append(out, c)
	}
	return append(out, a.extra...), nil
}

// IngestMeshObject implements sync.Authenticator.
func (a *Auth) IngestMeshObject(from fsync.Peer, obj []byte) (bool, error) {
	a.MeshIngested.Add(1)
	// A certificate held byte for byte is not verified again (as the
	// agent's AddCertificate): while a mesh forms, every round whose digests
	// differ carries every certificate.
	if len(obj) == certSize {
		a.mu.Lock()
		held := bytes.Equal(a.certs[certID(obj)], obj)
		a.mu.Unlock()
		if held {
			return false, nil
		}
	}
	c, err := parseCert(obj)
	if err != nil {
		return false, err
	}
	if !a.trusted(c) {
		return false, fsync.Reject("untrusted", nil)
	}
	id := IDOf(c.pub)
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.certs[id]; ok {
		return false, nil
	}
	a.certs[id] = bytes.Clone(obj)
	return true, nil
}

// certID is the device ID a certificate blob of certSize names, unverified.
func certID(blob []byte) fsync.PeerID { return IDOf(ed25519.PublicKey(blob[4:36])) }

// Know adds certificates as already held, without verifying them: a
// mesh whose devices were enrolled long ago (bench spread seeds a thousand
// engines this way instead of verifying a million signatures).
func (a *Auth) Know(certs ...[]byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range certs {
		if len(c) == certSize {
			a.certs[certID(c)] = c
		}
	}
}

// AuthorKey returns a known author's public key.
func (a *Auth) AuthorKey(id fsync.PeerID) (ed25519.PublicKey, bool) {
	a.mu.Lock()
	blob := a.certs[id]
	a.mu.Unlock()
	if blob == nil {
		return nil, false
	}
	c, err := parseCert(blob)
	if err != nil {
		return nil, false
	}
	return c.pub, true
}

// envelope: "FSE1" | space 16 | author 16 | seq 8 | body | sig 64 over all before
const envOverhead = 4 + 16 + 16 + 8 + 64

// Seal makes a test envelope signed by dev.
func Seal(dev *Device, space fsync.SpaceID, seq uint64, body []byte) fsync.Envelope {
	b := make([]byte, 0, envOverhead+len(body))
	b = append(b, "FSE1"...)
	b = append(b, space[:]...)
	b = append(b, dev.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = append(b, body...)
	b = append(b, ed25519.Sign(dev.Key, b)...)
	return fsync.Envelope{Space: space, Author: dev.ID, Seq: seq, Data: b}
}

// Verifier returns a MemStore verify func: the envelope parses, its header
// matches the triple, its author has a known trusted certificate, the
// signature holds.
func (a *Auth) Verifier() func(from fsync.PeerID, env fsync.Envelope) error {
	return func(from fsync.PeerID, env fsync.Envelope) error {
		d := env.Data
		if len(d) < envOverhead || string(d[:4]) != "FSE1" {
			return fsync.Reject("malformed", nil)
		}
		var sp fsync.SpaceID
		var au fsync.PeerID
		copy(sp[:], d[4:20])
		copy(au[:], d[20:36])
		seq := binary.BigEndian.Uint64(d[36:44])
		if sp != env.Space || au != env.Author || seq != env.Seq {
			return fsync.Reject("mismatch", nil)
		}
		pub, ok := a.AuthorKey(au)
		if !ok {
			return fsync.Reject("untrusted", errors.New("unknown author"))
		}
		if !ed25519.Verify(pub, d[:len(d)-64], d[len(d)-64:]) {
			return fsync.Reject("signature", nil)
		}
		return nil
	}
}

// Faults is a sync.Faults that partitions nodes into groups and can cut
// sync streams after a number of bytes. Safe for concurrent use.
type Faults struct {
	mu      gosync.Mutex
	group   map[string]int // node name -> group; absent: group 0
	pairs   map[[2]string]bool
	cutFrom string
	cutTo   string
	cutN    int64
	cuts    atomic.Int64
	delay   time.Duration // every write of a new sync stream waits this long
}

// SlowStreams makes every write of the sync streams opened from now on wait
// d (a slow link, one-way latency d): a round's handshake and summaries
// then take several d, so rounds that both ends start at about the same
// time really overlap. Zero ends it.
func (f *Faults) SlowStreams(d time.Duration) {
	f.mu.Lock()
	f.delay = d
	f.mu.Unlock()
}

type delayConn struct {
	net.Conn
	d time.Duration
}

func (c *delayConn) Write(p []byte) (int, error) {
	time.Sleep(c.d)
	return c.Conn.Write(p)
}

var _ fsync.Faults = (*Faults)(nil)

// NewFaults returns a fault injector with no faults.
func NewFaults() *Faults { return &Faults{group: map[string]int{}, pairs: map[[2]string]bool{}} }

// Cut drops traffic between two nodes (both ways), until Heal.
func (f *Faults) Cut(a, b *Node) {
	f.mu.Lock()
	f.pairs[[2]string{a.Name(), b.Name()}] = true
	f.pairs[[2]string{b.Name(), a.Name()}] = true
	f.mu.Unlock()
}

// Partition puts each list of nodes in its own group; traffic between
// groups is dropped. Nodes not listed stay in group 0.
func (f *Faults) Partition(groups ...[]*Node) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.group = map[string]int{}
	for i, g := range groups {
		for _, n := range g {
			f.group[n.Name()] = i + 1
		}
	}
}

// Heal drops every partition and cut.
func (f *Faults) Heal() {
	f.mu.Lock()
	f.group = map[string]int{}
	f.pairs = map[[2]string]bool{}
	f.mu.Unlock()
}

// CutStreamAfter makes the next sync stream that node from opens to node
// to fail after n bytes (either way); once.
func (f *Faults) CutStreamAfter(from, to *Node, n int64) {
	f.mu.Lock()
	f.cutFrom, f.cutTo, f.cutN = from.Name(), to.Name(), n
	f.mu.Unlock()
}

// Cuts returns how many streams were cut by CutStreamAfter.
func (f *Faults) Cuts() int64 { return f.cuts.Load() }

// Drop implements sync.Faults.
func (f *Faults) Drop(from, to string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.group[from] != f.group[to] || f.pairs[[2]string{from, to}]
}

// WrapSync implements sync.Faults.
func (f *Faults) WrapSync(from, to string, c net.Conn) net.Conn {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cutN > 0 && from == f.cutFrom && to == f.cutTo {
		n := f.cutN
		f.cutN = 0
		return &cutConn{Conn: c, left: n, f: f}
	}
	if f.delay > 0 {
		return &delayConn{Conn: c, d: f.delay}
	}
	return c
}

type cutConn struct {
	net.Conn
	mu   gosync.Mutex
	left int64
	f    *Faults
	done bool
}

func (c *cutConn) spend(n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return false
	}
	c.left -= int64(n)
	if c.left <= 0 {
		c.done = true
		c.f.cuts.Add(1)
		_ = c.Conn.Close()
		return false
	}
	return true
}

func (c *cutConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.spend(n) {
		return 0, io.ErrUnexpectedEOF
	}
	return n, err
}

func (c *cutConn) Write(p []byte) (int, error) {
	if !c.spend(len(p)) {
		return 0, io.ErrClosedPipe
	}
	return c.Conn.Write(p)
}

// Options configure a test node.
type Options struct {
	Bureau       *Bureau       // enrolling bureau (default: the cluster's)
	Trust        []*Bureau     // trusted bureaus (default: the cluster's)
	Device       *Device       // default: a new officer of Bureau
	MeshKey      []byte        // default: the cluster's
	Profile      fsync.Profile // default local
	SyncInterval time.Duration // default: profile's; negative disables
	DisableHints bool          // no hints sent or re-queued
	Logger       *slog.Logger  // default: discard
	Join         []string      // default: the cluster's first node
	BindAddr     string        // host:port to listen on (default 127.0.0.1:0)
	LogEvery     time.Duration // default 10 s
	WrongKey     bool          // sign challenges with a key that is not the device's
	Tweak        func(*fsync.Config)
	// Entitle overrides entitlement (default: everyone, every space).
	Entitle func(peer fsync.Peer, space fsync.SpaceID) bool
}

// Node is one engine with its store and fake identity.
type Node struct {
	Engine *fsync.Engine
	Store  *fsync.MemStore
	Auth   *Auth
	Dev    *Device

	mu  gosync.Mutex
	seq map[fsync.SpaceID]uint64
}

// Name is the node's memberlist name.
func (n *Node) Name() string { return n.Dev.ID.String() }

// Write appends a new envelope with body to space, authored by this node,
// stores it and sends a hint.
func (n *Node) Write(space fsync.SpaceID, body []byte) fsync.Envelope {
	env := n.Seal(space, body)
	if err := n.Store.Put(env); err != nil {
		panic(fmt.Sprintf("synctest: local put: %v", err))
	}
	n.Engine.Notify()
	return env
}

// Seal makes this node's next envelope in space without storing it.
func (n *Node) Seal(space fsync.SpaceID, body []byte) fsync.Envelope {
	n.mu.Lock()
	n.seq[space]++
	seq := n.seq[space]
	n.mu.Unlock()
	return Seal(n.Dev, space, seq, body)
}

// TB is what a Cluster needs of its caller: a *testing.T or *testing.B,
// or a benchmark command's own (bench/spread runs a cluster outside go test).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
}

// Cluster is a set of nodes sharing a bureau, a mesh key and a fault
// injector.
type Cluster struct {
	T       TB
	Bureau  *Bureau
	MeshKey []byte
	Faults  *Faults
	Nodes   []*Node
}

// NewCluster returns an empty cluster; add nodes with Add.
func NewCluster(t TB) *Cluster {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return &Cluster{T: t, Bureau: NewBureau(), MeshKey: key, Faults: NewFaults()}
}

// Start makes n nodes with the same options; the first is joined by the rest.
func (c *Cluster) Start(n int, o Options) []*Node {
	var out []*Node
	for i := 0; i < n; i++ {
		out = append(out, c.Add(o))
	}
	return out
}

// NewNode builds (without starting) a node with o and the cluster's defaults.
func (c *Cluster) NewNode(o Options) *Node {
	c.T.Helper()
	if o.Bureau == nil {
		o.Bureau = c.Bureau
	}
	if o.Trust == nil {
		o.Trust = []*Bureau{c.Bureau}
	}
	if o.Device == nil {
		o.Device = NewDevice(o.Bureau, fsync.RoleOfficer)
	}
	if o.MeshKey == nil {
		o.MeshKey = c.MeshKey
	}
	if o.Profile == "" {
		o.Profile = fsync.ProfileLocal
	}
	if o.Join == nil && len(c.Nodes) > 0 {
		o.Join = []string{c.Nodes[0].Engine.LocalAddr()}
	}
	auth := NewAuth(o.Device, o.Trust...)
	auth.WrongKey = o.WrongKey
	auth.Entitle = o.Entitle
	store := fsync.NewMemStore(auth.Verifier())
	if o.BindAddr == "" {
		o.BindAddr = "127.0.0.1:0"
	}
	cfg := fsync.Config{
		Store: store, Auth: auth, Role: o.Device.Role, Profile: o.Profile,
		BindAddr: o.BindAddr, Join: o.Join, MeshKeys: [][]byte{o.MeshKey},
		Logger: o.Logger, SyncInterval: o.SyncInterval, DisableHints: o.DisableHints,
		Faults: c.Faults, LogEvery: o.LogEvery,
	}
	if o.Tweak != nil {
		o.Tweak(&cfg)
	}
	e, err := fsync.New(cfg)
	if err != nil {
		c.T.Fatalf("synctest: new engine: %v", err)
	}
	return &Node{Engine: e, Store: store, Auth: auth, Dev: o.Device, seq: map[fsync.SpaceID]uint64{}}
}

// Add builds and starts a node, joined to the cluster's first node, and
// closes it when the test ends.
func (c *Cluster) Add(o Options) *Node {
	c.T.Helper()
	n := c.NewNode(o)
	if err := n.Engine.Start(context.Background()); err != nil {
		c.T.Fatalf("synctest: start: %v", err)
	}
	c.T.Cleanup(func() { _ = n.Engine.Close() })
	if len(o.Join) > 0 {
		_, _ = n.Engine.Join(o.Join...)
	} else if len(c.Nodes) > 0 {
		// Join now (the background rejoin would do it too, later).
		_, _ = n.Engine.Join(c.Nodes[0].Engine.LocalAddr())
	}
	c.Nodes = append(c.Nodes, n)
	return n
}

// NewSpace returns a random space ID.
func NewSpace() fsync.SpaceID {
	var s fsync.SpaceID
	_, _ = rand.Read(s[:])
	return s
}

// Converged reports whether all nodes hold the same envelope set.
func Converged(nodes ...*Node) bool {
	if len(nodes) == 0 {
		return true
	}
	fp := nodes[0].Store.Fingerprint()
	for _, n := range nodes[1:] {
		if n.Store.Fingerprint() != fp {
			return false
		}
	}
	return true
}

// WaitConverged waits until nodes converge (same heads, same envelope set)
// or the timeout passes; it fails t with each node's heads on timeout.
func WaitConverged(t TB, timeout time.Duration, nodes ...*Node) {
	t.Helper()
	if !WaitFor(timeout, func() bool { return Converged(nodes...) && sameHeads(nodes) }) {
		for _, n := range nodes {
			t.Logf("node %s: %d envelopes, members %d, stats %+v", n.Name()[:6], n.Store.Count(), len(n.Engine.Members()), n.Engine.Stats())
		}
		t.Fatalf("nodes did not converge within %v", timeout)
	}
}

func sameHeads(nodes []*Node) bool {
	d0 := nodes[0].Store.Digest()
	for _, n := range nodes[1:] {
		d := n.Store.Digest()
		if len(d) != len(d0) {
			return false
		}
		for s, v := range d0 {
			if !v.Equal(d[s]) {
				return false
			}
		}
	}
	return true
}

// WaitMembers waits until every node sees all others as live members.
func WaitMembers(timeout time.Duration, nodes ...*Node) bool {
	return WaitFor(timeout, func() bool {
		for _, n := range nodes {
			if len(n.Engine.Members()) < len(nodes)-1 {
				return false
			}
		}
		return true
	})
}

// WaitFor polls cond every 20 ms until it holds or timeout passes.
func WaitFor(timeout time.Duration, cond func() bool) bool {
	return WaitEvery(timeout, 20*time.Millisecond, cond)
}

// WaitEvery polls cond every `every` until it holds or timeout passes.
func WaitEvery(timeout, every time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(every)
	}
}

// Quiesce waits until no round starts or ends among nodes (their round
// counters, failed ones included) for `stable`, or timeout passes, so that
// what follows is counted apart from the rounds before it.
func Quiesce(stable, timeout time.Duration, nodes ...*Node) {
	count := func() (n uint64) {
		for _, x := range nodes {
			st := x.Engine.Stats()
			n += st.Rounds + st.RoundErrors
		}
		return n
	}
	last, since := count(), time.Now()
	deadline := time.Now().Add(timeout)
	for time.Since(since) < stable && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		if n := count(); n != last {
			last, since = n, time.Now()
		}
	}
}

// LogBuffer is a concurrency-safe slog handler target that keeps records
// for assertions.
type LogBuffer struct {
	mu      gosync.Mutex
	Records []slog.Record
}

// Logger returns a logger writing into b at the given minimum level.
func (b *LogBuffer) Logger(level slog.Level) *slog.Logger {
	return slog.New(&bufHandler{b: b, level: level})
}

// Matching returns the records whose message contains s.
func (b *LogBuffer) Matching(s string) []slog.Record {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []slog.Record
	for _, r := range b.Records {
		if bytes.Contains([]byte(r.Message), []byte(s)) {
			out = append(out, r)
		}
	}
	return out
}

// Attr returns a record's attribute value by key.
func Attr(r slog.Record, key string) (slog.Value, bool) {
	var v slog.Value
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v, found = a.Value, true
			return false
		}
		return true
	})
	return v, found
}

type bufHandler struct {
	b     *LogBuffer
	level slog.Level
	attrs []slog.Attr
}

func (h *bufHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }
func (h *bufHandler) Handle(_ context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(h.attrs...)
	h.b.mu.Lock()
	h.b.Records = append(h.b.Records, r)
	h.b.mu.Unlock()
	return nil
}
func (h *bufHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &bufHandler{b: h.b, level: h.level, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}
func (h *bufHandler) WithGroup(string) slog.Handler { return h }

// Restart closes n's engine and starts a new one with the same device,
// store and authenticator and no join addresses: it must find the mesh
// through the peers its store remembers. The returned node replaces n in
// the cluster.
func (c *Cluster) Restart(n *Node, o Options) *Node {
	c.T.Helper()
	_ = n.Engine.Close()
	if o.Profile == "" {
		o.Profile = fsync.ProfileLocal
	}
	cfg := fsync.Config{
		Store: n.Store, Auth: n.Auth, Role: n.Dev.Role, Profile: o.Profile,
		BindAddr: "127.0.0.1:0", MeshKeys: [][]byte{c.MeshKey}, Logger: o.Logger,
		SyncInterval: o.SyncInterval, DisableHints: o.DisableHints, Faults: c.Faults, LogEvery: o.LogEvery,
	}
	e, err := fsync.New(cfg)
	if err != nil {
		c.T.Fatalf("synctest: new engine: %v", err)
	}
	if err := e.Start(context.Background()); err != nil {
		c.T.Fatalf("synctest: start: %v", err)
	}
	c.T.Cleanup(func() { _ = e.Close() })
	nn := &Node{Engine: e, Store: n.Store, Auth: n.Auth, Dev: n.Dev, seq: n.seq}
	for i, x := range c.Nodes {
		if x == n {
			c.Nodes[i] = nn
		}
	}
	return nn
}

// WaitForFast polls cond every millisecond (for latency measurements).
func WaitForFast(timeout time.Duration, cond func() bool) bool {
	return WaitEvery(timeout, time.Millisecond, cond)
}
