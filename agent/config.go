package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	fsync "fieldsync/sync"
)

// Config is everything an agent needs to run. DefaultConfig fills in the
// defaults; cmd/fieldsync turns flags into a Config.
type Config struct {
	// Layout is the data directory.
	Layout Layout
	// Unlock opens the keystore: a passphrase or a key file's contents.
	Unlock Unlock
	// MeshKey overrides the keystore's mesh key (--mesh-key-file); nil uses the keystore's.
	MeshKey []byte
	// Bind is the address memberlist listens on (gossip and sync streams).
	Bind string
	// Advertise is the address peers should use, for nodes behind address translation.
	Advertise string
	// Join lists peers to join at start (and to re-join while offline).
	Join []string
	// Client runs sync in client mode (docs/sync.md "Client mode"): for a
	// laptop nobody can reach (NAT, hotel Wi-Fi, a tether). It listens on
	// nothing, is no memberlist member, and keeps one watch stream to each
	// Join address (relays or reachable peers). Bind and Advertise are
	// ignored.
	Client bool
	// Budget bounds what sync sends per round and per UTC day, for
	// metered links (docs/sync.md "Priority and budgets"); zero fields are
	// unlimited.
	Budget fsync.Budget
	// DetectNAT switches a member to client mode once peers cannot reach
	// it (memberlist keeps refuting that it is suspect or dead), with the
	// relays it knows as upstreams. Officers' laptops only.
	DetectNAT bool
	// KeepaliveInterval is a client's keepalive on an idle watch stream; 0
	// takes the profile's (wan 60 s).
	KeepaliveInterval time.Duration
	// Relay runs the agent as a bureau relay: it stores and forwards
	// envelopes without any space key. The certificate must say role relay.
	Relay bool
	// Attachments is "all" (fetch every attachment chunk peers hold; the
	// default, and always on relays) or "on-demand" (fetch a file's chunks
	// when `record open` asks). agent/attach.go.
	Attachments string
	// Profile is the mesh's memberlist timing profile: "wan", "lan" or "local".
	Profile string
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// MaxValueBytes limits one field value; MaxChangeBytes one encoded change.
	MaxValueBytes  int64
	MaxChangeBytes int64
	// MaxRequestBytes limits one local API request body.
	MaxRequestBytes int64
	// MinFreeBytes is the free disk space below which the agent refuses new
	// writes with a clear error, before Badger runs out: Badger writes its
	// logs through memory maps, and a full disk under a memory map is a
	// crash (SIGBUS), not an error.
	MinFreeBytes int64
	// MaxDrift is how far ahead of our clock a remote HLC may be before its
	// author is flagged as skewed (it is still accepted, docs/design.md §3.4).
	MaxDrift time.Duration
	// CertWarning is how long before its certificate expires the agent warns.
	CertWarning time.Duration
	// SyncInterval is the mean anti-entropy interval (jittered).
	SyncInterval time.Duration
	// Faults injects network faults under memberlist and the sync streams.
	// Tests only; nil in production.
	Faults fsync.Faults
	// DisableHints stops hint broadcasts: convergence then comes from
	// anti-entropy alone. Tests only.
	DisableHints bool
	// BadgerValueThreshold moves values larger than this into Badger's value
	// log; 0 keeps the default. Tests only.
	BadgerValueThreshold int64
	// Now is the wall clock; nil means time.Now. Tests only (skewed clocks).
	Now func() time.Time
	// FailCommit, when set, is asked before each store commit (numbered
	// from 1) and makes that commit fail with its error: a disk that fails
	// its Nth write. Tests only; nil in production.
	FailCommit func(n uint64) error
	// MetricsAddr, when set, serves Prometheus metrics at /metrics on this
	// TCP address (docs/operations.md). Empty serves none.
	MetricsAddr string
	// Tamper, when set, rewrites what this agent sends to a peer: the e2e
	// test's hostile relay (bit flips, truncation, splices, replays, a
	// withheld range). It is called once per space sent to a peer in a
	// round and returns that round's rewriter, which gets each envelope with
	// the round's send and sends zero or more envelopes in its place (a
	// round's own state lets it know what the receiver will skip). Tests
	// only; nil in production, and set only by binaries built with
	// -tags fieldsync_chaos.
	Tamper func() func(e fsync.Envelope, send func(fsync.Envelope) error) error
	// DisableFind turns the search index off (find.go): `find` then
	// answers an error, the apply path indexes nothing and no memory goes
	// to it. For devices short of memory, and to measure what indexing
	// costs (agent --no-find).
	DisableFind bool
	// PruneMinAge is how old, by its HLC, a change must be before its
	// superseded values are pruned (compact.go; docs/design.md §7,
	// "Bounded storage"), so that history shows recent ones; 0 means the
	// default (24 hours), negative prunes at once.
	PruneMinAge time.Duration
	// CompactEvery is how many changes applied here (written or received)
	// start a background compaction pass; 0 means the default (4,096),
	// negative never (`fieldsync compact` still does).
	CompactEvery int
	// ReclaimAfterPruned is how many envelopes background passes prune
	// before one of them also rewrites the store's files (compact.go
	// reclaim), at most once an hour; 0 means the default (4,096).
	ReclaimAfterPruned int
	// NoAutoErase turns off the erasure of records whose space's
	// retention policy says they are due (autoerase.go; docs/design.md §2,
	// "Retention"): `review` still lists them, and an officer lapses them by
	// hand (agent --no-auto-erase).
	NoAutoErase bool
}

// DefaultConfig returns a Config with every default filled in; the caller
// sets Layout and Unlock.
func DefaultConfig() Config {
	return Config{
		Bind:            "127.0.0.1:7946",
		Profile:         "wan",
		MaxValueBytes:   24 << 20,
		MaxChangeBytes:  32 << 20,
		MaxRequestBytes: 40 << 20, // a 24 MiB value base64-encoded in JSON, plus the rest
		MaxDrift:        10 * time.Minute,
		MinFreeBytes:    160 << 20, // two memtables, a value-log file and headroom
		CertWarning:     30 * 24 * time.Hour,
		SyncInterval:    0, // the profile's
	}
}

// Validate reports every invalid field at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Layout.Dir == "" {
		errs = append(errs, errors.New("data directory: not set"))
	}
	if c.Unlock.Passphrase == nil && c.Unlock.KeyFile == nil {
		errs = append(errs, errors.New("unlock: neither a passphrase nor a key file"))
	}
	if c.Budget.SessionBytes < 0 || c.Budget.DailyBytes < 0 {
		errs = append(errs, errors.New("budget: negative bytes (0 is unlimited)"))
	}
	if c.Attachments != "" && c.Attachments != "all" && c.Attachments != "on-demand" {
		errs = append(errs, fmt.Errorf("attachments %q: want all or on-demand", c.Attachments))
	}
	if c.Client && c.Relay {
		errs = append(errs, errors.New("client and relay: a relay must be reachable; run it without --client"))
	}
	if c.Client {
		// nothing listens: Bind is not used
	} else if _, _, err := net.SplitHostPort(c.Bind); err != nil {
		errs = append(errs, fmt.Errorf("bind %q: %v", c.Bind, err))
	}
	if c.Advertise != "" {
		if _, _, err := net.SplitHostPort(c.Advertise); err != nil {
			errs = append(errs, fmt.Errorf("advertise %q: %v", c.Advertise, err))
		}
	}
	for _, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			errs = append(errs, fmt.Errorf("join %q: %v", j, err))
		}
	}
	switch c.Profile {
	case "wan", "lan", "local":
	default:
		errs = append(errs, fmt.Errorf("profile %q: want wan, lan or local", c.Profile))
	}
	if c.MaxValueBytes <= 0 || c.MaxChangeBytes < c.MaxValueBytes {
		errs = append(errs, fmt.Errorf("limits: value %d, change %d: need 0 < value <= change", c.MaxValueBytes, c.MaxChangeBytes))
	}
	if c.MaxRequestBytes <= 0 {
		errs = append(errs, errors.New("max request bytes: must be positive"))
	}
	if c.MaxDrift <= 0 {
		errs = append(errs, errors.New("max drift: must be positive"))
	}
	return errors.Join(errs...)
}

func (c *Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}
