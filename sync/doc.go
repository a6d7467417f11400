// Package sync makes fieldsync agents converge: memberlist membership and
// hints, peer authentication bound to each stream, and anti-entropy over
// per-space version vectors. Relays run the same engine without space keys:
// they verify, store and forward envelopes they cannot read.
//
// sync sees envelopes as opaque signed blobs named by (space, author, seq).
// Everything that needs keys or storage is behind two interfaces that package
// agent supplies: Store (the envelope log, with verification inside Ingest,
// and the remembered peers) and Authenticator (device identity, challenge
// signatures, peer certificates, entitlement by routing record, mesh-wide
// certificates and revocations). sync imports neither crypto nor agent.
//
// # Running an engine
//
//	e, err := sync.New(sync.Config{
//		Store:     store,            // agent's Badger-backed sync.Store
//		Auth:      auth,             // agent's sync.Authenticator
//		Profile:   sync.ProfileWAN,  // one per mesh
//		BindAddr:  "127.0.0.1:7946", // always explicit
//		Join:      []string{"10.0.0.2:7946"},
//		MeshKeys:  [][]byte{meshKey},
//		Logger:    logger,
//	})
//	if err != nil { ... }
//	if err := e.Start(ctx); err != nil { ... }
//	defer e.Close()
//	// after each durable local write:
//	e.Notify()
//	// status:
//	e.Peers(); e.Stats()
//
// # Transport
//
// One port carries memberlist and sync. The engine wraps memberlist's
// NetTransport in its own NodeAwareTransport: an inbound TCP stream whose
// first byte is 0x16 (a TLS handshake record) is a sync stream; anything
// else (memberlist's message types 0–13, its label marker 244) goes to
// memberlist. The peek runs in a goroutine per connection with a deadline
// (PeekTimeout), so a slow client cannot stall memberlist. Outbound sync
// streams dial the peer's memberlist address. memberlist's SendReliable is
// not used for data: it opens a connection per message and has a hidden
// ~20 MiB cap.
//
// A sync stream is TLS 1.3 (X25519) with self-signed x509 certificates over
// each device's Ed25519 key (SelfSignedTLS), then the fieldsync challenge:
//
//	HELLO   both ways: protocol version, own ID, the ID expected, 32-byte
//	        nonce, own advertised address
//	AUTH    both ways: device certificate blob, signature over the Transcript
//	        (label, TLS exporter "EXPORTER-fieldsync-sync-v1" of this stream,
//	        both IDs, both nonces, side), HMAC proof of a mesh key
//	MESH    digests of the mesh-wide objects; if they differ, all objects
//	SUMMARY per-space version vectors of the spaces the other may receive
//	ENV     the envelopes the other lacks, in (space, author, seq) order,
//	        in frames of at most 1 MiB (ENVCONT continues an envelope), DONE
//
// Nothing of a space is sent before the peer's certificate and signature
// verify, and a space's vector and envelopes go only to peers Entitled to it.
// A round between peers in step costs bytes proportional to authors (40
// bytes per author and space), not to records. The wire format is in
// docs/sync.md.
//
// Sync streams are encrypted by TLS, not by memberlist's keyring; the mesh
// key still keeps strangers out of them (the HMAC proof), and a round ends
// only when both sides have ingested what they received.
//
// # Hints and anti-entropy
//
// Notify queues a 42-byte hint ("node X has new changes", a counter, and a
// holder: X) in memberlist's TransmitLimitedQueue. A receiver that has not
// seen it pulls from the holder and, once that round completes, re-queues
// it naming itself as the holder (one per origin, at most MaxHintOrigins
// remembered): a write fans out instead of every node pulling from X
// (docs/sync.md "Fan-out"). Correctness never depends on hints: rounds
// also run when a peer joins or comes back (from a small budget), and with a
// random peer on a jittered interval.
// Remembered peers are re-joined on start and with backoff while offline.
//
// # Design note
//
// STYLE.md suggests a raft-like Step/Tick/Outbox engine. The anti-entropy
// round here is a pair of full-duplex stream phases driven by goroutines
// over a net.Conn instead: flow control comes from TCP, and a round reads the
// store lazily (Since) instead of materialising messages. The protocol
// logic stays in session.go and wire.go; memberlist is confined to
// engine.go (delegates) and transport.go.
package sync
