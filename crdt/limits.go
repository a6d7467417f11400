package crdt

// Limits enforced by the builders, ApplyChange and every decoder.
const (
	// MaxValueBytes bounds a register value, set element or note text.
	MaxValueBytes = 24 << 20
	// MaxChangeBytes bounds an encoded change.
	MaxChangeBytes = 32 << 20
	// MaxNameBytes bounds a record ID, field name or resolve reason.
	MaxNameBytes = 4 << 10
	// MaxStateBytes bounds the decompressed encoding of a whole space.
	MaxStateBytes = 1 << 30
	// MaxRecordBytes bounds an encoded record.
	MaxRecordBytes = 256 << 20
)
