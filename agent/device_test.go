package agent

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fieldsync/crypto"
)

func TestDeviceFile(t *testing.T) {
	l := Layout{Dir: t.TempDir()}
	if _, err := LoadDevice(l); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("no device: err = %v, want ErrNotInitialized", err)
	}
	id, err := crypto.NewIdentity(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := SaveDevice(l, id.Public()); err != nil {
		t.Fatal(err)
	}
	got, err := LoadDevice(l)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID() != id.ID() || !got.SignKey.Equal(id.Public().SignKey) || got.AgreeKey != id.Public().AgreeKey {
		t.Fatalf("round trip: got %v, want %v", got.ID(), id.ID())
	}
	// An ID that does not match the key is refused.
	data, _ := os.ReadFile(l.Device())
	var df DeviceFile
	json.Unmarshal(data, &df)
	other, _ := crypto.NewIdentity(rand.Reader)
	df.ID = other.ID().String()
	data, _ = json.Marshal(df)
	os.WriteFile(l.Device(), data, 0o644)
	if _, err := LoadDevice(l); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched id: err = %v", err)
	}
	for _, bad := range []string{"", "{", `{"version":2}`, `{"version":1,"sign_key":"AAAA"}`, strings.Repeat(" ", maxDeviceFile+1)} {
		os.WriteFile(filepath.Join(l.Dir, "device.json"), []byte(bad), 0o644)
		if _, err := LoadDevice(l); err == nil {
			t.Errorf("LoadDevice accepted %.20q", bad)
		}
	}
}
