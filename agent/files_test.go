package agent

import (
	"errors"
	"os"
	"strings"
	"testing"

	"fieldsync/crypto"
)

// TestTruncatedAndCorruptFiles: every file of the data directory that the
// agent reads at start, cut short or garbled, gives an error that names the
// file and the problem — and a wrong passphrase stays distinct from a
// damaged keystore.
func TestTruncatedAndCorruptFiles(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	for _, tc := range []struct {
		name string
		file func(Layout) string
		mut  func([]byte) []byte
		want string // in the error
		is   error  // errors.Is, if set
	}{
		{"keystore truncated", Layout.Keystore, func(b []byte) []byte { return b[:len(b)/2] }, "keystore", crypto.ErrMalformed},
		{"keystore empty", Layout.Keystore, func(b []byte) []byte { return nil }, "keystore", crypto.ErrMalformed},
		{"certificate truncated", Layout.Cert, func(b []byte) []byte { return b[:len(b)/2] }, "cert.json", nil},
		{"certificate garbled", Layout.Cert, func(b []byte) []byte { return []byte(strings.Replace(string(b), "\"", "'", 3)) }, "cert.json", nil},
		{"trust list truncated", Layout.Trust, func(b []byte) []byte { return b[:len(b)/2] }, "trust.json", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
			p := tc.file(cfg.Layout)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, tc.mut(b), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = New(cfg)
			if err == nil {
				t.Fatal("opened with a damaged file")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not name %s: %v", tc.want, err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("error is not %v: %v", tc.is, err)
			}
			if errors.Is(err, crypto.ErrWrongPassphrase) {
				t.Fatalf("a damaged file reported as a wrong passphrase: %v", err)
			}
		})
	}
}
