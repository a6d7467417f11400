package sync

import "time"

// Named limits of the sync protocol. Decoders enforce every one of them on
// input from the network; exceeding one is a protocol error that ends the
// stream (or, for gossip, drops and counts the message).
const (
	// MaxFrame is the largest frame payload on a sync stream (docs/design.md §6).
	MaxFrame = 1 << 20

	// MaxEnvelope is the largest envelope, reassembled across frames: a
	// change is at most 32 MiB, plus header and signature (crypto.MaxEnvelopeSize).
	MaxEnvelope = 33 << 20

	// MaxSpacesPerDigest bounds the spaces one side may list in a round.
	MaxSpacesPerDigest = 100_000

	// MaxAuthorsPerSpace bounds the authors of one space's version vector.
	MaxAuthorsPerSpace = 100_000

	// MaxSummaryEntries bounds the (space, author) entries one side may
	// send in a round's summary (40 bytes each: 40 MB at most).
	MaxSummaryEntries = 1_000_000

	// MaxCertBlob bounds a peer's device certificate blob in the challenge.
	MaxCertBlob = 64 << 10

	// MaxMeshObject bounds one mesh-wide object (certificate, revocation).
	MaxMeshObject = 1 << 20

	// MaxMeshObjects bounds how many mesh-wide objects one side may send in a round.
	MaxMeshObjects = 1_000_000

	// MaxHint is the largest gossip message we send or accept. memberlist
	// silently never sends a broadcast larger than ~1,350 bytes with the
	// keyring on (docs/design.md §6); ours are 42 bytes (26 in version 1).
	MaxHint = 1350

	// MaxHintOrigins bounds the hint origins remembered for deduplication
	// (and so the hints re-queued).
	MaxHintOrigins = 4096

	// MaxInboundSessions is the default bound of concurrent authenticated
	// inbound sync sessions (Limits.InboundSessions); more wait up to
	// InboundQueueWait for a slot, then are refused.
	MaxInboundSessions = 32

	// InboundQueueWait bounds how long an inbound stream waits for a slot.
	InboundQueueWait = 5 * time.Second

	// MaxPendingPeeks is the default bound of inbound streams waiting for
	// their first byte (Limits.PendingPeeks); more are closed at once.
	MaxPendingPeeks = 256

	// MaxOutboundRounds bounds concurrent anti-entropy rounds this node starts.
	MaxOutboundRounds = 4

	// MaxSignature bounds a challenge signature.
	MaxSignature = 1024

	// HandshakeTimeout bounds TLS handshake plus challenge exchange.
	HandshakeTimeout = 10 * time.Second

	// StreamIdleTimeout bounds the wait for the next frame on a sync stream.
	StreamIdleTimeout = 30 * time.Second

	// PeekTimeout is the default bound of the wait for an inbound stream's
	// first byte before it is classified as memberlist's or ours
	// (Limits.PeekTimeout; a slow client cannot stall memberlist: the peek
	// runs in its own goroutine). Both memberlist and TLS clients send
	// their first byte at once.
	PeekTimeout = 3 * time.Second
)

// IngestBatch is the most envelopes the engine hands a BatchIngester at once
// (also bounded by MaxFrame bytes).
const IngestBatch = 64
