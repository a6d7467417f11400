package crypto

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// Version 2 certificates: the device's countersignature binds the
// enrollment to this bureau and these keys; nobody else can make it.
func TestCertificateCountersigned(t *testing.T) {
	w := newWorld(t)
	mid := t0.Add(24 * time.Hour)
	v2 := must(w.aliceCert.Countersign(w.alice))
	if !v2.Countersigned() || v2.Version() != 2 || w.aliceCert.Countersigned() || w.aliceCert.Version() != 1 {
		t.Fatal("versions")
	}
	if !bytes.Equal(v2.BureauSigned(), w.aliceCert.MarshalBinary()) {
		t.Fatal("the bureau-signed bytes changed by countersigning")
	}
	bin := v2.MarshalBinary()
	if string(bin[:5]) != "FSCT\x02" || !bytes.Equal(bin[5:len(bin)-SignatureSize], w.aliceCert.MarshalBinary()) {
		t.Fatal("version 2 layout")
	}
	for _, data := range [][]byte{bin, v2.Marshal()} {
		c := must(ParseCertificate(data))
		if !c.Countersigned() || !bytes.Equal(c.MarshalBinary(), bin) {
			t.Fatal("round trip")
		}
		if err := c.Verify(w.trust, mid); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(string(v2.Marshal()), `"fieldsync-certificate-v2"`) {
		t.Fatal("cert.json format of version 2")
	}
	// Only the certified device can countersign.
	if _, err := w.aliceCert.Countersign(w.bob); err == nil {
		t.Fatal("bob countersigned alice's certificate")
	}
	// A countersignature by another key does not parse.
	forged := append([]byte("FSCT\x02"), w.aliceCert.MarshalBinary()...)
	forged = append(forged, signCtx(w.bob.sign, w.aliceCert.MarshalBinary(), ctxEnrollment)...)
	wantErr(t, must2(ParseCertificate(forged)), ErrSignature)
	// Alice's countersignature for OMN does not carry over to KAZ's
	// certificate of her keys (foreignCert).
	reused := append([]byte("FSCT\x02"), w.foreignCert.MarshalBinary()...)
	reused = append(reused, bin[len(bin)-SignatureSize:]...)
	wantErr(t, must2(ParseCertificate(reused)), ErrSignature)
	// A countersignature in another domain (the request's) does not parse.
	other := append([]byte("FSCT\x02"), w.aliceCert.MarshalBinary()...)
	other = append(other, signCtx(w.alice.sign, w.aliceCert.MarshalBinary(), ctxRequest)...)
	wantErr(t, must2(ParseCertificate(other)), ErrSignature)
	// Every flipped byte is refused, none panics.
	for i := range bin {
		b := bytes.Clone(bin)
		b[i] ^= 0x20
		if _, err := ParseCertificate(b); err == nil {
			t.Fatalf("byte %d flipped: accepted", i)
		}
	}
	for n := range len(bin) {
		if _, err := ParseCertificate(bin[:n]); err == nil {
			t.Fatalf("cut at %d: accepted", n)
		}
	}
	// Nested version 2 is not a version 1 body.
	nested := append([]byte("FSCT\x02"), bin...)
	nested = append(nested, bin[len(bin)-SignatureSize:]...)
	if _, err := ParseCertificate(nested); err == nil {
		t.Fatal("nested version 2 accepted")
	}
	// A field changed after parsing fails Verify.
	c := must(ParseCertificate(bin))
	c.NotAfter = c.NotAfter.Add(time.Hour)
	wantErr(t, c.Verify(w.trust, mid), ErrSignature)
	// JSON whose format disagrees with the binary.
	j := strings.Replace(string(v2.Marshal()), "fieldsync-certificate-v2", "fieldsync-certificate-v1", 1)
	if _, err := ParseCertificate([]byte(j)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("json format v1 over a version 2 binary: %v", err)
	}
}

func must2[T any](_ T, err error) error { return err }
