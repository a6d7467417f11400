package crypto_test

import (
	"crypto/rand"
	"fmt"
	"time"

	"fieldsync/crypto"
)

// keyring is the simplest Keyring: the epoch keys this device holds.
type keyring map[crypto.KeyID]*crypto.SpaceKey

func (k keyring) Key(_ crypto.SpaceID, epoch crypto.KeyID) (*crypto.SpaceKey, bool) {
	key, ok := k[epoch]
	return key, ok
}

// Example_sealOpen enrolls a device, seals a change with a space's epoch key,
// verifies it as a relay would (no key) and opens it as a member.
func Example_sealOpen() {
	bureau, _ := crypto.NewBureau("OMN", rand.Reader)
	device, _ := crypto.NewIdentity(rand.Reader)
	var salt [32]byte
	rand.Read(salt[:])
	now := time.Now()
	cert, _ := bureau.Issue(crypto.NewRequest(device, crypto.NameCommitment("Officer Name", salt)),
		crypto.RoleOfficer, now.Add(-time.Hour), now.Add(365*24*time.Hour))
	trust := crypto.NewTrustSet(bureau.Public())

	space, _ := crypto.NewSpaceID(rand.Reader)
	key, _ := crypto.NewSpaceKey(rand.Reader)
	env, err := crypto.Seal(crypto.Header{Kind: crypto.KindChange, Space: space, Seq: 1},
		[]byte("set name=Zoë"), key, device, rand.Reader)
	if err != nil {
		panic(err)
	}

	// A relay: signature only, no space key.
	h, _, err := crypto.Verify(env, cert.Device)
	fmt.Println("relay verify:", err, "seq", h.Seq)
	_, _, err = crypto.Open(env, cert.Device, nil)
	fmt.Println("relay open:", err)

	// A member: the author's certificate at the change's time, then the body.
	fmt.Println("author:", crypto.CheckAuthor(h, cert, nil, trust, now))
	_, body, err := crypto.Open(env, cert.Device, keyring{key.ID(): key})
	fmt.Println("member open:", err, string(body))
	// Output:
	// relay verify: <nil> seq 1
	// relay open: no key for this epoch
	// author: <nil>
	// member open: <nil> set name=Zoë
}
