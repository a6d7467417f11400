package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
	"fieldsync/internal/datadir"
	"fieldsync/internal/platform"
	"fieldsync/internal/store"
	fsync "fieldsync/sync"
)

// Version is the agent's version, set at build time with -ldflags.
var Version = "dev"

// Agent is one running fieldsync device: its store, its keys and its API.
// New opens everything; Run serves until its context ends; the Agent owns
// every goroutine it starts.
type Agent struct {
	attachSt attachState // on-demand attachment wants (attach.go)
	stubs    stubWants   // whole copies of stubs of live writes asked of peers (heal.go)

	storeFormat atomic.Int32 // the store's format record (storageFormat*): raised by the first freeze

	recErMu sync.Mutex  // guards recEr
	recEr   recErasures // record-erase markers held, by envelope (recerase.go)

	cfg   Config
	log   *slog.Logger
	ks    *crypto.Keystore
	id    *crypto.Identity
	dev   crypto.DeviceID
	cert  *crypto.Certificate
	trust *crypto.TrustSet
	lock  *os.File // flock on Layout.Lock()
	ready func()   // called once the API is up (RunWorker's supervisor signal)
	logs  *logRing // recent log records, for diag (logring.go)

	db  *sealedKV
	com *store.Committer

	// stateMu guards the state below (down to the health fields) and
	// serialises every change to it and to the store: local writes and
	// received envelopes are built under it, in the order they commit.
	// Writers take it only through withWrite, which always unlocks;
	// readers hold it for one short, consistent read (withRead, or a
	// Lock/Unlock span that only reads). state.go; docs/design.md §4, "One
	// owner of state".
	stateMu sync.Mutex
	gen     uint64 // store generation; bumped when caches are reloaded after a failed commit
	closed  bool   // set by Close: no more writes
	// inflight holds the results of ingests not yet waited for (commitInWindow).
	inflight []<-chan error
	// diskMu guards the free-space check's cache (write.go): writes check
	// it under stateMu, chunks and partial envelopes without it.
	diskMu      sync.Mutex
	diskChecked time.Time
	diskOK      bool
	writeID     uint64 // sequence number of the last write handed to the committer
	clock       crdt.Clock
	// othersHLC is the newest HLC of another device's change applied here
	// while within the allowed drift of this device's clock: the time
	// automatic erasure trusts besides its own (autoerase.go). Stored
	// under M hlc-others.
	othersHLC crdt.Timestamp
	spaces    map[crypto.SpaceID]*spaceState
	cache     *recordCache
	// stale: a write transaction panicked; the next one reloads the state.
	stale bool
	// signHook, if set, runs before a local change's signature, outside
	// stateMu, and fails it by returning an error (tests only).
	signHook func(seq uint64) error
	// flightFix are the ownFlight entries chained by the write transaction
	// being built: their write number is set when it takes its place in the
	// commit order (commitWrite, commitInWindow).
	flightFix []*ownFlight
	// trustTab holds the trust tables, copy-on-write (state.go).
	trustTab atomic.Pointer[trustTables]
	// reloads counts reloads of the whole state (tests: a refused write
	// must not cost one).
	reloads atomic.Uint64
	// compactCount counts changes applied since the last compaction pass
	// (compact.go).
	compactCount atomic.Int64
	// backgroundPasses counts background compaction passes (compact.go).
	backgroundPasses atomic.Int64
	// prunedSince counts envelopes pruned since the store's files were
	// last rewritten, at lastReclaim (Unix seconds; 0 never) (compact.go);
	// appliedSince the changes applied since then.
	prunedSince  atomic.Int64
	appliedSince atomic.Int64 // changes applied since then
	// chunksCollected counts attachment chunks collected (chunkgc.go).
	chunksCollected atomic.Int64
	// healedValues counts values segments healed from whole copies (heal.go).
	healedValues atomic.Int64
	lastReclaim  atomic.Int64
	// after is the worker for work that follows commits (state.go).
	after afterWork
	// find is the search index, in memory only (find.go); nil on relays
	// and with Config.DisableFind. Its lock is taken under stateMu.
	find *findIndex
	// opened is set once open is done: before, load runs without stateMu
	// and the worker must not read the state (findReset).
	opened atomic.Bool

	// health and status (statMu)
	statMu   sync.Mutex
	rejected map[string]int
	skewed   map[crypto.DeviceID]int64
	missing  []api.Gap
	gaps     map[gapKey]api.Gap
	corrupt  int
	officers map[gapKey]string // (space, author) -> officer name from a verified profile
	peerHeld map[crypto.SpaceID]uint64
	// retentionStat is status.retention (autoerase.go).
	retentionStat api.RetentionStatus

	// partialMu serialises the partial envelopes' key space (partial.go).
	partialMu sync.Mutex

	syncMu sync.Mutex
	// combineMu guards writeQueues: each space's API writes waiting to
	// share a change (combine.go).
	combineMu   sync.Mutex
	writeQueues map[crypto.SpaceID]*writeQueue
	// switchMu orders a switch to client mode (becomeClient) against itself.
	switchMu sync.Mutex
	sync     *fsync.Engine // nil until Run starts it

	// orphans holds, in memory and bounded, verified envelopes of spaces
	// whose routing record this device does not hold yet (orphans.go).
	// stateMu.
	orphans map[crypto.SpaceID]*orphanSet
	// wrapDue: an epoch key came in a key share; it is wrapped on to
	// every entitled device at the end of the batch (keyshare.go, wrapIfDue).
	wrapDue atomic.Bool
	// receiptsDue: some space has changes that owe a receipt (receipts.go).
	receiptsDue atomic.Bool
}

func (a *Agent) engine() *fsync.Engine {
	a.syncMu.Lock()
	defer a.syncMu.Unlock()
	return a.sync
}

// notify tells peers (through a hint) that this device has new changes.
func (a *Agent) notify() {
	if e := a.engine(); e != nil {
		e.Notify()
	}
}

type gapKey struct {
	space  crypto.SpaceID
	author crypto.DeviceID
}

// spaceState is what the agent keeps in memory of each space: its metadata,
// causal context, the heads of every author's log, and the epoch keys it holds.
type spaceState struct {
	id    crypto.SpaceID
	meta  spaceMeta
	ctx   *crdt.Context
	heads map[crypto.DeviceID]head
	// ownFlight are this device's envelopes in the space chained but not
	// yet known to be on disk (seq ascending): sync's Heads reports the
	// device's own log only up to what is stored (ownStoredSeq).
	ownFlight []*ownFlight
	keys      map[crypto.KeyID]*crypto.SpaceKey
	current   *crypto.SpaceKey // the epoch key new writes are sealed under; nil on relays
	// epochAt holds the provisional start of each epoch key held (packed
	// HLC; 0 unknown), used until a key share of it dates it
	// (meta.EpochStarts; routing.go, epochStart).
	epochAt map[crypto.KeyID]uint64
	// profiled is true once this device has written its profile in the space.
	profiled bool
	// shared records the epoch keys already wrapped to each device.
	shared map[shareKey]bool
	// unlocked is set while applying an envelope that may let waiting ones
	// go on (a key share that brought a new key, a change some waited
	// for): they are applied after that commit (drainPending).
	unlocked bool
	// waits holds, per author, the lowest seq some waiting envelope of the
	// space needs held or applied (causal.go); in memory only, noted again
	// by every drain.
	waits map[crypto.DeviceID]uint64
	// depIDs caches the IDs of held envelopes that changes name as
	// dependencies (causal.go heldLive).
	depIDs map[depKey][32]byte
	// unflushed holds the IDs of envelopes below their author's head that
	// may not be on disk yet (causal.go advanceHead).
	unflushed        map[depKey]unflushedID
	unflushedPruneAt int // the size at which unflushed is next swept
	// receiptDue are received changes this device owes a receipt
	// (receipts.go); in memory only.
	receiptDue []dueReceipt
}

// keyring returns a copy of the space's epoch keys, to open envelopes
// outside stateMu. stateMu held.
func (s *spaceState) keyring() crypto.Keyring {
	return &spaceState{id: s.id, keys: maps.Clone(s.keys)}
}

// Key implements crypto.Keyring for one space.
func (s *spaceState) Key(space crypto.SpaceID, epoch crypto.KeyID) (*crypto.SpaceKey, bool) {
	if space != s.id {
		return nil, false
	}
	k, ok := s.keys[epoch]
	return k, ok
}

// New opens the data directory: the keystore, the certificate, the trust
// list and the store, and checks the store against what it acknowledged.
func New(cfg Config) (*Agent, error) {
	if err := CheckQuarantine(cfg.Layout); err != nil {
		return nil, err
	}
	return newAgent(cfg)
}

func newAgent(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log, logs := withLogRing(log)
	a := &Agent{
		cfg:      cfg,
		log:      log,
		logs:     logs,
		spaces:   map[crypto.SpaceID]*spaceState{},
		rejected: map[string]int{},
		skewed:   map[crypto.DeviceID]int64{},
		gaps:     map[gapKey]api.Gap{},
		officers: map[gapKey]string{},
		peerHeld: map[crypto.SpaceID]uint64{},
		cache:    newRecordCache(4096),
		gen:      1,
	}
	a.trustTab.Store(newTrustTables())
	if !cfg.Relay && !cfg.DisableFind {
		a.find = newFindIndex()
	}
	if err := a.open(); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// ErrLocked means another agent runs on this data directory.
var ErrLocked = errors.New("another agent is running on this data directory")

func (a *Agent) open() error {
	l := a.cfg.Layout
	cert, err := datadir.LoadCert(l)
	if err != nil {
		if errors.Is(err, ErrNotEnrolled) {
			if _, serr := os.Stat(l.Keystore()); serr != nil {
				return fmt.Errorf("%w: %s", ErrNotInitialized, l.Dir)
			}
		}
		return err
	}
	a.cert = cert
	if a.trust, err = datadir.LoadTrust(l); err != nil {
		return err
	}
	lock, err := os.OpenFile(l.Lock(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("open lock file: %w", err)
	}
	if err := platform.LockFile(lock); err != nil {
		lock.Close()
		return fmt.Errorf("%w (%s)", ErrLocked, l.Dir)
	}
	a.lock = lock
	if a.ks, err = datadir.LoadKeystore(l, a.cfg.Unlock); err != nil {
		return err
	}
	a.id = a.ks.Identity
	a.dev = a.id.ID()
	if a.cert.Device.ID() != a.dev {
		return fmt.Errorf("certificate %s is for device %s, not this device %s", l.Cert(), a.cert.Device.ID(), a.dev)
	}
	if a.cfg.Relay != (a.cert.Role == crypto.RoleRelay) {
		return fmt.Errorf("certificate role is %s but the agent was started %s", a.cert.Role, map[bool]string{true: "with --relay", false: "without --relay"}[a.cfg.Relay])
	}
	now := a.cfg.now()
	if err := a.cert.Verify(a.trust, now); err != nil {
		switch {
		case errors.Is(err, crypto.ErrExpired), errors.Is(err, crypto.ErrNotYetValid):
			// docs/design.md §5: our clock is more likely wrong than the certificate.
			a.log.Warn("certificate looks invalid by this device's clock; starting anyway", "err", err, "not_before", a.cert.NotBefore, "not_after", a.cert.NotAfter)
		default:
			return fmt.Errorf("certificate: %w", err)
		}
	}
	if err := os.MkdirAll(l.Store(), 0o700); err != nil {
		return fmt.Errorf("create store directory: %w", err)
	}
	badgerKey := crypto.DeriveKey(&a.ks.StorageKey, "fieldsync badger encryption v1")
	k, err := store.Open(store.Options{Dir: l.Store(), EncryptionKey: badgerKey[:], ValueThreshold: a.cfg.BadgerValueThreshold, Logger: a.log})
	if err != nil {
		if errors.Is(err, errStoreLocked) {
			return fmt.Errorf("%w (%v)", ErrLocked, err)
		}
		return &StoreError{Dir: l.Store(), Err: err}
	}
	a.db = &sealedKV{kv: k, key: crypto.DeriveKey(&a.ks.StorageKey, "fieldsync value seal v1")}
	a.com = store.NewCommitter(k, a.cfg.FailCommit)
	a.startAfterWork()
	if err := a.checkFormat(); err != nil {
		return err
	}
	if err := a.load(); err != nil {
		return &StoreError{Dir: l.Store(), Err: err}
	}
	a.clock.MaxDriftMillis = a.cfg.MaxDrift.Milliseconds()
	if err := a.cutRevoked(); err != nil {
		return &StoreError{Dir: l.Store(), Err: err}
	}
	if err := a.purgeAtStart(); err != nil { // erase.go
		return &StoreError{Dir: l.Store(), Err: err}
	}
	a.opened.Store(true)
	// The search index is built at the first search (find.go).
	if a.receiptsDue.Load() {
		a.queueAfter(&a.after.receiptsDue) // owed from before a stop
	}
	return nil
}

// StoreError is a store that could not be opened or read; the message says
// how to recover.
type StoreError struct {
	Dir string
	Err error
}

func (e *StoreError) Error() string {
	return fmt.Sprintf("store %s: %v", e.Dir, e.Err)
}

func (e *StoreError) Unwrap() error { return e.Err }

// Hint is what an operator can do about it.
func (e *StoreError) Hint() string {
	return "the store may be damaged: stop the agent and run `fieldsync repair`; if it cannot open, move " + e.Dir + " aside and resync from peers, or restore a backup"
}

// ErrUnknownFormat means the store was written by a newer (or foreign) version.
var ErrUnknownFormat = errors.New("unknown storage format")

func (a *Agent) checkFormat() error {
	b, err := a.db.get(metaKey("format"))
	if errors.Is(err, errKVNotFound) {
		// A new store: is it really empty?
		empty := true
		_ = a.db.kv.ScanKeys(nil, func([]byte) error { empty = false; return errStopScan })
		if !empty {
			return &StoreError{Dir: a.cfg.Layout.Store(), Err: fmt.Errorf("%w: no format record, but the store is not empty", ErrUnknownFormat)}
		}
		a.storeFormat.Store(storageFormatWhole)
		errs := a.db.kv.CommitGroups([][]kvEntry{{a.formatEntry(storageFormatWhole)}})
		return errs[0]
	}
	if err != nil {
		return &StoreError{Dir: a.cfg.Layout.Store(), Err: fmt.Errorf("read format record: %w", err)}
	}
	var f formatRecord
	if err := jsonUnmarshal(b, &f); err != nil {
		return &StoreError{Dir: a.cfg.Layout.Store(), Err: fmt.Errorf("format record: %v", err)}
	}
	if f.Format < storageFormatWhole || f.Format > storageFormat {
		return &StoreError{Dir: a.cfg.Layout.Store(), Err: fmt.Errorf("%w %d (this agent knows %d to %d): upgrade fieldsync", ErrUnknownFormat, f.Format, storageFormatWhole, storageFormat)}
	}
	if f.Device != a.dev.String() {
		return &StoreError{Dir: a.cfg.Layout.Store(), Err: fmt.Errorf("store belongs to device %s, not %s", f.Device, a.dev)}
	}
	a.storeFormat.Store(int32(f.Format))
	return nil
}

// formatEntry is the store's format record saying format.
func (a *Agent) formatEntry(format int) kvEntry {
	f, _ := jsonMarshal(formatRecord{Format: format, Device: a.dev.String()})
	return a.db.entry(metaKey("format"), f)
}

// Close stops the committer and closes the store. It is safe to call more
// than once and on a partly opened agent.
func (a *Agent) Close() error {
	a.stateMu.Lock()
	if a.closed {
		a.stateMu.Unlock()
		return nil
	}
	a.closed = true // from here every write transaction fails with ErrClosed
	a.stateMu.Unlock()
	if a.find != nil {
		a.find.stop.Store(true) // a build in progress ends at its next record
		a.find.closeQuiet()
	}
	// The worker's job in progress ends at its next transaction.
	a.stopAfterWork()
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	var err error
	if a.com != nil {
		a.com.Stop()
	}
	if a.db != nil {
		// a.db stays set: a late reader gets Badger's "closed" error, not a nil dereference.
		err = a.db.kv.Close()
	}
	if a.ks != nil {
		a.ks.Zero()
	}
	if a.lock != nil {
		a.lock.Close()
		a.lock = nil
	}
	return err
}

// Run serves the local API on the socket until ctx ends, then shuts down
// cleanly: the API stops accepting, in-flight writes finish, the store closes.
func (a *Agent) Run(ctx context.Context) error {
	defer a.Close()
	sock := a.cfg.Layout.Socket()
	if a.cfg.Layout.SocketIsShort() {
		a.log.Info("data directory path is too long for a Unix socket; using a short path", "socket", sock)
	}
	if err := a.cfg.Layout.PrepareSocketDir(); err != nil { // datadir.go: the user's alone
		return err
	}
	// We hold the agent lock, so a socket file left here is stale.
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("socket mode: %w", err)
	}
	if err := checkOwnSocket(sock); err != nil {
		ln.Close()
		return err
	}
	defer os.Remove(sock)
	stopMetrics, err := a.startMetrics() // metrics.go: --metrics-addr
	if err != nil {
		ln.Close()
		return err
	}
	defer stopMetrics()
	if err := a.startSync(ctx, nil); err != nil {
		ln.Close()
		return err
	}
	defer a.stopSync()
	defer a.startValueLogGC(ctx)() // vlog.go
	defer a.startAutoErase(ctx)()  // autoerase.go
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	a.log.Info("agent running", "device", a.dev.String(), "role", a.cert.Role.String(), "socket", sock, "version", Version)
	a.warnCertificate()
	if a.ready != nil {
		a.ready()
	}
	// Envelopes left waiting for a key that has since arrived (a crash
	// between storing the key and applying them) are applied now.
	a.queueDrainAll()
	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("api server: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	<-errc // Serve has returned
	a.log.Info("agent stopped")
	return nil
}

func (a *Agent) warnCertificate() {
	left := a.cert.NotAfter.Sub(a.cfg.now())
	if left > 0 && left < a.cfg.CertWarning {
		a.log.Warn("certificate expires soon: ask your bureau for a new one", "not_after", a.cert.NotAfter, "days_left", int(left.Hours()/24))
	}
}

// DeviceID is this agent's device ID.
func (a *Agent) DeviceID() crypto.DeviceID { return a.dev }

func (a *Agent) countReject(reason string) {
	a.statMu.Lock()
	a.rejected[reason]++
	a.statMu.Unlock()
}

func (a *Agent) countCorrupt(key []byte) {
	a.statMu.Lock()
	a.corrupt++
	a.statMu.Unlock()
	a.log.Error("corrupt value in store", "key_prefix", string(key[:1]))
}

// sortedSpaces returns the spaces ordered by ID; the caller holds stateMu.
func (a *Agent) sortedSpaces() []*spaceState {
	out := make([]*spaceState, 0, len(a.spaces))
	for _, s := range a.spaces {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return string(out[i].id[:]) < string(out[j].id[:]) })
	return out
}

// startSync starts the sync engine: memberlist on cfg.Bind, hints,
// anti-entropy; or, with cfg.Client or upstreams given (the switch below),
// client mode with those upstreams.
func (a *Agent) startSync(ctx context.Context, upstreams []string) error {
	mesh := a.meshKeyring() // agent/meshkey.go: the override, or the keystore's ring
	if len(mesh) == 0 {
		return errors.New("no mesh key: give --mesh-key-file or re-run init with --mesh-key")
	}
	role := fsync.RoleOfficer
	if a.cfg.Relay {
		role = fsync.RoleRelay
	}
	cfg := fsync.Config{
		Store: syncAdapter{a}, Auth: syncAdapter{a}, Role: role,
		Profile: fsync.Profile(a.cfg.Profile), BindAddr: a.cfg.Bind, Advertise: a.cfg.Advertise,
		Join: a.cfg.Join, MeshKeys: mesh, Logger: a.log, SyncInterval: a.cfg.SyncInterval,
		DisableHints: a.cfg.DisableHints, Faults: a.cfg.Faults,
		Client: a.cfg.Client, Keepalive: a.cfg.KeepaliveInterval, Budget: a.cfg.Budget,
	}
	if upstreams != nil {
		cfg.Client, cfg.Join = true, upstreams
	} else if a.cfg.DetectNAT && !a.cfg.Client && !a.cfg.Relay {
		cfg.DetectUnreachable = true
		cfg.OnUnreachable = func(up []string) { a.becomeClient(ctx, up) }
	}
	e, err := fsync.New(cfg)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	if err := e.Start(ctx); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	a.syncMu.Lock()
	a.sync = e
	a.syncMu.Unlock()
	a.log.Info("sync running", "addr", e.LocalAddr(), "profile", a.cfg.Profile)
	return nil
}

// becomeClient restarts sync in client mode once the engine found that
// peers cannot reach this device (Config.DetectNAT; docs/sync.md "Client
// mode"). Without any upstream it stays a member and says so.
func (a *Agent) becomeClient(ctx context.Context, upstreams []string) {
	if len(upstreams) == 0 {
		a.log.Warn("peers cannot reach this device and it knows no relay to keep a stream with: staying a member; give --join a relay address, or run with --client")
		return
	}
	a.switchMu.Lock()
	defer a.switchMu.Unlock()
	if ctx.Err() != nil {
		return
	}
	a.log.Warn("peers cannot reach this device: switching to client mode", "upstreams", upstreams)
	a.stopSync()
	if err := a.startSync(ctx, upstreams); err != nil {
		a.log.Error("client mode did not start; sync is off until the agent restarts", "err", err)
	}
}

func (a *Agent) stopSync() {
	a.syncMu.Lock()
	e := a.sync
	a.sync = nil
	a.syncMu.Unlock()
	if e != nil {
		e.Close()
	}
}

// SyncAddr is the address the sync engine listens on ("" before Run).
func (a *Agent) SyncAddr() string {
	if e := a.engine(); e != nil {
		return e.LocalAddr()
	}
	return ""
}
