package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"fieldsync/internal/deptest"
)

// testSocket is a socket path whose check is only that the socket exists:
// the agent's Layout adds the ownership and mode checks (agent's
// socket_test.go covers them against a real data directory).
type testSocket string

func (s testSocket) Socket() string { return string(s) }

func (s testSocket) CheckSocket() error {
	_, err := os.Lstat(string(s))
	return err
}

// refusingSocket is a socket whose check always fails.
type refusingSocket struct{ testSocket }

func (refusingSocket) CheckSocket() error { return errors.New("not the user's socket") }

// testSocketDir is a socket path in a temporary directory short enough
// for the kernel's limit.
func testSocketDir(t *testing.T) testSocket {
	t.Helper()
	d, err := os.MkdirTemp("", "fsc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return testSocket(filepath.Join(d, "agent.sock"))
}

func clientCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// clientServe runs h on the layout's socket until the test ends.
func clientServe(t *testing.T, l testSocket, h http.Handler) {
	t.Helper()
	ln, err := net.Listen("unix", l.Socket())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

func TestDialNotRunning(t *testing.T) {
	l := testSocketDir(t)
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
	l := testSocketDir(t)
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

// A client makes its socket's check before every connection, not only when
// Dial looked: a socket that fails it gets no request.
func TestClientChecksEveryConnection(t *testing.T) {
	l := testSocketDir(t)
	var got atomic.Int64
	clientServe(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		json.NewEncoder(w).Encode(Status{})
	}))
	if _, err := NewClient(l).Status(clientCtx(t)); err != nil {
		t.Fatalf("a socket that passes its check: %v", err)
	}
	_, err := NewClient(refusingSocket{l}).Status(clientCtx(t))
	if err == nil || !strings.Contains(err.Error(), "refusing to talk to the agent socket") || got.Load() != 1 {
		t.Fatalf("a socket that fails its check: err = %v, requests = %d (want 1, from the first client)", err, got.Load())
	}
	if _, err := Dial(refusingSocket{l}); err == nil || errors.Is(err, ErrAgentNotRunning) {
		t.Fatalf("Dial of a socket that fails its check: err = %v", err)
	}
}

// A streamed call hands over each progress line, then decodes the result;
// an error line is an *APIError with the status its code travels with.
func TestCallProgress(t *testing.T) {
	type progress struct{ Done, Total int }
	l := testSocketDir(t)
	clientServe(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		enc := json.NewEncoder(w)
		for i := 1; i <= 3; i++ {
			enc.Encode(ProgressLine[progress]{Progress: &progress{i, 3}})
		}
		if r.URL.Path == "/refused" {
			enc.Encode(ProgressLine[progress]{Error: &ErrorDetail{Code: CodeRefused, Message: "bad signature"}})
			return
		}
		enc.Encode(ProgressLine[progress]{Result: json.RawMessage(`{"n":7}`)})
	}))
	c := NewClient(l)
	var seen []progress
	var res struct{ N int }
	if err := CallProgress(clientCtx(t), c, "/ok", struct{}{}, &res, func(p progress) { seen = append(seen, p) }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seen) != "[{1 3} {2 3} {3 3}]" || res.N != 7 {
		t.Fatalf("progress %v, result %+v", seen, res)
	}
	err := CallProgress(clientCtx(t), c, "/refused", struct{}{}, &res, func(progress) {})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != CodeRefused || ae.Status != http.StatusUnprocessableEntity || ae.Message != "bad signature" {
		t.Fatalf("refused: err = %#v", err)
	}
}

// Every code travels with one status, and a body-less response reads back
// as the code of its status (409 is conflict: ambiguous needs its body).
func TestCodesAndStatuses(t *testing.T) {
	for _, code := range []string{CodeBadRequest, CodeNotFound, CodeConflict, CodeTooLarge, CodeUnavailable, CodeInternal} {
		if got := CodeForStatus(HTTPStatus(code)); got != code {
			t.Errorf("%s: HTTP %d reads back as %s", code, HTTPStatus(code), got)
		}
	}
	for code, status := range map[string]int{CodeAmbiguous: 409, CodeForbidden: 403, CodeRefused: 422, "no-such-code": 500} {
		if got := HTTPStatus(code); got != status {
			t.Errorf("HTTPStatus(%s) = %d, want %d", code, got, status)
		}
	}
}

// The wire package stays a leaf: only the standard library.
func TestDeps(t *testing.T) {
	deptest.Check(t, "fieldsync/agent/api", func(string) bool { return false })
}
