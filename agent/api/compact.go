package api

import "context"

// PathCompact prunes superseded values (docs/api.md, "Compaction";
// docs/design.md §7, "Bounded storage").
const PathCompact = "/v1/compact" // POST CompactRequest -> Compacted

// CompactRequest names the space to compact ("" for every space) and, if
// set, the minimum age of a change whose values may be pruned, by its HLC
// (nil: the agent's default, 24 hours unless configured).
type CompactRequest struct {
	Space         string `json:"space,omitempty"`
	MinAgeSeconds *int64 `json:"min_age_seconds,omitempty"`
	// NoCold keeps the envelopes this call cuts whole, as received,
	// rather than in cold form (docs/storage.md, "Cold envelopes"): to
	// measure what the cold form saves. Background passes still freeze.
	NoCold bool `json:"no_cold,omitempty"`
}

// Compacted is what one compaction did.
type Compacted struct {
	Spaces []CompactedSpace `json:"spaces"`
	// Reclaimed is set once the store's files were rewritten to drop the
	// old versions of the envelopes cut (and the value log collected).
	Reclaimed bool `json:"reclaimed"`
}

// CompactedSpace is one space's part of a compaction.
type CompactedSpace struct {
	Space string `json:"space"`
	// Envelopes cut, and values segments cut in them (one per record of
	// a change whose every value is superseded or removed).
	Envelopes int `json:"envelopes"`
	Values    int `json:"values"`
	// Bytes of the space's envelopes as stored before and after (a cold
	// envelope at its cold size, before the store's own sealing).
	BytesBefore int64 `json:"bytes_before"`
	BytesAfter  int64 `json:"bytes_after"`
	// Withheld counts the values applied here without their bytes (their
	// values segment cut or malformed) that are still live: stubs of live
	// writes, shown as value_withheld (docs/design.md §7).
	Withheld int `json:"withheld"`
	// Frozen counts the envelopes with cut segments now stored in cold
	// form (docs/storage.md, "Cold envelopes"): those cut by this pass and
	// those cut before.
	Frozen int `json:"frozen"`
	// ChunksCollected counts the attachment chunks deleted because no
	// manifest a record holds, nor one younger than the minimum age, names
	// them any more (superseded attachments), and ChunkBytesCollected
	// their sealed bytes (docs/design.md §7, "Bounded storage").
	ChunksCollected     int   `json:"chunks_collected"`
	ChunkBytesCollected int64 `json:"chunk_bytes_collected"`
}

// Compact is `fieldsync compact`.
func (c *Client) Compact(ctx context.Context, req CompactRequest) (Compacted, error) {
	return call[Compacted](ctx, c, PathCompact, req)
}
