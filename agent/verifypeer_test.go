package agent

import (
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"fieldsync/crypto"
	fsync "fieldsync/sync"
)

// TestVerifyPeerClockBehind: a peer certificate that starts in the future
// by this device's clock is accepted at the stream (the clock is the
// likelier fault); an expired one, or one from an untrusted bureau, is not.
func TestVerifyPeerClockBehind(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	other := newTestBureau(t, "XXX")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	peer, _ := crypto.NewIdentity(rand.Reader)
	req := crypto.NewRequest(peer, crypto.NameCommitment("Boris", [32]byte{}))
	now := time.Now()
	try := func(b *testBureau, notBefore, notAfter time.Time) error {
		cert, err := b.b.Issue(req, crypto.RoleOfficer, notBefore, notAfter)
		if err != nil {
			t.Fatal(err)
		}
		if cert, err = cert.Countersign(peer); err != nil {
			t.Fatal(err)
		}
		tr := fsync.Transcript{Label: "fieldsync", Initiator: fsync.PeerID(peer.ID()), Responder: fsync.PeerID(a.dev)}
		rand.Read(tr.InitiatorNonce[:])
		rand.Read(tr.ResponderNonce[:])
		sig := crypto.SignChallenge(peer, crypto.Transcript{Label: tr.Label, Initiator: peer.ID(), Responder: a.dev,
			InitiatorNonce: tr.InitiatorNonce, ResponderNonce: tr.ResponderNonce}, crypto.SideInitiator)
		_, err = (syncAdapter{a}).VerifyPeer(cert.MarshalBinary(), tr, fsync.SideInitiator, sig)
		return err
	}
	if err := try(omn, now.Add(48*time.Hour), now.Add(365*24*time.Hour)); err != nil {
		t.Fatalf("future-dated certificate refused: %v", err)
	}
	if err := try(omn, now.Add(-48*time.Hour), now.Add(-time.Hour)); !isSyncReject(err, RejectExpired) {
		t.Fatalf("expired certificate: %v", err)
	}
	if err := try(other, now.Add(-time.Hour), now.Add(time.Hour)); !isSyncReject(err, RejectUntrusted) {
		t.Fatalf("untrusted bureau: %v", err)
	}
}

func isSyncReject(err error, reason string) bool {
	var re *fsync.RejectError
	return errors.As(err, &re) && re.Reason == reason
}
