package agent

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fieldsync/crypto"
)

// clientTestDir is a temporary data directory whose socket path fits the limit.
func clientTestDir(t *testing.T) Layout {
	t.Helper()
	d, err := os.MkdirTemp("", "fsc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return Layout{Dir: d}
}

// clientServe runs h on the layout's socket until the test ends.
func clientServe(t *testing.T, l Layout, h http.Handler) {
	t.Helper()
	ln, err := net.Listen("unix", l.Socket())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

func clientCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestDialNotRunning(t *testing.T) {
	l := clientTestDir(t)
	if _, err := Dial(l); !errors.Is(err, ErrAgentNotRunning) {
		t.Fatalf("no socket: err = %v, want ErrAgentNotRunning", err)
	}
	// A stale socket file that nothing listens on.
	ln, err := net.Listen("unix", l.Socket())
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(l.Socket()); err != nil {
		t.Fatalf("stale socket missing: %v", err)
	}
	if _, err := Dial(l); !errors.Is(err, ErrAgentNotRunning) {
		t.Fatalf("stale socket: err = %v, want ErrAgentNotRunning", err)
	}
}

func TestClientCalls(t *testing.T) {
	l := clientTestDir(t)
	mux := http.NewServeMux()
	mux.HandleFunc(PathStatus, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "want GET", http.StatusMethodNotAllowed)
			return
		}
		json.NewEncoder(w).Encode(Status{Device: DeviceInfo{ID: "abcdef", Role: "officer"}, UnsyncedLocal: 3})
	})
	mux.HandleFunc(PathRecordGet, func(w http.ResponseWriter, r *http.Request) {
		var ref RecordRef
		if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&ref) != nil {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		if ref.Record != "r1" {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(ErrorBody{Error: ErrorDetail{Code: CodeNotFound, Message: "no record " + ref.Record, Hint: "see record list"}})
			return
		}
		json.NewEncoder(w).Encode(Record{Space: ref.Space, ID: ref.Record, Fields: map[string]Field{
			"name": {Value: "أمينة", Siblings: []Sibling{{Value: "أمينة", Author: "dev1", Dot: "dev1:1"}}},
		}})
	})
	mux.HandleFunc(PathHistory, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError) // not an ErrorBody
	})
	clientServe(t, l, mux)

	c, err := Dial(l)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(clientCtx(t))
	if err != nil || st.Device.ID != "abcdef" || st.UnsyncedLocal != 3 {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	rec, err := c.RecordGet(clientCtx(t), RecordRef{Space: "s", Record: "r1"})
	if err != nil || rec.Fields["name"].Value != "أمينة" || rec.Fields["name"].Siblings[0].Dot != "dev1:1" {
		t.Fatalf("RecordGet = %+v, %v", rec, err)
	}
	_, err = c.RecordGet(clientCtx(t), RecordRef{Space: "s", Record: "nope"})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != CodeNotFound || ae.Status != 404 || ae.Hint != "see record list" || ae.Error() != "no record nope" {
		t.Fatalf("missing record: err = %#v", err)
	}
	_, err = c.History(clientCtx(t), RecordRef{Space: "s", Record: "r1"})
	if !errors.As(err, &ae) || ae.Code != CodeInternal || !strings.Contains(ae.Message, "boom") {
		t.Fatalf("plain 500: err = %#v", err)
	}
	_, err = c.Peers(clientCtx(t)) // unknown path: 404 without an ErrorBody
	if !errors.As(err, &ae) || ae.Code != CodeNotFound {
		t.Fatalf("unknown path: err = %#v", err)
	}
}

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
