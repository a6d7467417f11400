package crypto

import (
	"bytes"
	"crypto/subtle"
	"fieldsync/crypto/internal/format"
	"fmt"
	"io"
	"slices"
	"strings"
)

// MaxOfficerName bounds an officer's name, in bytes of UTF-8.
const MaxOfficerName = 1024

const profileVersion = 1

// Profile is the plaintext of a KindProfile body: the officer's name and the
// salt that opens the name commitment in the device's certificate. Seal
// encrypts it under the epoch key: the name is case data.
//
// Layout: version (1) | name salt (32) | name length (u16) | name (UTF-8).
type Profile struct {
	Officer  string
	NameSalt [32]byte
}

// Marshal encodes p. It does not check the name's length: ParseProfile does.
func (p Profile) Marshal() []byte {
	b := make([]byte, 0, 1+32+2+len(p.Officer))
	b = append(b, profileVersion)
	b = append(b, p.NameSalt[:]...)
	return format.AppendStr16(b, p.Officer)
}

// ParseProfile decodes a profile plaintext.
func ParseProfile(b []byte) (Profile, error) {
	var p Profile
	r := format.NewReader(b, "profile")
	if v := r.U8(); r.Err() == nil && v != profileVersion {
		return p, malformed("profile", ErrUnknownVersion, fmt.Sprintf("version %d", v))
	}
	r.CopyTo(p.NameSalt[:])
	p.Officer = r.Str(true, MaxOfficerName)
	if err := r.Done(); err != nil {
		return Profile{}, err
	}
	return p, nil
}

// Matches reports whether p opens the name commitment of cert.
func (p Profile) Matches(cert *Certificate) bool {
	if cert == nil {
		return false
	}
	c := NameCommitment(p.Officer, p.NameSalt)
	return subtle.ConstantTimeCompare(c[:], cert.NameCommitment[:]) == 1
}

// Routing record versions: 1 (superseded, parsed but refused by
// CheckRouting: it does not bind the space ID to its owner) and 2, which
// adds the space ID's nonce and Supersedes. Marshal writes 2.
const (
	routingVersion1 = 1
	routingVersion2 = 2
)

// MaxSupersedes bounds Routing.Supersedes.
const MaxSupersedes = 255

// RoutingRef names one routing record by its place in its author's log.
type RoutingRef struct {
	Author DeviceID
	Seq    uint64
}

// MaxReleased bounds the release list of a routing record.
const MaxReleased = 255

// MaxSealedName bounds Routing.SealedName.
const MaxSealedName = 4096

// Routing is the clear body of a KindRouting envelope: the one piece of space
// metadata relays and peers read, to enforce entitlement. It is signed (as the
// envelope) by a device of the owning bureau (see CheckRouting).
//
// Layout: version (1 or 2) | space (16) | owner (u8 length + fingerprint) |
// count (u8) | count × (u8 length + fingerprint), sorted, unique, owner
// included | sealed name (u16 length + bytes) | version 2 only: nonce (16) |
// count (u8) | count × (author (16) | seq (u64)), sorted by author then seq,
// unique.
//
// A space's release list is a small CRDT over its routing records
// (docs/crdt.md, "Release lists"): each record states the whole list as its
// writer means it, and names in Supersedes the records it replaces (the
// heads its writer saw); an author's later record also replaces its earlier
// ones.
type Routing struct {
	Space      SpaceID
	Owner      string       // owning bureau fingerprint
	Released   []string     // released bureau fingerprints, sorted, owner included
	SealedName []byte       // the space name, sealed with SealName
	Nonce      [16]byte     // Space == SpaceIDFor(Owner, Nonce)
	Supersedes []RoutingRef // routing records this one replaces
}

func compareRef(a, b RoutingRef) int {
	if c := bytes.Compare(a.Author[:], b.Author[:]); c != 0 {
		return c
	}
	switch {
	case a.Seq < b.Seq:
		return -1
	case a.Seq > b.Seq:
		return 1
	}
	return 0
}

// canonicalReleased returns Released sorted, deduplicated, with Owner.
func (r Routing) canonicalReleased() []string {
	l := append(slices.Clone(r.Released), r.Owner)
	slices.Sort(l)
	return slices.Compact(l)
}

// Marshal encodes r, normalising Released (sorted, unique, owner included)
// and Supersedes (sorted, unique).
func (r Routing) Marshal() []byte {
	sup := slices.Clone(r.Supersedes)
	slices.SortFunc(sup, compareRef)
	sup = slices.Compact(sup)
	version := byte(routingVersion2)
	b := []byte{version}
	b = append(b, r.Space[:]...)
	b = format.AppendStr8(b, r.Owner)
	rel := r.canonicalReleased()
	b = append(b, byte(len(rel)))
	for _, f := range rel {
		b = format.AppendStr8(b, f)
	}
	b = append(format.AppendU16(b, uint16(len(r.SealedName))), r.SealedName...)
	if version == routingVersion2 {
		b = append(b, r.Nonce[:]...)
		b = append(b, byte(len(sup)))
		for _, ref := range sup {
			b = append(b, ref.Author[:]...)
			b = format.AppendU64(b, ref.Seq)
		}
	}
	return b
}

// ParseRouting decodes a routing record and checks that it is canonical:
// valid fingerprints, Released sorted, unique and holding Owner.
func ParseRouting(b []byte) (Routing, error) {
	var r Routing
	rd := format.NewReader(b, "routing record")
	version := rd.U8()
	if rd.Err() == nil && version != routingVersion1 && version != routingVersion2 {
		return r, malformed("routing record", ErrUnknownVersion, fmt.Sprintf("version %d", version))
	}
	rd.CopyTo(r.Space[:])
	r.Owner = rd.Str(false, idTextLen)
	n := int(rd.U8())
	for i := 0; i < n && rd.Err() == nil; i++ {
		r.Released = append(r.Released, rd.Str(false, idTextLen))
	}
	sn := int(rd.U16())
	if rd.Err() == nil && sn > MaxSealedName {
		return Routing{}, malformed("routing record", ErrOversize, "sealed name")
	}
	if v := rd.Bytes(sn); v != nil {
		r.SealedName = bytes.Clone(v)
	}
	if version == routingVersion2 {
		rd.CopyTo(r.Nonce[:])
		n := int(rd.U8())
		for i := 0; i < n && rd.Err() == nil; i++ {
			var ref RoutingRef
			rd.CopyTo(ref.Author[:])
			ref.Seq = rd.U64()
			if rd.Err() == nil && len(r.Supersedes) > 0 && compareRef(r.Supersedes[len(r.Supersedes)-1], ref) >= 0 {
				return Routing{}, invalid("routing record", "superseded records not sorted and unique")
			}
			r.Supersedes = append(r.Supersedes, ref)
		}
	}
	if err := rd.Done(); err != nil {
		return Routing{}, err
	}
	if _, err := parseID("routing record", r.Owner); err != nil {
		return Routing{}, err
	}
	for _, f := range r.Released {
		if _, err := parseID("routing record", f); err != nil || f != strings.ToLower(f) {
			return Routing{}, invalid("routing record", "bad fingerprint")
		}
	}
	if !slices.Equal(r.Released, r.canonicalReleased()) || strings.ToLower(r.Owner) != r.Owner {
		return Routing{}, invalid("routing record", "release list not canonical")
	}
	return r, nil
}

// Releases reports whether bureau fingerprint fp is on r's release list.
func (r Routing) Releases(fp string) bool {
	_, ok := slices.BinarySearch(r.Released, fp)
	return ok
}

func nameKey(key *SpaceKey) [32]byte { return DeriveKey(&key.key, "space name") }

func nameAD(space SpaceID) []byte {
	return append([]byte("fieldsync/space-name/v1\x00"), space[:]...)
}

// SealName seals a space's name for its routing record: SealValue under
// DeriveKey(space key, "space name"), with the space ID in the additional
// data. rand must not fail (see SealValue).
func SealName(key *SpaceKey, space SpaceID, name string, rand io.Reader) []byte {
	k := nameKey(key)
	defer clear(k[:])
	return SealValue(&k, nameAD(space), []byte(name), rand)
}

// OpenName opens a name sealed by SealName: ErrAuth if it does not open.
func OpenName(key *SpaceKey, space SpaceID, sealed []byte) (string, error) {
	if !key.usable() {
		return "", ErrNoKey
	}
	k := nameKey(key)
	defer clear(k[:])
	b, err := OpenValue(&k, nameAD(space), sealed)
	if err != nil {
		return "", err
	}
	return string(b), nil
}
