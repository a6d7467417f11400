package api

// API paths.
const (
	PathStatus        = "/v1/status"         // GET  -> Status
	PathPeers         = "/v1/peers"          // GET  -> []PeerInfo
	PathSpaceCreate   = "/v1/space/create"   // POST SpaceCreateRequest -> Space
	PathSpaceList     = "/v1/space/list"     // GET  -> []Space
	PathSpaceDigest   = "/v1/space/digest"   // POST SpaceRef -> Digest
	PathSpaceRelease  = "/v1/space/release"  // POST SpaceBureauRequest -> Space
	PathSpaceWithdraw = "/v1/space/withdraw" // POST SpaceBureauRequest -> Space
	PathRecordPut     = "/v1/record/put"     // POST RecordPutRequest -> Record
	PathRecordNew     = "/v1/record/new"     // POST RecordPutRequest (ID empty) -> Record
	PathRecordGet     = "/v1/record/get"     // POST RecordRef -> Record
	PathRecordList    = "/v1/record/list"    // POST SpaceRef -> []RecordSummary
	PathRecordDelete  = "/v1/record/delete"  // POST RecordRef -> Record
	PathSetOp         = "/v1/set/op"         // POST SetOpRequest -> Record
	PathNoteAdd       = "/v1/note/add"       // POST NoteAddRequest -> Record
	PathConflictsList = "/v1/conflicts/list" // POST ConflictsListRequest -> []Conflict
	PathConflictsShow = "/v1/conflicts/show" // POST RecordRef -> ConflictsShow
	PathResolve       = "/v1/resolve"        // POST ResolveRequest -> Record
	PathHistory       = "/v1/history"        // POST RecordRef -> []HistoryEntry
)

// Space is `space create|list` (docs/design.md §8).
type Space struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Owner   string   `json:"owner"`   // owning bureau name
	Release []string `json:"release"` // bureau names the space is released to, owner included
	// Unreadable counts the envelopes of the space this device holds but
	// cannot open yet (no key for their epoch has reached it), and
	// UnreadableAuthors lists their authors' device IDs (space list only;
	// 0 and [] elsewhere, and always on relays, which open nothing).
	Unreadable        int      `json:"unreadable"`
	UnreadableAuthors []string `json:"unreadable_authors"`
	// Receipts is the space's receipt policy (ReceiptsOff, ...); relays,
	// which read nothing, show none.
	Receipts string `json:"receipts,omitempty"`
	// Retention is the space's retention policy (nil: none); relays show
	// none.
	Retention *Retention `json:"retention,omitempty"`
}

// UnreadableSpace is one space with envelopes held that this device cannot
// open yet: how many, and their authors' device IDs (status).
type UnreadableSpace struct {
	Space     string   `json:"space"`
	Envelopes int      `json:"envelopes"`
	Authors   []string `json:"authors"`
	// Waiting counts envelopes that open but wait for a change they
	// depend on, or for a build that knows their format (docs/crdt.md,
	// "Causal dependencies").
	Waiting int `json:"waiting"`
}

// SpaceCreateRequest creates a space owned by this device's bureau.
type SpaceCreateRequest struct {
	Name      string   `json:"name"`
	ReleaseTo []string `json:"release_to,omitempty"` // bureau names or fingerprints
}

// SpaceRef names a space by ID, unique ID prefix (≥ 6 chars) or unique name.
type SpaceRef struct {
	Space string `json:"space"`
}

// SpaceBureauRequest is `space release|withdraw SPACE BUREAU`.
type SpaceBureauRequest struct {
	Space  string `json:"space"`
	Bureau string `json:"bureau"`
}

// Digest is `space digest`.
type Digest struct {
	Space     string `json:"space"`
	Digest    string `json:"digest"`    // hash of the materialized state (members only)
	Envelopes string `json:"envelopes"` // hash of the set of envelope IDs held
	Count     int    `json:"count"`     // number of envelopes held
	Bytes     int64  `json:"bytes"`     // total size of the envelopes held
}

// RecordRef names one record of a space.
type RecordRef struct {
	Space  string `json:"space"`
	Record string `json:"record"`
}

// FieldValue is one FIELD=VALUE of `record put|new`. Exactly one of Value
// (UTF-8 text) and ValueBase64 (binary, e.g. from @file) is set.
type FieldValue struct {
	Name        string `json:"name"`
	Value       string `json:"value,omitempty"`
	ValueBase64 string `json:"value_base64,omitempty"`
}

// RecordPutRequest writes register fields; an empty Record asks for a new,
// generated record ID (`record new`).
type RecordPutRequest struct {
	Space  string       `json:"space"`
	Record string       `json:"record,omitempty"`
	Fields []FieldValue `json:"fields"`
}

// SetOpRequest is `set add|remove SPACE RECORD FIELD VALUE`.
type SetOpRequest struct {
	Space  string `json:"space"`
	Record string `json:"record"`
	Field  string `json:"field"`
	Op     string `json:"op"` // "add" or "remove"
	Value  string `json:"value"`
}

// NoteAddRequest is `note add SPACE RECORD TEXT`.
type NoteAddRequest struct {
	Space  string `json:"space"`
	Record string `json:"record"`
	Text   string `json:"text"`
}

// Sibling is one live value of a register (docs/design.md §8).
type Sibling struct {
	Value       string `json:"value"`                  // UTF-8 text; empty when ValueBase64 is set
	ValueBase64 string `json:"value_base64,omitempty"` // set when the value is not valid UTF-8
	Author      string `json:"author"`                 // device ID
	Officer     string `json:"officer"`                // from the author's profile; "" if unknown
	Bureau      string `json:"bureau,omitempty"`       // author's bureau name, when known
	HLC         string `json:"hlc"`                    // RFC 3339 UTC with milliseconds, then "+logical" when non-zero
	Dot         string `json:"dot"`                    // the write's dot, as `resolve` takes it
	// Skewed is never set: clock skew is each device's own observation, so
	// it is in status (skewed_authors) and history, not in record or
	// conflict JSON, which must read the same on every device (docs/design.md §8).
	Skewed bool `json:"skewed,omitempty"`
	// Withheld is set when this device holds the write without its value:
	// its values segment was cut while the value is live (a stub of a
	// live write, sent by a hostile or broken peer: docs/design.md §7,
	// "Bounded storage"). Value is then empty and means nothing.
	Withheld bool `json:"value_withheld,omitempty"`
	// Resolution is set, in `conflicts show`, on a value written by
	// `resolve`: which siblings it replaced, and why.
	Resolution *Resolution `json:"resolution,omitempty"`
}

// Field is one register of `record get`.
type Field struct {
	Value    string    `json:"value"`    // the display winner's value (siblings[0])
	Conflict bool      `json:"conflict"` // more than one live sibling
	Siblings []Sibling `json:"siblings"` // every live value, winner first
	// Attachment is set when the winner's value is an attachment manifest
	// (record attach): the file's name, size, hash and whether it is held.
	Attachment *Attachment `json:"attachment,omitempty"`
}

// SetField is one add-wins set of `record get`.
type SetField struct {
	Elements []string `json:"elements"`
}

// Note is one entry of a record's notes list.
type Note struct {
	ID      string `json:"id"`
	Author  string `json:"author"`
	Officer string `json:"officer"`
	HLC     string `json:"hlc"`
	Text    string `json:"text"`
	Removed bool   `json:"removed,omitempty"`
}

// Record is `record get` (docs/design.md §8).
type Record struct {
	Space          string              `json:"space"`
	ID             string              `json:"id"`
	Deleted        bool                `json:"deleted"`
	DeleteConflict bool                `json:"delete_conflict,omitempty"` // deleted, but an edit concurrent with the delete survives
	Fields         map[string]Field    `json:"fields"`
	Sets           map[string]SetField `json:"sets"`
	Notes          []Note              `json:"notes"`
}

// RecordSummary is one row of `record list`.
type RecordSummary struct {
	ID        string `json:"id"`
	Deleted   bool   `json:"deleted"`
	Fields    int    `json:"fields"`
	Conflicts int    `json:"conflicts"`
}

// ConflictsListRequest is `conflicts list [SPACE]`; an empty Space means all.
type ConflictsListRequest struct {
	Space string `json:"space,omitempty"`
}

// Conflict is one row of `conflicts list`.
type Conflict struct {
	Space    string    `json:"space"`
	Record   string    `json:"record"`
	Field    string    `json:"field"`
	Siblings []Sibling `json:"siblings"`
}

// ConflictField is one conflicted field of `conflicts show`.
type ConflictField struct {
	Field    string    `json:"field"`
	Siblings []Sibling `json:"siblings"`
}

// ConflictsShow is `conflicts show SPACE RECORD`.
type ConflictsShow struct {
	Space  string          `json:"space"`
	Record string          `json:"record"`
	Fields []ConflictField `json:"fields"`
	// Resolved lists the fields whose current value came from `resolve`:
	// who resolved which siblings, from which bureau, and why.
	Resolved []ResolvedField `json:"resolved"`
}

// Resolution says that a value was written by `resolve`: which siblings it
// replaced and the reason given. With the sibling's author, officer and
// bureau, it makes a resolution accountable across bureaus.
type Resolution struct {
	Resolves []string `json:"resolves"`         // the dots of the siblings it replaced
	Reason   string   `json:"reason,omitempty"` // as given to `resolve --reason`
}

// ResolvedField is a field whose current value came from a resolution.
type ResolvedField struct {
	Field    string    `json:"field"`
	Siblings []Sibling `json:"siblings"` // the live values written by resolutions
}

// ResolveRequest resolves exactly the sibling dots named (the CLI names the
// ones `conflicts show` printed, so a sibling that arrived later stays a
// conflict). Exactly one of Value / ValueBase64 is the resolved value.
type ResolveRequest struct {
	Space       string   `json:"space"`
	Record      string   `json:"record"`
	Field       string   `json:"field"`
	Dots        []string `json:"dots"`
	Value       string   `json:"value,omitempty"`
	ValueBase64 string   `json:"value_base64,omitempty"`
	Reason      string   `json:"reason,omitempty"`
}

// HistoryOp is one operation of a change, as `history` shows it.
type HistoryOp struct {
	Kind        string   `json:"kind"` // put, set_add, set_remove, note_add, note_remove, delete, resolve
	Record      string   `json:"record"`
	Field       string   `json:"field,omitempty"`
	Value       string   `json:"value,omitempty"`
	ValueBase64 string   `json:"value_base64,omitempty"` // set instead of value when it is not UTF-8
	Resolves    []string `json:"resolves,omitempty"`     // dots a resolve (or overwrite) replaced
	Reason      string   `json:"reason,omitempty"`
	// Pruned is set when this device holds the op without its value (and
	// reason): it was superseded and pruned (docs/design.md §7, "Bounded
	// storage"), or withheld by whoever sent the envelope. Value is then
	// empty and means nothing.
	Pruned bool `json:"pruned,omitempty"`
	// Dot is the op's dot (author:seq.op): its position among all the
	// ops of its change, not among those of this record that history lists.
	Dot string `json:"dot,omitempty"`
}

// HistoryEntry is one change of `history` (docs/design.md §8).
type HistoryEntry struct {
	Author    string `json:"author"`
	Officer   string `json:"officer"`
	Bureau    string `json:"bureau,omitempty"`
	Seq       uint64 `json:"seq"`
	HLC       string `json:"hlc"`
	Time      string `json:"time"`      // the HLC's wall time, RFC 3339
	Signature string `json:"signature"` // "valid" or "invalid" (re-verified on every call)
	Error     string `json:"error,omitempty"`
	Skewed    bool   `json:"skewed,omitempty"` // never set in JSON (skew is each device's own observation: status.skewed_authors); the CLI marks it in tables
	// Outcome is what the apply path did with the change (OutcomeApplied,
	// OutcomeNoop, OutcomeWaiting), or OutcomeErased for a record erasure;
	// Ops is empty unless it was applied.
	Outcome string      `json:"outcome,omitempty"`
	Ops     []HistoryOp `json:"ops"`
	// Receipts are the valid delivery receipts of this change: which
	// devices of other bureaus opened it, and when (receipts.go).
	Receipts []HistoryReceipt `json:"receipts,omitempty"`
}

// Outcomes of a change in history (docs/crdt.md, "Causal dependencies").
const (
	OutcomeApplied = "applied"
	OutcomeNoop    = "no-op"   // kept, changes nothing: it named dots outside its causal context
	OutcomeWaiting = "waiting" // held, not applied yet: a change it depends on is not
	// OutcomeErased is a record-erase marker that cut this record's
	// segments here (docs/design.md §6): Author signed it, Time is when;
	// Seq is 0 and Ops empty.
	OutcomeErased = "erased"
)

// DeviceInfo is the `device` object of `status`.
type DeviceInfo struct {
	ID             string `json:"id"`
	Bureau         string `json:"bureau"`
	Role           string `json:"role"`
	CertValidUntil string `json:"cert_valid_until"`
	CertWarning    string `json:"cert_warning,omitempty"`
}

// PeerInfo is one peer of `peers` and of `status`.
type PeerInfo struct {
	ID          string `json:"id"`
	Address     string `json:"address"`
	Role        string `json:"role"`
	Bureau      string `json:"bureau,omitempty"`
	State       string `json:"state"`        // alive, suspect, dead, left, unknown
	LastContact string `json:"last_contact"` // RFC 3339, or "" if never
	PendingOut  int    `json:"pending_out"`  // envelopes we hold that it lacks, as of the last round
	PendingIn   int    `json:"pending_in"`   // envelopes it holds that we lack
}

// Skew is one author flagged for a clock beyond the drift limit.
type Skew struct {
	Author      string `json:"author"`
	DriftMillis int64  `json:"drift_ms"`
}

// Gap is a withheld or missing range of an author's log in a space.
type Gap struct {
	Space  string `json:"space"`
	Author string `json:"author"`
	From   uint64 `json:"from"`
	To     uint64 `json:"to"`
}

// Fork is evidence of two different envelopes for one (space, author, seq).
type Fork struct {
	Space  string `json:"space"`
	Author string `json:"author"`
	Seq    uint64 `json:"seq"`
}

// Status is `status` (docs/design.md §8).
type Status struct {
	Device        DeviceInfo     `json:"device"`
	Peers         []PeerInfo     `json:"peers"`
	UnsyncedLocal int            `json:"unsynced_local"`
	Rejected      map[string]int `json:"rejected"`
	SkewedAuthors []Skew         `json:"skewed_authors"`
	Gaps          []Gap          `json:"gaps"`
	Forks         []Fork         `json:"forks"`
	Missing       []Gap          `json:"missing"`        // acknowledged local envelopes found absent at open
	CorruptValues int            `json:"corrupt_values"` // stored values that failed authentication since start
	// Unreadable lists the spaces with envelopes held that cannot be
	// opened yet (no key for their epoch), with their authors.
	Unreadable []UnreadableSpace `json:"unreadable"`
	Sync       *SyncStats        `json:"sync,omitempty"` // nil while sync is not running
	Version    string            `json:"version"`
	// CertConflicts lists certificates that claim a device pinned to
	// another bureau (or to other keys), kept as evidence and never used.
	CertConflicts []CertConflict `json:"cert_conflicts"`
	// Attachments: chunks held, wanted and moved (agent/attach.go).
	Attachments *AttachStatus `json:"attachments,omitempty"`
	// PartialEnvelopes: prefixes of large envelopes held from cut rounds,
	// and resumed transfers (agent/partial.go, docs/sync.md "Resumable
	// envelopes").
	PartialEnvelopes *PartialStatus `json:"partial_envelopes,omitempty"`
	// Store: the group committer's counts since start (docs/design.md §7,
	// "Group commit"): benchmarks read writes per fsync from it.
	Store *StoreStats `json:"store,omitempty"`
	// Healed counts the values segments of live writes, held here from a
	// stub (value_withheld), put back from a whole copy that came later,
	// since the agent started (docs/design.md §7, "Hostile stubs").
	Healed int64 `json:"healed"`
	// Retention: the erasure of records past their space's erase-after
	// period on this device (agent/autoerase.go); nil on a relay.
	Retention *RetentionStatus `json:"retention,omitempty"`
}

// RetentionStatus is status.retention: what the passes that erase records
// past their erase-after period did since the agent started.
type RetentionStatus struct {
	AutoErase bool   `json:"auto_erase"`          // false with agent --no-auto-erase
	LastPass  string `json:"last_pass,omitempty"` // RFC 3339, UTC; "" before the first
	Erased    int    `json:"erased"`              // records lapsed and erased, in all passes
	Failed    int    `json:"failed"`              // erasures that failed, in all passes
	// Held are the records the last pass found due by this device's
	// clock but not by the newest write of another device: this clock
	// may run ahead (docs/design.md §2, "Retention").
	Held int `json:"held"`
	// Foreign are the records the last pass found due but left to a
	// person: a device that may not erase wrote one of their live values
	// or notes, and its HLC is its own word (`review lapse --erase`).
	Foreign int `json:"held_foreign"`
}

// StoreStats is status.store: the fsynced transactions the agent's group
// committer made since start, and the atomic groups they carried (a local
// change with its record states and head, a batch of received envelopes…).
type StoreStats struct {
	Commits uint64 `json:"commits"` // fsynced transactions
	Groups  uint64 `json:"groups"`  // atomic groups acknowledged durable
}

// PartialStatus is status.partial_envelopes: large envelopes received in
// part (kept on disk until the rest arrives) and transfers resumed since the
// agent started.
type PartialStatus struct {
	Held         int    `json:"held"`          // partial envelopes held
	HeldBytes    uint64 `json:"held_bytes"`    // their bytes held
	Resumed      uint64 `json:"resumed"`       // envelopes sent from a peer's held prefix
	BytesSkipped uint64 `json:"bytes_skipped"` // the offsets those sends started at, summed
	ResumedIn    uint64 `json:"resumed_in"`    // envelopes received from our held prefix
	Completed    uint64 `json:"completed"`     // large envelopes completed from pieces held on disk
	Bad          uint64 `json:"bad"`           // envelopes whose bytes did not match their announced hash: dropped, fetched again
}

// CertConflict is a certificate that contradicts a device's pinned one
// (docs/crypto.md, "Pinning and scoped trust").
type CertConflict struct {
	Device            string `json:"device"`
	PinnedBureau      string `json:"pinned_bureau"`
	PinnedFingerprint string `json:"pinned_fingerprint"`
	OtherBureau       string `json:"other_bureau"`
	OtherFingerprint  string `json:"other_fingerprint"`
}

// SyncStats are the sync engine's counters since the agent started.
type SyncStats struct {
	Addr           string `json:"addr"`            // the address memberlist and sync listen on
	Rounds         uint64 `json:"rounds"`          // completed anti-entropy rounds
	RoundErrors    uint64 `json:"round_errors"`    // failed or cut rounds
	EnvelopesSent  uint64 `json:"envelopes_sent"`  // envelopes sent to peers
	EnvelopesAdded uint64 `json:"envelopes_added"` // envelopes received and stored
	Duplicates     uint64 `json:"duplicates"`      // envelopes received that were already held
	BytesIn        uint64 `json:"bytes_in"`        // sync stream bytes received on the socket
	BytesOut       uint64 `json:"bytes_out"`       // sync stream bytes sent on the socket
	GossipBytesIn  uint64 `json:"gossip_bytes_in"`
	GossipBytesOut uint64 `json:"gossip_bytes_out"`
	AuthFailures   uint64 `json:"auth_failures"`
	BroadcastQueue int    `json:"broadcast_queue"`
	// Mode is "member" (memberlist, reachable) or "client" (outbound
	// watch streams only; docs/sync.md "Client mode").
	Mode string `json:"mode"`
	// Upstreams are a client's watch streams, one per upstream address.
	Upstreams []Upstream `json:"upstreams,omitempty"`
	// Watchers counts the clients watching this node now; NudgesSent the
	// nudges sent to them.
	Watchers   int    `json:"watchers"`
	NudgesSent uint64 `json:"nudges_sent"`
	// What the byte budgets (agent --budget-session, --budget-day) hold
	// back: envelopes and bytes the last round did not send, since when
	// rounds have been holding something back (RFC 3339, "" when nothing
	// is held), and today's (UTC) sync bytes on the wire.
	HeldBackEnvelopes uint64 `json:"held_back_envelopes"`
	HeldBackBytes     uint64 `json:"held_back_bytes"`
	HeldBackSince     string `json:"held_back_since,omitempty"`
	BudgetDayBytes    uint64 `json:"budget_day_bytes"`
}

// Upstream is a client's view of one upstream (status.sync.upstreams).
type Upstream struct {
	Addr    string `json:"addr"`
	Peer    string `json:"peer,omitempty"` // the device that answered there last
	State   string `json:"state"`          // connecting, syncing, watching, backoff, polling
	Since   string `json:"since"`          // RFC 3339, when it entered State
	LastErr string `json:"last_error,omitempty"`
	Streams uint64 `json:"streams"` // streams opened (more when the link or address changed)
	Nudges  uint64 `json:"nudges"`  // rounds the upstream asked for
}
