package crypto

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"fieldsync/crypto/internal/format"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// Keystore is everything secret a device holds, sealed in one file
// (`keystore` in the data dir) by SealKeystore or SealKeystoreWithKeyFile.
type Keystore struct {
	Identity   *Identity
	StorageKey [32]byte // local storage master key (derive subkeys with DeriveKey)
	MeshKey    []byte   // 32 bytes (or empty), memberlist keyring key: the primary, used to send
	// MeshKeys are the other mesh keys this device accepts while a mesh
	// rotates (`fieldsync mesh-key add`); never the primary. At most
	// MaxMeshKeys-1 of them.
	MeshKeys [][]byte
	Officer  string   // the officer's name (case data; sealed here, never in clear files)
	NameSalt [32]byte // opening of the certificate's name commitment
}

// Zero wipes the keystore's key material (best effort: Go may have copied
// it, and Officer, a string, cannot be wiped).
func (ks *Keystore) Zero() {
	if ks == nil {
		return
	}
	ks.Identity.zero()
	clear(ks.StorageKey[:])
	clear(ks.MeshKey)
	for _, k := range ks.MeshKeys {
		clear(k)
	}
	clear(ks.NameSalt[:])
}

// KDFParams are argon2id's cost parameters.
type KDFParams struct {
	Time      uint32 // passes
	MemoryKiB uint32 // memory in KiB
	Threads   uint8  // lanes
}

// DefaultKDFParams is RFC 9106's second recommended option (t=3, 64 MiB,
// p=4); the first needs 2 GiB.
var DefaultKDFParams = KDFParams{Time: 3, MemoryKiB: 64 * 1024, Threads: 4}

// TestKDFParams are cheap parameters for tests, the demo and benchmarks
// only: they protect nothing.
var TestKDFParams = KDFParams{Time: 1, MemoryKiB: 256, Threads: 1}

// Bounds on the parameters a file may ask for (so that a crafted file cannot
// make opening it take unbounded memory or time).
const (
	MaxKDFTime      = 64
	MaxKDFMemoryKiB = 1 << 20 // 1 GiB
	MaxKDFThreads   = 64
)

func (p KDFParams) check() error {
	if p.Time < 1 || p.Time > MaxKDFTime || p.Threads < 1 || p.Threads > MaxKDFThreads ||
		p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > MaxKDFMemoryKiB {
		return fmt.Errorf("kdf parameters out of range (t 1..%d, p 1..%d, m 8p..%d KiB)", MaxKDFTime, MaxKDFThreads, MaxKDFMemoryKiB)
	}
	return nil
}

// Sealed file container, shared by keystores ("FSKS") and bureau files
// ("FSBK"):
//
//	0  4  magic
//	4  1  version (1)
//	5  1  KDF kind: 1 argon2id(passphrase), 2 key file
//	6  4  argon2id time (u32; 0 for a key file)
//	10 4  argon2id memory KiB (u32; 0 for a key file)
//	14 1  argon2id threads (0 for a key file)
//	15 16 salt
//	31 24 nonce
//	55 4  ciphertext length (u32, tag included)
//	59 16 check value
//	75 16 header checksum: SHA-256("fieldsync/sealed-file/v1\x00" || bytes 0..75)[:16]
//	91 .. XChaCha20-Poly1305 ciphertext of the payload, AD = bytes 0..91
const (
	magicKeystore = "FSKS"
	magicBureau   = "FSBK"

	kdfArgon2id = 1
	kdfKeyFile  = 2

	fileVersion    = 1
	fileHeaderSize = 91
	maxFilePayload = 64 << 10
)

type sealedFile struct {
	magic  string
	kind   uint8
	params KDFParams
	salt   [16]byte
	nonce  [nonceSize]byte
}

// fileKeys derives the AEAD key and the check value from the KDF output.
func fileKeys(master []byte, f *sealedFile) (key [32]byte, check [16]byte) {
	key = hkdf32(master, f.salt[:], "fieldsync/sealed-file/v1\x00key\x00"+f.magic)
	c := hkdf32(master, f.salt[:], "fieldsync/sealed-file/v1\x00check\x00"+f.magic)
	copy(check[:], c[:16])
	clear(c[:])
	return key, check
}

func (f *sealedFile) master(secret []byte) []byte {
	if f.kind == kdfKeyFile {
		return bytes.Clone(secret)
	}
	return argon2.IDKey(secret, f.salt[:], f.params.Time, f.params.MemoryKiB, f.params.Threads, 32)
}

func headerSum(b []byte) [16]byte { return hash16("fieldsync/sealed-file/v1\x00", b) }

func sealFile(magic string, kind uint8, p KDFParams, secret, payload []byte, rand io.Reader) ([]byte, error) {
	f := &sealedFile{magic: magic, kind: kind}
	if kind == kdfArgon2id {
		if err := p.check(); err != nil {
			return nil, err
		}
		f.params = p
	}
	if len(payload) > maxFilePayload-tagSize {
		return nil, fmt.Errorf("sealed file payload too large")
	}
	if _, err := io.ReadFull(rand, f.salt[:]); err != nil {
		return nil, fmt.Errorf("seal: %v", err)
	}
	if _, err := io.ReadFull(rand, f.nonce[:]); err != nil {
		return nil, fmt.Errorf("seal: %v", err)
	}
	master := f.master(secret)
	defer clear(master)
	key, check := fileKeys(master, f)
	defer clear(key[:])
	b := make([]byte, 0, fileHeaderSize+len(payload)+tagSize)
	b = append(b, magic...)
	b = append(b, fileVersion, kind)
	b = format.AppendU32(b, f.params.Time)
	b = format.AppendU32(b, f.params.MemoryKiB)
	b = append(b, f.params.Threads)
	b = append(b, f.salt[:]...)
	b = append(b, f.nonce[:]...)
	b = format.AppendU32(b, uint32(len(payload)+tagSize))
	b = append(b, check[:]...)
	sum := headerSum(b)
	b = append(b, sum[:]...)
	aead, _ := chacha20poly1305.NewX(key[:])
	return aead.Seal(b, f.nonce[:], payload, b[:fileHeaderSize]), nil
}

// parseFileHeader decodes and checks the container header (never the
// secret). what names the file in errors.
func parseFileHeader(data []byte, magic, what string) (*sealedFile, error) {
	if len(data) < len(magic)+1 {
		return nil, truncated(what)
	}
	if string(data[:4]) != magic {
		return nil, malformed(what, ErrUnknownVersion, "magic")
	}
	if data[4] != fileVersion {
		return nil, malformed(what, ErrUnknownVersion, fmt.Sprintf("version %d", data[4]))
	}
	if len(data) < fileHeaderSize {
		return nil, truncated(what)
	}
	if sum := headerSum(data[:75]); subtle.ConstantTimeCompare(sum[:], data[75:91]) != 1 {
		return nil, invalid(what, "corrupt header (checksum mismatch)")
	}
	f := &sealedFile{magic: magic, kind: data[5]}
	f.params.Time = binary.BigEndian.Uint32(data[6:])
	f.params.MemoryKiB = binary.BigEndian.Uint32(data[10:])
	f.params.Threads = data[14]
	copy(f.salt[:], data[15:31])
	copy(f.nonce[:], data[31:55])
	ctLen := binary.BigEndian.Uint32(data[55:59])
	switch f.kind {
	case kdfArgon2id:
		if err := f.params.check(); err != nil {
			return nil, invalid(what, err.Error())
		}
	case kdfKeyFile:
		if f.params != (KDFParams{}) {
			return nil, invalid(what, "kdf parameters on a key-file file")
		}
	default:
		return nil, invalid(what, "unknown kdf")
	}
	switch {
	case ctLen > maxFilePayload || ctLen < tagSize:
		return nil, malformed(what, ErrOversize, "payload length")
	case len(data) < fileHeaderSize+int(ctLen):
		return nil, truncated(what)
	case len(data) > fileHeaderSize+int(ctLen):
		return nil, invalid(what, "trailing bytes")
	}
	return f, nil
}

func openFile(data []byte, magic, what string, kind uint8, secret []byte) ([]byte, error) {
	f, err := parseFileHeader(data, magic, what)
	if err != nil {
		return nil, err
	}
	if f.kind != kind {
		if f.kind == kdfKeyFile {
			return nil, fmt.Errorf("%w: %s is locked with a key file, not a passphrase", ErrWrongPassphrase, what)
		}
		return nil, fmt.Errorf("%w: %s is locked with a passphrase, not a key file", ErrWrongPassphrase, what)
	}
	if kind == kdfKeyFile && len(secret) != 32 {
		return nil, fmt.Errorf("%w: key file key must be 32 bytes", ErrWrongPassphrase)
	}
	master := f.master(secret)
	defer clear(master)
	key, check := fileKeys(master, f)
	defer clear(key[:])
	if subtle.ConstantTimeCompare(check[:], data[59:75]) != 1 {
		if kind == kdfKeyFile {
			return nil, fmt.Errorf("%w: the key file does not open this %s", ErrWrongPassphrase, what)
		}
		return nil, ErrWrongPassphrase
	}
	aead, _ := chacha20poly1305.NewX(key[:])
	pt, err := aead.Open(nil, f.nonce[:], data[fileHeaderSize:], data[:fileHeaderSize])
	if err != nil {
		// The header (and so the secret) checked out: the ciphertext is corrupt.
		return nil, malformed(what, ErrAuth, "corrupt: the passphrase is right but the contents do not authenticate")
	}
	return pt, nil
}

// Keystore payload versions: 1 holds one mesh key; 2 adds the other
// accepted mesh keys (written only when there are some, so a keystore
// that never rotated stays readable by older agents).
const (
	keystorePayloadVersion  = 1
	keystorePayloadVersion2 = 2
)

// MaxMeshKeys bounds a device's mesh keyring (primary included).
const MaxMeshKeys = 16

func validMeshKeyLen(n int) bool { return n == 16 || n == 24 || n == 32 }

func (ks *Keystore) payload() ([]byte, error) {
	if ks == nil || ks.Identity == nil || ks.Identity.sign == nil {
		return nil, fmt.Errorf("seal keystore: no identity")
	}
	if len(ks.MeshKey) != 0 && !validMeshKeyLen(len(ks.MeshKey)) {
		return nil, fmt.Errorf("seal keystore: mesh key must be 16, 24 or 32 bytes")
	}
	if len(ks.MeshKeys) > 0 && len(ks.MeshKey) == 0 {
		return nil, fmt.Errorf("seal keystore: other mesh keys without a primary")
	}
	if len(ks.MeshKeys) >= MaxMeshKeys {
		return nil, fmt.Errorf("seal keystore: more than %d mesh keys", MaxMeshKeys)
	}
	for _, k := range ks.MeshKeys {
		if !validMeshKeyLen(len(k)) {
			return nil, fmt.Errorf("seal keystore: mesh key must be 16, 24 or 32 bytes")
		}
		if bytes.Equal(k, ks.MeshKey) {
			return nil, fmt.Errorf("seal keystore: the primary mesh key is listed twice")
		}
	}
	if len(ks.Officer) > MaxOfficerName {
		return nil, fmt.Errorf("seal keystore: officer name longer than %d bytes", MaxOfficerName)
	}
	version := byte(keystorePayloadVersion)
	if len(ks.MeshKeys) > 0 {
		version = keystorePayloadVersion2
	}
	b := make([]byte, 0, 1+32*5+1+2+len(ks.Officer)+1+33*len(ks.MeshKeys))
	b = append(b, version)
	b = append(b, ks.Identity.sign.Seed()...)
	b = append(b, ks.Identity.agree.Bytes()...)
	b = append(b, ks.StorageKey[:]...)
	b = append(b, byte(len(ks.MeshKey)))
	b = append(b, ks.MeshKey...)
	b = append(b, ks.NameSalt[:]...)
	b = format.AppendStr16(b, ks.Officer)
	if version == keystorePayloadVersion2 {
		b = append(b, byte(len(ks.MeshKeys)))
		for _, k := range ks.MeshKeys {
			b = append(b, byte(len(k)))
			b = append(b, k...)
		}
	}
	return b, nil
}

func parseKeystorePayload(pt []byte) (*Keystore, error) {
	defer clear(pt)
	r := format.NewReader(pt, "keystore")
	v := r.U8()
	if r.Err() == nil && v != keystorePayloadVersion && v != keystorePayloadVersion2 {
		return nil, malformed("keystore", ErrUnknownVersion, "payload version")
	}
	seed := r.Bytes(32)
	x := r.Bytes(32)
	ks := &Keystore{}
	r.CopyTo(ks.StorageKey[:])
	mk := r.Bytes(int(r.U8()))
	r.CopyTo(ks.NameSalt[:])
	ks.Officer = r.Str(true, MaxOfficerName)
	var others [][]byte
	if v == keystorePayloadVersion2 {
		n := int(r.U8())
		if r.Err() == nil && (n == 0 || n >= MaxMeshKeys) {
			return nil, invalid("keystore", "mesh key count")
		}
		for i := 0; i < n && r.Err() == nil; i++ {
			k := r.Bytes(int(r.U8()))
			if r.Err() == nil && (!validMeshKeyLen(len(k)) || bytes.Equal(k, mk)) {
				return nil, invalid("keystore", "mesh key")
			}
			others = append(others, bytes.Clone(k))
		}
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	if len(mk) != 0 && !validMeshKeyLen(len(mk)) || len(others) > 0 && len(mk) == 0 {
		return nil, invalid("keystore", "mesh key")
	}
	id, err := identityFromKeys(seed, x)
	if err != nil {
		return nil, err
	}
	ks.Identity = id
	if len(mk) > 0 {
		ks.MeshKey = bytes.Clone(mk)
	}
	ks.MeshKeys = others
	return ks, nil
}

// SealKeystore seals ks under argon2id(passphrase) with parameters p
// (DefaultKDFParams in production).
func SealKeystore(ks *Keystore, passphrase []byte, p KDFParams, rand io.Reader) ([]byte, error) {
	pl, err := ks.payload()
	if err != nil {
		return nil, err
	}
	defer clear(pl)
	return sealFile(magicKeystore, kdfArgon2id, p, passphrase, pl, rand)
}

// OpenKeystore opens a keystore sealed by SealKeystore. A wrong passphrase is
// ErrWrongPassphrase; a corrupt or truncated file is ErrMalformed (with its
// reason). The two are told apart honestly: the file stores a check value
// derived from the KDF output (under a different HKDF label from the key) and
// a checksum of its header. A header that fails its checksum is corrupt; a
// check value that does not match is a wrong passphrase; a matching check
// value with a ciphertext that does not authenticate is a corrupt file.
func OpenKeystore(data, passphrase []byte) (*Keystore, error) {
	pt, err := openFile(data, magicKeystore, "keystore", kdfArgon2id, passphrase)
	if err != nil {
		return nil, err
	}
	return parseKeystorePayload(pt)
}

// SealKeystoreWithKeyFile seals ks under a 32-byte key from a key file
// (ParseKeyFile), for unattended relays. The key file must be kept 0600.
func SealKeystoreWithKeyFile(ks *Keystore, fileKey []byte, rand io.Reader) ([]byte, error) {
	if len(fileKey) != 32 {
		return nil, fmt.Errorf("seal keystore: key file key must be 32 bytes")
	}
	pl, err := ks.payload()
	if err != nil {
		return nil, err
	}
	defer clear(pl)
	return sealFile(magicKeystore, kdfKeyFile, KDFParams{}, fileKey, pl, rand)
}

// OpenKeystoreWithKeyFile opens a keystore sealed by SealKeystoreWithKeyFile
// (errors as OpenKeystore; a wrong key file is ErrWrongPassphrase).
func OpenKeystoreWithKeyFile(data, fileKey []byte) (*Keystore, error) {
	pt, err := openFile(data, magicKeystore, "keystore", kdfKeyFile, fileKey)
	if err != nil {
		return nil, err
	}
	return parseKeystorePayload(pt)
}

// ChangePassphrase reseals a passphrase keystore under newPass (with fresh
// salt, nonce and parameters p).
func ChangePassphrase(data, oldPass, newPass []byte, p KDFParams, rand io.Reader) ([]byte, error) {
	ks, err := OpenKeystore(data, oldPass)
	if err != nil {
		return nil, err
	}
	defer ks.Zero()
	return SealKeystore(ks, newPass, p, rand)
}

// KeystoreUsesKeyFile reports whether the keystore file is unlocked by a key
// file (true) or a passphrase (false). It checks the header only.
func KeystoreUsesKeyFile(data []byte) (bool, error) {
	f, err := parseFileHeader(data, magicKeystore, "keystore")
	if err != nil {
		return false, err
	}
	return f.kind == kdfKeyFile, nil
}

// KeystoreKDFParams returns the argon2id parameters a passphrase keystore was
// sealed with (zero for a key-file keystore).
func KeystoreKDFParams(data []byte) (KDFParams, error) {
	f, err := parseFileHeader(data, magicKeystore, "keystore")
	if err != nil {
		return KDFParams{}, err
	}
	return f.params, nil
}

const bureauPayloadVersion = 1

// SealBureau seals a bureau's key (the omn.bureau file) under
// argon2id(passphrase), in the same container as a keystore (magic "FSBK").
func SealBureau(b *Bureau, passphrase []byte, p KDFParams, rand io.Reader) ([]byte, error) {
	if b == nil || b.priv == nil || !ValidBureauName(b.Name) {
		return nil, fmt.Errorf("seal bureau: no key or bad name")
	}
	pl := []byte{bureauPayloadVersion}
	pl = format.AppendStr8(pl, b.Name)
	pl = append(pl, b.priv.Seed()...)
	defer clear(pl)
	return sealFile(magicBureau, kdfArgon2id, p, passphrase, pl, rand)
}

// OpenBureau opens a bureau file: ErrWrongPassphrase vs ErrMalformed, as
// OpenKeystore.
func OpenBureau(data, passphrase []byte) (*Bureau, error) {
	pt, err := openFile(data, magicBureau, "bureau file", kdfArgon2id, passphrase)
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	r := format.NewReader(pt, "bureau file")
	if v := r.U8(); r.Err() == nil && v != bureauPayloadVersion {
		return nil, malformed("bureau file", ErrUnknownVersion, "payload version")
	}
	name := r.Str(false, 16)
	seed := r.Bytes(32)
	if err := r.Done(); err != nil {
		return nil, err
	}
	if !ValidBureauName(name) {
		return nil, invalid("bureau file", "name")
	}
	return NewBureau(name, bytes.NewReader(seed))
}

// Key files and mesh key files: one line of text, a tag and the standard
// base64 of 32 bytes.
const (
	keyFileTag  = "fieldsync-key-file-v1"
	meshFileTag = "fieldsync-mesh-key-v1"
)

func newLineKey(tag string, rand io.Reader) ([]byte, error) {
	var k [32]byte
	defer clear(k[:])
	if _, err := io.ReadFull(rand, k[:]); err != nil {
		return nil, fmt.Errorf("new key: %v", err)
	}
	return []byte(tag + " " + base64.StdEncoding.EncodeToString(k[:]) + "\n"), nil
}

func parseLineKey(tag, what string, data []byte, bareOK bool) ([]byte, error) {
	if len(data) > 256 {
		return nil, malformed(what, ErrOversize, "")
	}
	f := strings.Fields(string(data))
	var enc string
	switch {
	case len(f) == 2 && f[0] == tag:
		enc = f[1]
	case len(f) == 1 && bareOK:
		enc = f[0]
	case len(f) == 0:
		return nil, truncated(what)
	case len(f) == 2:
		return nil, malformed(what, ErrUnknownVersion, "tag")
	default:
		return nil, invalid(what, "want one line: "+tag+" BASE64")
	}
	k, err := base64.StdEncoding.Strict().DecodeString(enc)
	if err != nil || len(k) != 32 {
		return nil, invalid(what, "want the base64 of 32 bytes")
	}
	return k, nil
}

// NewKeyFile returns the contents of a new key file (one line of text:
// "fieldsync-key-file-v1 BASE64\n"); the caller writes it with mode 0600.
func NewKeyFile(rand io.Reader) ([]byte, error) { return newLineKey(keyFileTag, rand) }

// ParseKeyFile returns the 32-byte key of a key file.
func ParseKeyFile(data []byte) ([]byte, error) {
	return parseLineKey(keyFileTag, "key file", data, false)
}

// NewMeshKeyFile returns the contents of a new mesh.key (one line of text:
// "fieldsync-mesh-key-v1 BASE64\n").
func NewMeshKeyFile(rand io.Reader) ([]byte, error) { return newLineKey(meshFileTag, rand) }

// ParseMeshKeyFile returns the 32-byte memberlist key of a mesh key file. A
// bare line of base64 (memberlist's own form) is accepted too.
func ParseMeshKeyFile(data []byte) ([]byte, error) {
	return parseLineKey(meshFileTag, "mesh key file", data, true)
}

// MeshKeyFingerprint names a mesh key without revealing it: the first 8
// bytes of SHA-256("fieldsync mesh key fingerprint v1\x00" || key), in hex.
// Operators compare fingerprints across devices during a rotation.
func MeshKeyFingerprint(key []byte) string {
	h := hash16("fieldsync mesh key fingerprint v1\x00", key)
	return fmt.Sprintf("%x", h[:8])
}

// Backup headers (docs/backup.md) use the sealed-file container with magic
// "FSBU": the payload (the backup's data key and manifest, at most 64 KiB)
// is sealed under argon2id(passphrase) or under a key file's key, as the
// device's keystore is.
const magicBackup = "FSBU"

// SealBackupHeader seals a backup header payload under argon2id(passphrase)
// with parameters p.
func SealBackupHeader(payload, passphrase []byte, p KDFParams, rand io.Reader) ([]byte, error) {
	return sealFile(magicBackup, kdfArgon2id, p, passphrase, payload, rand)
}

// SealBackupHeaderWithKeyFile seals a backup header payload under a key
// file's 32-byte key.
func SealBackupHeaderWithKeyFile(payload, fileKey []byte, rand io.Reader) ([]byte, error) {
	if len(fileKey) != 32 {
		return nil, fmt.Errorf("seal backup: key file key must be 32 bytes")
	}
	return sealFile(magicBackup, kdfKeyFile, KDFParams{}, fileKey, payload, rand)
}

// OpenBackupHeader opens a header sealed by SealBackupHeader (errors as
// OpenKeystore: ErrWrongPassphrase vs ErrMalformed).
func OpenBackupHeader(data, passphrase []byte) ([]byte, error) {
	return openFile(data, magicBackup, "backup", kdfArgon2id, passphrase)
}

// OpenBackupHeaderWithKeyFile opens a header sealed by
// SealBackupHeaderWithKeyFile.
func OpenBackupHeaderWithKeyFile(data, fileKey []byte) ([]byte, error) {
	return openFile(data, magicBackup, "backup", kdfKeyFile, fileKey)
}

// SealedHeaderSize is the size of the fixed part of a sealed-file
// container: read this many bytes of a backup, then BackupHeaderLen says
// how long the whole sealed header is.
const SealedHeaderSize = fileHeaderSize

// BackupHeaderLen checks the fixed part of a backup's sealed header (at
// least SealedHeaderSize bytes) and returns the length of the whole
// header, and whether it is locked with a key file (true) or a passphrase.
func BackupHeaderLen(fixed []byte) (n int, keyFile bool, err error) {
	if len(fixed) < fileHeaderSize {
		return 0, false, truncated("backup")
	}
	ctLen := binary.BigEndian.Uint32(fixed[55:59])
	if ctLen > maxFilePayload || ctLen < tagSize {
		return 0, false, malformed("backup", ErrOversize, "header length")
	}
	n = fileHeaderSize + int(ctLen)
	whole := make([]byte, n) // parseFileHeader checks the length against the bytes given
	copy(whole, fixed[:fileHeaderSize])
	f, err := parseFileHeader(whole, magicBackup, "backup")
	if err != nil {
		return 0, false, err
	}
	return n, f.kind == kdfKeyFile, nil
}
