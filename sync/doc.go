// Package sync makes fieldsync agents converge: peer authentication,
// anti-entropy over version-vector digests, hints over memberlist's broadcast
// queue, and relays that store and forward envelopes they cannot read.
//
// It sees envelopes as opaque signed blobs with clear headers and checks them
// through interfaces that package agent supplies; it never holds space keys.
package sync
