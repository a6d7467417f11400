package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"fieldsync/agent"
	"fieldsync/agent/api"
	"fieldsync/crypto"
	"fieldsync/internal/harness"
)

// trustMesh is three bureaus — OMN (the cluster's own), KAZ and TJK — whose
// devices all trust one another, and an OMN relay.
type trustMesh struct {
	cl            *harness.Cluster
	ctx           context.Context
	kazKey        string
	tjkKey        string
	pubs          []string // every bureau's public file
	relay         *harness.Node
	omn, kaz, tjk *harness.Node
}

func newTrustMesh(t *testing.T) *trustMesh {
	t.Helper()
	cl, ctx := newCluster(t)
	m := &trustMesh{cl: cl, ctx: ctx}
	omnPub, err := cl.BureauPub(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kazKey, kazPub, err := cl.AddBureau(ctx, "KAZ")
	if err != nil {
		t.Fatal(err)
	}
	tjkKey, tjkPub, err := cl.AddBureau(ctx, "TJK")
	if err != nil {
		t.Fatal(err)
	}
	m.kazKey, m.tjkKey, m.pubs = kazKey, tjkKey, []string{omnPub, kazPub, tjkPub}
	m.relay = m.add(t, "relay", "Relay One", true, cl.Bureau)
	m.omn = m.add(t, "omn1", "Amina Haddad", false, cl.Bureau)
	m.kaz = m.add(t, "kaz1", "Дина Касымова", false, kazKey)
	m.tjk = m.add(t, "tjk1", "Farrukh Rahimov", false, tjkKey)
	for _, n := range []*harness.Node{m.relay, m.omn, m.kaz, m.tjk} {
		m.start(t, n)
	}
	return m
}

func (m *trustMesh) add(t *testing.T, name, officer string, relay bool, bureauKey string) *harness.Node {
	t.Helper()
	n, err := m.cl.AddEnrolled(m.ctx, name, officer, relay, bureauKey, m.pubs...)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// start runs the node's agent, joining through the relay (or, for the relay,
// through nobody).
func (m *trustMesh) start(t *testing.T, n *harness.Node) {
	t.Helper()
	var join []string
	if n != m.relay && m.relay.Running() {
		join = append(join, m.relay.Bind)
	}
	if err := m.cl.Start(m.ctx, n, "", join...); err != nil {
		t.Fatal(err)
	}
}

func mustRecord(t *testing.T, ctx context.Context, n *harness.Node, space, record, field, value string) {
	t.Helper()
	if _, err := n.Client().RecordPut(ctx, api.RecordPutRequest{Space: space, Record: record, Fields: []api.FieldValue{{Name: field, Value: value}}}); err != nil {
		t.Fatalf("%s: record put %s: %v", n.Name, record, err)
	}
}

// waitValue waits until node n reads value in the record's field.
func waitValue(t *testing.T, ctx context.Context, n *harness.Node, space, record, field, value string) {
	t.Helper()
	if _, err := harness.WaitUntil(ctx, 90*time.Second, fmt.Sprintf("%s to read %s.%s", n.Name, record, field), func() (bool, error) {
		r, err := n.Client().RecordGet(ctx, api.RecordRef{Space: space, Record: record})
		if err != nil {
			return false, nil
		}
		f, ok := r.Fields[field]
		return ok && f.Value == value, nil
	}); err != nil {
		t.Fatal(err)
	}
}

// moreRounds waits until node n has completed k more sync rounds than now:
// whatever its peers would send it, they have had the chance to.
func moreRounds(t *testing.T, ctx context.Context, n *harness.Node, k uint64) {
	t.Helper()
	st, err := n.Client().Status(ctx)
	if err != nil || st.Sync == nil {
		t.Fatalf("%s status: %v", n.Name, err)
	}
	from := st.Sync.Rounds
	if _, err := harness.WaitUntil(ctx, 90*time.Second, fmt.Sprintf("%s to run %d sync rounds", n.Name, k), func() (bool, error) {
		st, err := n.Client().Status(ctx)
		return err == nil && st.Sync != nil && st.Sync.Rounds >= from+k, nil
	}); err != nil {
		t.Fatal(err)
	}
}

// openStopped opens a stopped node's store in this process, to look at what
// its disk really holds.
func openStopped(t *testing.T, cl *harness.Cluster, n *harness.Node) *agent.Agent {
	t.Helper()
	cfg := agent.DefaultConfig()
	cfg.Layout = agent.Layout{Dir: n.Dir}
	cfg.Unlock = agent.Unlock{Passphrase: cl.Passphrase()}
	cfg.MinFreeBytes = 0
	cfg.Relay = n.Relay
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatalf("open %s's store: %v", n.Name, err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// shareRecipients lists, for each epoch, the devices the key shares held in a
// store are addressed to.
func shareRecipients(t *testing.T, a *agent.Agent, space crypto.SpaceID) map[crypto.KeyID][]crypto.DeviceID {
	t.Helper()
	out := map[crypto.KeyID][]crypto.DeviceID{}
	err := a.Envelopes(space, func(env []byte) error {
		h, err := crypto.ParseHeader(env)
		if err != nil {
			return err
		}
		if h.Kind != crypto.KindKeyShare {
			return nil
		}
		ks, err := crypto.ParseKeyShare(env[crypto.HeaderSize : crypto.HeaderSize+int(h.BodyLen)])
		if err != nil {
			return err
		}
		out[ks.Epoch] = append(out[ks.Epoch], ks.Recipient)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func envelopesOf(t *testing.T, a *agent.Agent, space crypto.SpaceID) [][]byte {
	t.Helper()
	var out [][]byte
	if err := a.Envelopes(space, func(env []byte) error { out = append(out, bytes.Clone(env)); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func deviceOf(t *testing.T, ctx context.Context, n *harness.Node) crypto.DeviceID {
	t.Helper()
	st, err := n.Client().Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, err := crypto.ParseDeviceID(st.Device.ID)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// grepTree reports the files under dir that contain needle.
func grepTree(t *testing.T, dir string, needle []byte) []string {
	t.Helper()
	var hits []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, needle) {
			hits = append(hits, p)
		}
		return nil
	})
	return hits
}

// TestReleaseToNamedBureaus: a space released to OMN and KAZ reaches the
// devices of both and nothing of it reaches TJK's device or the relay's
// keys: no key share is addressed to either, TJK's disk holds neither the
// canary nor any envelope of the space, and TJK's device handed the
// envelopes directly cannot open them.
func TestReleaseToNamedBureaus(t *testing.T) {
	if testing.Short() {
		t.Skip("real agents of three bureaus")
	}
	m := newTrustMesh(t)
	ctx := m.ctx
	sp, err := m.omn.Client().SpaceCreate(ctx, api.SpaceCreateRequest{Name: "op-north", ReleaseTo: []string{"KAZ"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sp.Release, []string{"KAZ", "OMN"}) && !slices.Equal(sp.Release, []string{"OMN", "KAZ"}) {
		t.Fatalf("release = %v", sp.Release)
	}
	const canary = "CANARY-7f3a-released-to-KAZ-only"
	mustRecord(t, ctx, m.omn, sp.ID, "p1", "name", canary)
	waitValue(t, ctx, m.kaz, sp.ID, "p1", "name", canary) // read back on KAZ first
	mustRecord(t, ctx, m.kaz, sp.ID, "p1", "phone", "+7 701 000 0000")
	waitValue(t, ctx, m.omn, sp.ID, "p1", "phone", "+7 701 000 0000")
	if _, err := harness.WaitUntil(ctx, 90*time.Second, "OMN and KAZ to converge", func() (bool, error) {
		return harness.Converged(ctx, sp.ID, m.omn, m.kaz)
	}); err != nil {
		t.Fatal(err)
	}
	// Give TJK every chance to be sent something.
	moreRounds(t, ctx, m.tjk, 3)
	if spaces, err := m.tjk.Client().SpaceList(ctx); err != nil || len(spaces) != 0 {
		t.Fatalf("TJK's device lists spaces %v (%v); want none", spaces, err)
	}
	tjkID, relayID := deviceOf(t, ctx, m.tjk), deviceOf(t, ctx, m.relay)
	for _, n := range []*harness.Node{m.relay, m.omn, m.kaz, m.tjk} {
		if err := m.cl.Stop(n); err != nil {
			t.Fatal(err)
		}
	}
	spaceID, _ := crypto.ParseSpaceID(sp.ID)
	// No key share addressed to TJK's device or the relay, on any store.
	for _, n := range []*harness.Node{m.relay, m.omn, m.kaz} {
		a := openStopped(t, m.cl, n)
		shares := shareRecipients(t, a, spaceID)
		if len(shares) == 0 && n != m.relay {
			t.Fatalf("%s holds no key share at all: the check below would prove nothing", n.Name)
		}
		for epoch, to := range shares {
			if slices.Contains(to, tjkID) || slices.Contains(to, relayID) {
				t.Fatalf("%s holds a share of epoch %s addressed to TJK's device or the relay: %v", n.Name, epoch, to)
			}
		}
		a.Close()
	}
	// TJK's disk: no canary in any file, no envelope of the space.
	if hits := grepTree(t, m.tjk.Dir, []byte(canary)); len(hits) > 0 {
		t.Fatalf("canary found on TJK's disk: %v", hits)
	}
	tjk := openStopped(t, m.cl, m.tjk)
	if envs := envelopesOf(t, tjk, spaceID); len(envs) != 0 {
		t.Fatalf("TJK's store holds %d envelopes of the space", len(envs))
	}
	// Handed the envelopes directly (from the relay's store), TJK's
	// device stores what verifies but opens nothing.
	relay := openStopped(t, m.cl, m.relay)
	envs := envelopesOf(t, relay, spaceID)
	if len(envs) == 0 {
		t.Fatal("the relay holds no envelope of the space")
	}
	relay.Close()
	for _, env := range envs {
		tjk.Ingest(env) // in chain order per author: Envelopes scans (author, seq)
	}
	if _, err := tjk.GetRecord(api.RecordRef{Space: sp.ID, Record: "p1"}); err == nil {
		t.Fatal("TJK's device read a record of a space not released to its bureau")
	}
	for _, s := range tjk.ListSpaces() {
		if s.Name != "" {
			t.Fatalf("TJK's device learnt the space's name %q", s.Name)
		}
	}
	if hits := grepTree(t, m.tjk.Dir, []byte(canary)); len(hits) > 0 {
		t.Fatalf("canary found on TJK's disk after it was handed the envelopes: %v", hits)
	}
}

// TestLateEnrolmentAndWithdrawal: a KAZ device enrolled while a space
// released to KAZ exists gets its key and history by itself; withdrawing KAZ
// rotates the epoch key, and KAZ's devices neither receive nor can open what
// is written after.
func TestLateEnrolmentAndWithdrawal(t *testing.T) {
	if testing.Short() {
		t.Skip("real agents of three bureaus")
	}
	m := newTrustMesh(t)
	ctx := m.ctx
	sp, err := m.omn.Client().SpaceCreate(ctx, api.SpaceCreateRequest{Name: "op-south", ReleaseTo: []string{"KAZ"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		mustRecord(t, ctx, m.omn, sp.ID, fmt.Sprintf("r%d", i), "note", fmt.Sprintf("before %d", i))
	}
	kaz2 := m.add(t, "kaz2", "Айгерим Сейтова", false, m.kazKey)
	m.start(t, kaz2)
	waitValue(t, ctx, kaz2, sp.ID, "r9", "note", "before 9")
	if _, err := harness.WaitUntil(ctx, 90*time.Second, "the new KAZ device to converge", func() (bool, error) {
		return harness.Converged(ctx, sp.ID, m.omn, m.kaz, kaz2)
	}); err != nil {
		t.Fatal(err)
	}
	// Only OMN's devices may change the release list.
	if _, err := m.kaz.Client().SpaceWithdraw(ctx, api.SpaceBureauRequest{Space: sp.ID, Bureau: "KAZ"}); err == nil {
		t.Fatal("a KAZ device changed the release list of an OMN space")
	}
	after, err := m.omn.Client().SpaceWithdraw(ctx, api.SpaceBureauRequest{Space: sp.ID, Bureau: "KAZ"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(after.Release, []string{"OMN"}) {
		t.Fatalf("release after withdrawal = %v", after.Release)
	}
	const canary = "CANARY-after-withdrawal-91c2"
	mustRecord(t, ctx, m.omn, sp.ID, "late", "note", canary)
	omnDigest, err := m.omn.Client().SpaceDigest(ctx, api.SpaceRef{Space: sp.ID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := harness.WaitUntil(ctx, 90*time.Second, "the relay to hold OMN's new envelopes", func() (bool, error) {
		d, err := m.relay.Client().SpaceDigest(ctx, api.SpaceRef{Space: sp.ID})
		return err == nil && d.Envelopes == omnDigest.Envelopes, nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*harness.Node{m.kaz, kaz2} {
		moreRounds(t, ctx, n, 3)
		if _, err := n.Client().RecordGet(ctx, api.RecordRef{Space: sp.ID, Record: "late"}); err == nil {
			t.Fatalf("%s reads a record written after KAZ was withdrawn", n.Name)
		}
		if _, err := n.Client().RecordGet(ctx, api.RecordRef{Space: sp.ID, Record: "r9"}); err != nil {
			t.Fatalf("%s lost what it held before the withdrawal: %v", n.Name, err)
		}
	}
	kazIDs := []crypto.DeviceID{deviceOf(t, ctx, m.kaz), deviceOf(t, ctx, kaz2)}
	omnID := deviceOf(t, ctx, m.omn)
	for _, n := range []*harness.Node{m.relay, m.omn, m.kaz, m.tjk, kaz2} {
		if err := m.cl.Stop(n); err != nil {
			t.Fatal(err)
		}
	}
	spaceID, _ := crypto.ParseSpaceID(sp.ID)
	omn := openStopped(t, m.cl, m.omn)
	envs := envelopesOf(t, omn, spaceID)
	var lastEpoch crypto.KeyID
	for _, env := range envs {
		h, _ := crypto.ParseHeader(env)
		if h.Kind == crypto.KindChange && h.Author == omnID {
			lastEpoch = h.Epoch
		}
	}
	shares := shareRecipients(t, omn, spaceID)
	omn.Close()
	wrappedToKAZ := 0
	for epoch, to := range shares {
		if slices.Contains(to, kazIDs[0]) || slices.Contains(to, kazIDs[1]) {
			wrappedToKAZ++
			if epoch == lastEpoch {
				t.Fatalf("the epoch after the withdrawal (%s) was wrapped to a KAZ device: %v", epoch, to)
			}
		}
	}
	if wrappedToKAZ == 0 {
		t.Fatal("no epoch was ever wrapped to KAZ's devices: the check above proves nothing")
	}
	// Handed everything directly, a KAZ device still cannot open the new change.
	k2 := openStopped(t, m.cl, kaz2)
	for _, env := range envs {
		k2.Ingest(env)
	}
	if _, err := k2.GetRecord(api.RecordRef{Space: sp.ID, Record: "late"}); err == nil {
		t.Fatal("a KAZ device opened a change written after the withdrawal")
	}
	k2.Close()
	if hits := grepTree(t, kaz2.Dir, []byte(canary)); len(hits) > 0 {
		t.Fatalf("canary on a KAZ disk: %v", hits)
	}
}

// TestRevocation: a device revoked at the seqs an agent holds of it keeps its
// changes up to the cut-off everywhere; a change past the cut-off that one
// peer accepted before it learnt of the revocation (through the relay only)
// is dropped there too; the next write opens an epoch the revoked device
// never gets; and the revoked device, back online, gets nothing new and
// delivers nothing.
func TestRevocation(t *testing.T) {
	if testing.Short() {
		t.Skip("real agents")
	}
	cl, ctx := newCluster(t)
	add := func(name, officer string, relay bool) *harness.Node {
		n, err := cl.Add(ctx, name, officer, relay)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	relay := add("relay", "Relay", true)
	a1, a2, a3 := add("a1", "Amina", false), add("a2", "Boris", false), add("a3", "Chen (laptop lost)", false)
	// a4 never meets the mesh (another mesh key): bundles are all it gets.
	a4 := add("a4", "Dana (air-gapped)", false)
	island := filepath.Join(cl.Root, "island.key")
	if _, err := cl.CLI(ctx, "", "mesh-key", "new", "--out", island); err != nil {
		t.Fatal(err)
	}
	start := func(n *harness.Node, join ...*harness.Node) {
		t.Helper()
		var addrs []string
		for _, j := range join {
			addrs = append(addrs, j.Bind)
		}
		if err := cl.Start(ctx, n, "", addrs...); err != nil {
			t.Fatal(err)
		}
	}
	stop := func(ns ...*harness.Node) {
		t.Helper()
		for _, n := range ns {
			if err := cl.Stop(n); err != nil {
				t.Fatal(err)
			}
		}
	}
	start(relay)
	start(a1, relay)
	start(a2, relay)
	start(a3, relay)
	sp, err := a1.Client().SpaceCreate(ctx, api.SpaceCreateRequest{Name: "case"})
	if err != nil {
		t.Fatal(err)
	}
	mustRecord(t, ctx, a1, sp.ID, "r0", "f", "from a1")
	waitValue(t, ctx, a3, sp.ID, "r0", "f", "from a1")
	for i := 1; i <= 3; i++ {
		mustRecord(t, ctx, a3, sp.ID, fmt.Sprintf("k%d", i), "f", fmt.Sprintf("kept %d", i))
	}
	waitValue(t, ctx, a1, sp.ID, "k3", "f", "kept 3")
	waitValue(t, ctx, a2, sp.ID, "k3", "f", "kept 3")
	a3ID := deviceOf(t, ctx, a3)

	// The laptop writes once more; only a2 gets it before a1 revokes it.
	stop(a1, relay)
	mustRecord(t, ctx, a3, sp.ID, "k4", "f", "past the cut-off")
	waitValue(t, ctx, a2, sp.ID, "k4", "f", "past the cut-off")
	// The air-gapped device gets all of it, k4 included, by bundle from a3.
	if err := cl.Start(ctx, a4, island); err != nil {
		t.Fatal(err)
	}
	carryFile(t, ctx, cl, a3, a4, "a3-to-a4")
	waitValue(t, ctx, a4, sp.ID, "k4", "f", "past the cut-off")
	stop(a2, a3, a4)

	start(relay)
	start(a1, relay)
	var res api.RevokeResult
	if err := cl.CLIJSON(ctx, a1.Dir, &res, "revoke", "--bureau-key", cl.Bureau, a3ID.String()[:8]); err != nil {
		t.Fatal(err)
	}
	if res.Device != a3ID.String() || res.Cutoffs[sp.ID] == 0 {
		t.Fatalf("revoke result %+v", res)
	}
	mustRecord(t, ctx, a1, sp.ID, "after", "f", "written after the revocation")
	a1Digest, _ := a1.Client().SpaceDigest(ctx, api.SpaceRef{Space: sp.ID})
	if _, err := harness.WaitUntil(ctx, 90*time.Second, "the relay to hold a1's envelopes", func() (bool, error) {
		d, err := relay.Client().SpaceDigest(ctx, api.SpaceRef{Space: sp.ID})
		return err == nil && d.Envelopes == a1Digest.Envelopes, nil
	}); err != nil {
		t.Fatal(err)
	}
	// a4 learns of the revocation through a bundle alone.
	if err := cl.Start(ctx, a4, island); err != nil {
		t.Fatal(err)
	}
	carryFile(t, ctx, cl, a1, a4, "a1-to-a4")
	waitValue(t, ctx, a4, sp.ID, "after", "f", "written after the revocation")
	if _, err := a4.Client().RecordGet(ctx, api.RecordRef{Space: sp.ID, Record: "k4"}); err == nil {
		t.Fatal("a4 kept the revoked device's change past the cut-off after importing the revocation")
	}
	waitValue(t, ctx, a4, sp.ID, "k3", "f", "kept 3")
	stop(a4)
	stop(a1)

	// a2 learns of the revocation through the relay alone.
	start(a2, relay)
	waitValue(t, ctx, a2, sp.ID, "after", "f", "written after the revocation")
	if _, err := harness.WaitUntil(ctx, 90*time.Second, "a2 to drop the change past the cut-off", func() (bool, error) {
		_, err := a2.Client().RecordGet(ctx, api.RecordRef{Space: sp.ID, Record: "k4"})
		return err != nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		waitValue(t, ctx, a2, sp.ID, fmt.Sprintf("k%d", i), "f", fmt.Sprintf("kept %d", i))
	}
	start(a1, relay)
	if _, err := harness.WaitUntil(ctx, 90*time.Second, "a1 and a2 to converge", func() (bool, error) {
		return harness.Converged(ctx, sp.ID, a1, a2)
	}); err != nil {
		t.Fatal(err)
	}

	// The revoked laptop comes back: it authenticates to no one.
	start(a3, relay, a1)
	mustRecord(t, ctx, a3, sp.ID, "k5", "f", "from a revoked device")
	moreRounds(t, ctx, a1, 3)
	moreRounds(t, ctx, a2, 3)
	for _, n := range []*harness.Node{a1, a2} {
		if _, err := n.Client().RecordGet(ctx, api.RecordRef{Space: sp.ID, Record: "k5"}); err == nil {
			t.Fatalf("%s accepted a change from the revoked device", n.Name)
		}
	}
	if _, err := a3.Client().RecordGet(ctx, api.RecordRef{Space: sp.ID, Record: "after"}); err == nil {
		t.Fatal("the revoked device reads a change written after its revocation")
	}
	a1ID := deviceOf(t, ctx, a1)
	stop(relay, a1, a2, a3)

	spaceID, _ := crypto.ParseSpaceID(sp.ID)
	s1 := openStopped(t, cl, a1)
	envs := envelopesOf(t, s1, spaceID)
	shares := shareRecipients(t, s1, spaceID)
	s1.Close()
	var lastEpoch crypto.KeyID
	for _, env := range envs {
		h, _ := crypto.ParseHeader(env)
		if h.Kind == crypto.KindChange && h.Author == a1ID {
			lastEpoch = h.Epoch
		}
		if h.Author == a3ID && h.Seq > res.Cutoffs[sp.ID] {
			t.Fatalf("a1 holds the revoked device's seq %d, past its cut-off %d", h.Seq, res.Cutoffs[sp.ID])
		}
	}
	if slices.Contains(shares[lastEpoch], a3ID) {
		t.Fatal("the epoch after the revocation was wrapped to the revoked device")
	}
	if len(shares[lastEpoch]) == 0 {
		t.Fatal("the epoch after the revocation was wrapped to no one: was it rotated at all?")
	}
	// Handed a1's envelopes, the revoked device cannot open the new change.
	s3 := openStopped(t, cl, a3)
	for _, env := range envs {
		s3.Ingest(env)
	}
	if _, err := s3.GetRecord(api.RecordRef{Space: sp.ID, Record: "after"}); err == nil {
		t.Fatal("the revoked device opened a change written after its revocation")
	}
}
