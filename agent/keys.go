package agent

import (
	"encoding/base32"
	"encoding/binary"

	"fieldsync/crypto"
)

// Store key spaces (docs/storage.md). Every key starts with one prefix byte;
// IDs are their raw 16 bytes; seqs are big-endian so keys sort by seq. Every
// value under every key is sealed with the local value key, the key itself
// being the additional data, so a value cannot be moved to another key.
const (
	pfxMeta     = 'M' // M name                     -> meta values (format version, HLC)
	pfxEnvelope = 'E' // E space author seq(8)      -> envelope
	pfxRecord   = 'R' // R space recordID           -> crdt.Record (encoded)
	pfxContext  = 'X' // X space                    -> crdt.Context (encoded)
	pfxHead     = 'H' // H space author             -> head: contiguous seq held + hash of that envelope
	pfxSpace    = 'S' // S space                    -> spaceMeta (JSON)
	pfxEpoch    = 'K' // K space keyID              -> epoch key bytes
	pfxProfile  = 'P' // P space author             -> officer name
	pfxCert     = 'C' // C device                   -> certificate (binary)
	pfxRevoke   = 'V' // V device                   -> revocation (binary)
	pfxPeer     = 'N' // N device                   -> peerRecord (JSON)
	pfxFork     = 'F' // F space author seq(8)      -> the second envelope of a fork (evidence)
	pfxShared   = 'W' // W space recipient keyID    -> empty: an epoch key already wrapped to that device
	pfxPending  = 'Q' // Q space author seq(8)      -> empty: an envelope stored but not yet applied (no key yet)
	pfxChunk    = 'B' // B space ref(32)            -> a sealed attachment chunk (attach.go)
)

// Storage formats (docs/storage.md, "Format"). An agent refuses to open a
// store of a format it does not know, so a build that would misread a
// store never opens it.
const (
	// storageFormatWhole: every envelope is stored as signed. New stores,
	// restored stores and backups (which hold envelopes thawed) are of it.
	storageFormatWhole = 1
	// storageFormatCold: the store may hold cold envelopes (cold.go), which
	// a build of format 1 would count corrupt. The first freeze raises the
	// store to it, in the same commit as the cold value.
	storageFormatCold = 2
	// storageFormat is the newest format this build reads and writes.
	storageFormat = storageFormatCold
)

func metaKey(name string) []byte { return append([]byte{pfxMeta}, name...) }

func envKey(space crypto.SpaceID, author crypto.DeviceID, seq uint64) []byte {
	k := make([]byte, 0, 1+16+16+8)
	k = append(k, pfxEnvelope)
	k = append(k, space[:]...)
	k = append(k, author[:]...)
	return binary.BigEndian.AppendUint64(k, seq)
}

func envSpacePrefix(space crypto.SpaceID) []byte { return append([]byte{pfxEnvelope}, space[:]...) }

func envAuthorPrefix(space crypto.SpaceID, author crypto.DeviceID) []byte {
	return append(envSpacePrefix(space), author[:]...)
}

// parseEnvKey splits an envelope key; ok is false for a key of another shape.
func parseEnvKey(k []byte) (space crypto.SpaceID, author crypto.DeviceID, seq uint64, ok bool) {
	if len(k) != 1+16+16+8 || k[0] != pfxEnvelope {
		return space, author, 0, false
	}
	copy(space[:], k[1:17])
	copy(author[:], k[17:33])
	return space, author, binary.BigEndian.Uint64(k[33:]), true
}

func recKey(space crypto.SpaceID, record string) []byte {
	k := make([]byte, 0, 1+16+len(record))
	k = append(k, pfxRecord)
	k = append(k, space[:]...)
	return append(k, record...)
}

func recSpacePrefix(space crypto.SpaceID) []byte { return append([]byte{pfxRecord}, space[:]...) }

func ctxKey(space crypto.SpaceID) []byte   { return append([]byte{pfxContext}, space[:]...) }
func spaceKey(space crypto.SpaceID) []byte { return append([]byte{pfxSpace}, space[:]...) }

func headKey(space crypto.SpaceID, author crypto.DeviceID) []byte {
	return append(append([]byte{pfxHead}, space[:]...), author[:]...)
}

func epochKey(space crypto.SpaceID, id crypto.KeyID) []byte {
	return append(append([]byte{pfxEpoch}, space[:]...), id[:]...)
}

func profileKey(space crypto.SpaceID, author crypto.DeviceID) []byte {
	return append(append([]byte{pfxProfile}, space[:]...), author[:]...)
}

func certKey(dev crypto.DeviceID) []byte   { return append([]byte{pfxCert}, dev[:]...) }
func revokeKey(dev crypto.DeviceID) []byte { return append([]byte{pfxRevoke}, dev[:]...) }
func peerKey(dev crypto.DeviceID) []byte   { return append([]byte{pfxPeer}, dev[:]...) }

func forkKey(space crypto.SpaceID, author crypto.DeviceID, seq uint64) []byte {
	k := append(append([]byte{pfxFork}, space[:]...), author[:]...)
	return binary.BigEndian.AppendUint64(k, seq)
}

func beUint64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

func b32(b []byte) string { return base32.StdEncoding.EncodeToString(b) }

func pendingKey(space crypto.SpaceID, author crypto.DeviceID, seq uint64) []byte {
	k := append(append([]byte{pfxPending}, space[:]...), author[:]...)
	return binary.BigEndian.AppendUint64(k, seq)
}
