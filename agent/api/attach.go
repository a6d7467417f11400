package api

import "context"

// The attachment API (docs/api.md, "Attachments"): files attached to a
// record field as content-addressed, encrypted chunks. The agent reads and
// writes the files itself (the CLI passes absolute paths over the
// owner-only socket, as for bundles).
const (
	PathRecordAttach = "/v1/record/attach" // POST AttachRequest -> AttachResult
	PathRecordOpen   = "/v1/record/open"   // POST OpenRequest -> OpenResult
)

// AttachRequest is `record attach SPACE RECORD FIELD @file`.
type AttachRequest struct {
	Space  string `json:"space"`
	Record string `json:"record"`
	Field  string `json:"field"`
	Path   string `json:"path"`           // absolute path of the file to attach
	Name   string `json:"name,omitempty"` // name to record (default: the file's base name)
	Mime   string `json:"mime,omitempty"` // media type, if known
}

// AttachResult is the record after the write and what the file cost.
type AttachResult struct {
	Record      Record     `json:"record"`
	Attachment  Attachment `json:"attachment"`
	NewChunks   int        `json:"new_chunks"`    // chunks stored by this attach
	NewBytes    int64      `json:"new_bytes"`     // their sealed bytes
	ReusedChunk int        `json:"reused_chunks"` // chunks already held (same content in this space)
}

// Attachment describes one attached file (a field's value is its manifest).
type Attachment struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // of the whole file, hex
	Mime   string `json:"mime,omitempty"`
	Chunks int    `json:"chunks"`
	Held   int    `json:"held"`  // chunks held on this device
	State  string `json:"state"` // "yes", "partial" or "no"
}

// OpenRequest is `record open SPACE RECORD FIELD [-o path] [--wait D]`.
type OpenRequest struct {
	Space  string `json:"space"`
	Record string `json:"record"`
	Field  string `json:"field"`
	Out    string `json:"out"`               // absolute path of the file to write
	WaitMS int64  `json:"wait_ms,omitempty"` // how long to wait for missing chunks (0: do not wait)
}

// OpenResult describes the file written.
type OpenResult struct {
	Out        string     `json:"out"`
	Attachment Attachment `json:"attachment"`
}

// RecordAttach is `fieldsync record attach`.
func (c *Client) RecordAttach(ctx context.Context, req AttachRequest) (AttachResult, error) {
	return call[AttachResult](ctx, c, PathRecordAttach, req)
}

// RecordOpen is `fieldsync record open`.
func (c *Client) RecordOpen(ctx context.Context, req OpenRequest) (OpenResult, error) {
	return call[OpenResult](ctx, c, PathRecordOpen, req)
}

// PathAttachStatus is GET -> AttachStatus (also in Status.Attachments).
const PathAttachStatus = "/v1/attachments"

// AttachStatus is this device's attachment chunks.
type AttachStatus struct {
	Mode   string `json:"mode"`   // "all" or "on-demand"
	Chunks int    `json:"chunks"` // chunks held, every space
	Wanted int    `json:"wanted"` // chunks `record open` asked for and not held yet
	// Moved by sync since the agent started (sync.Stats.Chunks).
	SentChunks     uint64 `json:"sent_chunks"`
	SentBytes      uint64 `json:"sent_bytes"`
	ReceivedChunks uint64 `json:"received_chunks"`
	ReceivedBytes  uint64 `json:"received_bytes"`
	Rejected       uint64 `json:"rejected"`  // chunks refused: bytes not matching their ref
	HeldBack       uint64 `json:"held_back"` // chunks the last round held back for the budget
	// Collected counts the chunks of superseded attachments deleted since
	// the agent started (compaction; docs/design.md §7, "Bounded storage").
	Collected uint64 `json:"collected"`
}

// AttachStatus is GET PathAttachStatus.
func (c *Client) AttachStatus(ctx context.Context) (AttachStatus, error) {
	return call[AttachStatus](ctx, c, PathAttachStatus, nil)
}
