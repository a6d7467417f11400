package sync

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// Profile names a set of memberlist timings and sync intervals. One profile
// per mesh: memberlist's timings are per node, and mixed timings make slow
// nodes look dead (docs/design.md §6).
type Profile string

// Profiles.
const (
	ProfileWAN   Profile = "wan"   // default: meshes with field laptops
	ProfileLAN   Profile = "lan"   // a bureau's own servers
	ProfileLocal Profile = "local" // tests and demos on one machine
)

// DefaultLabel is the memberlist label used when Config.Label is empty.
const DefaultLabel = "fieldsync"

// Config configures an Engine. Zero values take the documented defaults.
type Config struct {
	// Store and Auth are required.
	Store Store
	Auth  Authenticator

	// Role is announced in node meta (officer or relay). Default officer.
	Role Role

	// Profile: wan (default), lan or local.
	Profile Profile

	// BindAddr is the host:port memberlist and sync listen on (TCP and
	// UDP; port 0 picks a free one). Required: memberlist's default of
	// 0.0.0.0:7946 is never used implicitly.
	BindAddr string

	// Advertise is the host:port other nodes should use, for nodes behind
	// address translation. Default: the bound address.
	Advertise string

	// Join lists host:port addresses to join on start and to retry with
	// backoff while this node sees no other member. In client mode they
	// are the upstreams (host names allowed).
	Join []string

	// Client runs the engine in client mode (client.go, docs/sync.md
	// "Client mode"): no memberlist, nothing listens; one watch stream to
	// each upstream (Join, or without any the remembered relays). BindAddr
	// and Advertise are ignored.
	Client bool

	// DetectUnreachable watches for signs that peers cannot reach this
	// node: memberlist refuting that it is suspect or dead
	// (UnreachableRefutes times within UnreachableWindow). Then it calls
	// OnUnreachable once, with upstreams for client mode (relays first).
	// Member mode only.
	DetectUnreachable bool
	OnUnreachable     func(upstreams []string)

	// Budget bounds what this node sends per round and per day, for
	// metered links (budget.go). Zero: unlimited.
	Budget Budget

	// Keepalive is a client's keepalive interval on an idle watch stream;
	// three unanswered in a row end it. Default by profile: wan 60 s, lan
	// 30 s, local 1 s.
	Keepalive time.Duration

	// MeshKeys is memberlist's keyring: the first key is primary (used to
	// send), all are accepted. 16, 24 or 32 bytes each. Required.
	MeshKeys [][]byte

	// Label keeps separate meshes apart on the same network (memberlist
	// Label, and part of the stream challenge). Default DefaultLabel.
	Label string

	// Logger receives the engine's logs and memberlist's, with
	// subsys=sync. Nil discards.
	Logger *slog.Logger

	// LogEvery rate-limits repeated warning lines of one kind (failed
	// joins with another mesh key...): at most one per LogEvery, with a
	// count of the lines suppressed. Default 10 s.
	LogEvery time.Duration

	// SyncInterval is the mean interval of anti-entropy rounds with a
	// random peer (jittered ±50%). Default by profile: wan 30 s, lan 10 s,
	// local 2 s. Negative disables the periodic rounds (tests).
	SyncInterval time.Duration

	// DisableHints stops sending and re-queuing hints (tests: convergence
	// must come from anti-entropy alone). Received hints are still counted.
	DisableHints bool

	// PullFromWriter restores the behaviour before fan-out: every node a
	// hint reaches re-queues it at once and pulls from the writer, so one
	// write opens a session to the writer from every other node. Kept only
	// so that `fieldsync bench mesh` can measure both in one run; never set
	// it in production (docs/sync.md "Fan-out").
	PullFromWriter bool

	// Faults injects network faults. Tests only; nil in production.
	Faults Faults

	// TuneMemberlist, if set, adjusts memberlist's configuration after the
	// profile has set it. Benchmarks only (bench spread slows the failure
	// detector so that a thousand members fit on two cores); nil in
	// production.
	TuneMemberlist func(*memberlist.Config)

	// Limits bound what strangers on the port and members of the mesh can
	// make this node hold or do. Zero fields take the defaults.
	Limits Limits
}

// Limits are the engine's resource bounds against strangers on the port and
// misbehaving members (docs/sync.md "Limits"). Every zero field takes the
// default named in its comment; a negative count or duration is invalid.
type Limits struct {
	// ConnsPerIP bounds the inbound connections from one source address
	// (an IPv4 address, or an IPv6 /64) that are not yet authenticated
	// sync sessions: streams waiting for their first byte, sync streams in
	// their TLS handshake or challenge, and memberlist streams being
	// served. More are closed at once. Default 32. Raise it on a relay
	// behind which many laptops share one public address.
	ConnsPerIP int

	// PendingPeeks bounds inbound streams waiting for their first byte.
	// Default MaxPendingPeeks (256).
	PendingPeeks int

	// Handshakes bounds inbound sync streams in their TLS handshake or
	// challenge (strangers included). More are closed at once. Default 128.
	Handshakes int

	// GossipStreams bounds memberlist streams (push/pull, TCP pings, user
	// messages) served at once, separately from sync streams. Default 128.
	GossipStreams int

	// InboundSessions bounds authenticated inbound sync sessions; more
	// wait up to InboundQueueWait for a slot. Default MaxInboundSessions (32).
	InboundSessions int

	// SessionsPerPeer bounds the inbound sessions of one device at once.
	// Default 2.
	SessionsPerPeer int

	// PeekTimeout bounds the wait for an inbound stream's first byte.
	// Default PeekTimeout (3 s).
	PeekTimeout time.Duration

	// TLSHandshakeTimeout bounds an inbound or outbound sync stream's TLS
	// handshake. Default 5 s.
	TLSHandshakeTimeout time.Duration

	// HandshakeTimeout bounds TLS handshake plus challenge. Default
	// HandshakeTimeout (10 s).
	HandshakeTimeout time.Duration

	// SessionTimeout bounds a whole sync session, either side; a round cut
	// by it resumes in the next. Default 10 min.
	SessionTimeout time.Duration

	// HintRoundEvery is the least interval between two rounds started by
	// hints of the same origin (hints in between schedule one more round at
	// the end of the interval); hints of origins that are not known peers
	// share one such budget. Default by profile: wan 2 s, lan 1 s, local
	// 200 ms.
	HintRoundEvery time.Duration

	// MaxPeers bounds the peer table (members, remembered and authenticated
	// peers). Default 4,096.
	MaxPeers int

	// Watchers bounds the clients' idle watch streams this node serves
	// (each holds a connection and its buffers, not a session slot).
	// Default DefaultWatchers (1024).
	Watchers int

	// PeerExpiry: a peer neither alive nor seen (authenticated) for this
	// long is forgotten and no longer rejoined. Default 90 days.
	PeerExpiry time.Duration

	// MeshObjectsPerRound and MeshBytesPerRound bound the mesh objects one
	// side sends (and accepts) in a round. Defaults 100,000 and 64 MiB.
	MeshObjectsPerRound int
	MeshBytesPerRound   int64
}

// Default limits not named elsewhere.
const (
	DefaultConnsPerIP          = 32
	DefaultHandshakes          = 128
	DefaultGossipStreams       = 128
	DefaultSessionsPerPeer     = 2
	DefaultWatchers            = 1024
	DefaultTLSHandshakeTimeout = 5 * time.Second
	DefaultSessionTimeout      = 10 * time.Minute
	DefaultMaxPeers            = 4096
	DefaultPeerExpiry          = 90 * 24 * time.Hour
	DefaultMeshObjectsPerRound = 100_000
	DefaultMeshBytesPerRound   = 64 << 20
)

// withDefaults fills the zero fields of l.
func (l Limits) withDefaults(prof profileParams) Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.ConnsPerIP, DefaultConnsPerIP)
	def(&l.PendingPeeks, MaxPendingPeeks)
	def(&l.Handshakes, DefaultHandshakes)
	def(&l.GossipStreams, DefaultGossipStreams)
	def(&l.InboundSessions, MaxInboundSessions)
	def(&l.SessionsPerPeer, DefaultSessionsPerPeer)
	def(&l.Watchers, DefaultWatchers)
	def(&l.MaxPeers, DefaultMaxPeers)
	def(&l.MeshObjectsPerRound, DefaultMeshObjectsPerRound)
	if l.MeshObjectsPerRound > MaxMeshObjects {
		l.MeshObjectsPerRound = MaxMeshObjects
	}
	if l.MeshBytesPerRound == 0 {
		l.MeshBytesPerRound = DefaultMeshBytesPerRound
	}
	defD(&l.PeekTimeout, PeekTimeout)
	defD(&l.TLSHandshakeTimeout, DefaultTLSHandshakeTimeout)
	defD(&l.HandshakeTimeout, HandshakeTimeout)
	defD(&l.SessionTimeout, DefaultSessionTimeout)
	defD(&l.HintRoundEvery, prof.hintEvery)
	defD(&l.PeerExpiry, DefaultPeerExpiry)
	return l
}

func (l Limits) validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"conns per IP", int64(l.ConnsPerIP)}, {"pending peeks", int64(l.PendingPeeks)}, {"handshakes", int64(l.Handshakes)},
		{"gossip streams", int64(l.GossipStreams)}, {"inbound sessions", int64(l.InboundSessions)},
		{"sessions per peer", int64(l.SessionsPerPeer)}, {"watchers", int64(l.Watchers)}, {"max peers", int64(l.MaxPeers)},
		{"mesh objects per round", int64(l.MeshObjectsPerRound)}, {"mesh bytes per round", l.MeshBytesPerRound},
		{"peek timeout", int64(l.PeekTimeout)}, {"TLS handshake timeout", int64(l.TLSHandshakeTimeout)},
		{"handshake timeout", int64(l.HandshakeTimeout)}, {"session timeout", int64(l.SessionTimeout)},
		{"hint round interval", int64(l.HintRoundEvery)}, {"peer expiry", int64(l.PeerExpiry)},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("limit %s is negative (0 takes the default)", f.name))
		}
	}
	return errors.Join(errs...)
}

// Faults lets tests drop traffic between named nodes (node name = PeerID
// text). Both gossip (packets and memberlist streams) and sync streams go
// through it. Implementations must be safe for concurrent use.
type Faults interface {
	// Drop reports whether traffic from node `from` to node `to` is cut
	// now. Checked on every packet, every dial, and every read and write of
	// an open stream (an open stream whose pair is cut fails at once).
	Drop(from, to string) bool
	// WrapSync may wrap the raw connection of a sync stream (e.g. to cut it
	// after N bytes). Return c unchanged for no fault.
	WrapSync(from, to string, c net.Conn) net.Conn
}

// profileParams holds what a profile sets.
type profileParams struct {
	base         func() *memberlist.Config
	gossipNodes  int
	gossipEvery  time.Duration
	retransmit   int
	syncInterval time.Duration
	rejoinMin    time.Duration
	rejoinMax    time.Duration
	reclaim      time.Duration // DeadNodeReclaimTime
	hintEvery    time.Duration // default Limits.HintRoundEvery
	keepalive    time.Duration // default Config.Keepalive
}

func profileOf(p Profile) (profileParams, error) {
	switch p {
	case "", ProfileWAN:
		return profileParams{base: memberlist.DefaultWANConfig, gossipNodes: 5, gossipEvery: 300 * time.Millisecond,
			retransmit: 5, syncInterval: 30 * time.Second, rejoinMin: 5 * time.Second, rejoinMax: 5 * time.Minute, reclaim: 5 * time.Second, hintEvery: 2 * time.Second, keepalive: time.Minute}, nil
	case ProfileLAN:
		return profileParams{base: memberlist.DefaultLANConfig, gossipNodes: 5, gossipEvery: 100 * time.Millisecond,
			retransmit: 5, syncInterval: 10 * time.Second, rejoinMin: 1 * time.Second, rejoinMax: 1 * time.Minute, reclaim: time.Second, hintEvery: time.Second, keepalive: 30 * time.Second}, nil
	case ProfileLocal:
		return profileParams{base: memberlist.DefaultLocalConfig, gossipNodes: 4, gossipEvery: 50 * time.Millisecond,
			retransmit: 5, syncInterval: 2 * time.Second, rejoinMin: 200 * time.Millisecond, rejoinMax: 2 * time.Second, reclaim: time.Millisecond, hintEvery: 200 * time.Millisecond, keepalive: time.Second}, nil
	}
	return profileParams{}, fmt.Errorf("unknown profile %q (want wan, lan or local)", p)
}

// Validate reports every invalid field of c.
func (c *Config) Validate() error {
	var errs []error
	if c.Store == nil {
		errs = append(errs, errors.New("store is required"))
	}
	if c.Auth == nil {
		errs = append(errs, errors.New("authenticator is required"))
	}
	if _, err := profileOf(c.Profile); err != nil {
		errs = append(errs, err)
	}
	if c.Client {
		// nothing listens
	} else if c.BindAddr == "" {
		errs = append(errs, errors.New("bind address is required (host:port)"))
	} else if _, _, err := splitHostPort(c.BindAddr); err != nil {
		errs = append(errs, fmt.Errorf("bind address: %w", err))
	}
	if c.Keepalive < 0 {
		errs = append(errs, errors.New("keepalive is negative (0 takes the profile's)"))
	}
	if c.Advertise != "" && !c.Client {
		if _, _, err := splitHostPort(c.Advertise); err != nil {
			errs = append(errs, fmt.Errorf("advertise address: %w", err))
		}
	}
	for _, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			errs = append(errs, fmt.Errorf("join address %q: %w", j, err))
		}
	}
	if len(c.MeshKeys) == 0 {
		errs = append(errs, errors.New("a mesh key is required"))
	}
	for i, k := range c.MeshKeys {
		if err := memberlist.ValidateKey(k); err != nil {
			errs = append(errs, fmt.Errorf("mesh key %d: %v", i, err))
		}
	}
	if len(c.Label) > memberlist.LabelMaxSize {
		errs = append(errs, fmt.Errorf("label longer than %d bytes", memberlist.LabelMaxSize))
	}
	if err := c.Limits.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Role != 0 && c.Role != RoleOfficer && c.Role != RoleRelay {
		errs = append(errs, fmt.Errorf("unknown role %d", c.Role))
	}
	return errors.Join(errs...)
}

func splitHostPort(hp string) (string, int, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	if net.ParseIP(h) == nil {
		return "", 0, fmt.Errorf("%q is not an IP address", h)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return h, port, nil
}
