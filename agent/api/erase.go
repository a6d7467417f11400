package api

import "context"

// Space erasure (docs/api.md, "Erasing a space"): an officer device of the
// owning bureau erases a space everywhere it reaches; every replica and
// relay keeps a tombstone and refuses the space's envelopes from then on.
const (
	PathSpaceErase  = "/v1/space/erase"  // POST SpaceEraseRequest -> Erased
	PathSpaceErased = "/v1/space/erased" // GET  -> []Erased
)

// SpaceEraseRequest names the space to erase and why. The reason stays on
// this device (sealed in its store with the tombstone): the marker that
// travels carries no case data.
type SpaceEraseRequest struct {
	Space  string `json:"space"`
	Reason string `json:"reason"`
}

// Erased is one tombstone: the space erased, its owning bureau's
// fingerprint, the device that erased it and when (the marker's signed
// time), and the reason where this device erased it itself.
type Erased struct {
	Space    string `json:"space"`
	Owner    string `json:"owner"`
	Author   string `json:"author"`
	ErasedAt string `json:"erased_at"` // RFC 3339
	Reason   string `json:"reason,omitempty"`
	// Purged: none of the space's keys remain in the store (they are
	// dropped from Badger's tables, not only marked deleted).
	Purged bool `json:"purged"`
}

// SpaceErase is `fieldsync space erase`.
func (c *Client) SpaceErase(ctx context.Context, req SpaceEraseRequest) (Erased, error) {
	return call[Erased](ctx, c, PathSpaceErase, req)
}

// SpaceErased is `fieldsync space list --erased`.
func (c *Client) SpaceErased(ctx context.Context) ([]Erased, error) {
	return call[[]Erased](ctx, c, PathSpaceErased, nil)
}

// PathRecordErase erases one record (docs/api.md, "Record erasure").
const PathRecordErase = "/v1/record/erase" // POST RecordEraseRequest -> RecordErased

// RecordEraseRequest names the record to erase and why. The reason and the
// record ID stay on this device: the marker that travels names the record by
// a keyed hash only.
type RecordEraseRequest struct {
	Space  string `json:"space"`
	Record string `json:"record"`
	Reason string `json:"reason"`
}

// RecordErased is the outcome of a record erasure on the device that made
// it: the marker's tag (hex of the keyed hash), the segments it names and
// the envelopes they were cut from here.
type RecordErased struct {
	Space     string `json:"space"`
	Record    string `json:"record"`
	Tag       string `json:"tag"`
	Author    string `json:"author"`
	ErasedAt  string `json:"erased_at"` // RFC 3339
	Segments  int    `json:"segments"`
	Envelopes int    `json:"envelopes"`
	Chunks    int    `json:"chunks"` // attachment chunks only this record named, dropped
	Reason    string `json:"reason"`
}

// RecordErase is `fieldsync record erase`.
func (c *Client) RecordErase(ctx context.Context, req RecordEraseRequest) (RecordErased, error) {
	return call[RecordErased](ctx, c, PathRecordErase, req)
}
