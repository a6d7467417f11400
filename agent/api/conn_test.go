package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// serveCounting serves h on l and counts the connections it accepts; stop
// closes the server and every connection, as an agent that stops does.
func serveCounting(t testing.TB, l testSocket, h http.Handler) (conns *atomic.Int64, stop func()) {
	t.Helper()
	ln, err := net.Listen("unix", l.Socket())
	if err != nil {
		t.Fatal(err)
	}
	conns = new(atomic.Int64)
	srv := &http.Server{Handler: h, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return conns, func() { srv.Close() }
}

// Calls in a row share one connection; when the agent restarts, the kept
// connection is found closed and the next call opens a new one instead of
// failing, and every request reaches the agent exactly once.
func TestClientKeepsConnection(t *testing.T) {
	l := testSocketDir(t)
	var reqs atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs.Add(1)
		json.NewEncoder(w).Encode(Status{UnsyncedLocal: int(reqs.Load())})
	})
	conns, stop := serveCounting(t, l, h)
	c := NewClient(l)
	for i := range 20 {
		if st, err := c.Status(clientCtx(t)); err != nil || st.UnsyncedLocal != i+1 {
			t.Fatalf("call %d: %+v, %v", i, st, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("20 calls in a row opened %d connections, want 1", n)
	}
	stop()
	conns2, _ := serveCounting(t, l, h) // the restarted agent, same socket
	if _, err := c.Status(clientCtx(t)); err != nil {
		t.Fatalf("first call after the agent restarted: %v", err)
	}
	if conns2.Load() != 1 || reqs.Load() != 21 {
		t.Fatalf("after the restart: %d connections, %d requests in all; want 1 and 21", conns2.Load(), reqs.Load())
	}
}

// A context that ends while the agent works interrupts the call at once,
// and its connection, whose response is still to come, is not reused.
func TestClientCallCancelled(t *testing.T) {
	l := testSocketDir(t)
	release := make(chan struct{})
	var reqs atomic.Int64
	conns, _ := serveCounting(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if reqs.Add(1) == 1 {
			<-release
		}
		json.NewEncoder(w).Encode(Status{UnsyncedLocal: 7})
	}))
	defer close(release)
	c := NewClient(l)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := c.Status(ctx); errc <- err }()
	for reqs.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: err = %v, want context.Canceled", err)
	}
	if st, err := c.Status(clientCtx(t)); err != nil || st.UnsyncedLocal != 7 {
		t.Fatalf("call after a cancelled one: %+v, %v", st, err)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2: the cancelled call's must not be reused", n)
	}
}

// A connection that ends after the request was sent fails the call: it is
// not sent again (the agent may have acted on it).
func TestClientNeverResends(t *testing.T) {
	l := testSocketDir(t)
	var reqs atomic.Int64
	serveCounting(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs.Add(1)
		cn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			cn.Close() // the agent died before it answered
		}
	}))
	c := NewClient(l)
	if _, err := c.RecordPut(clientCtx(t), RecordPutRequest{Space: "s", Record: "r"}); err == nil {
		t.Fatal("a call whose connection ended unanswered succeeded")
	}
	if n := reqs.Load(); n != 1 {
		t.Fatalf("the request reached the agent %d times, want once", n)
	}
}

// BenchmarkClientCall: one small POST and its answer on a kept connection,
// through Call (the request written and the response read on the caller's
// goroutine) and through http.Transport (its reader and writer goroutines
// per connection, as Call did before), against one trivial server in the
// same process. The difference is the client's own cost per request
// (docs/design.md §7, "Group commit").
func BenchmarkClientCall(b *testing.B) {
	l := testSocket(shortSocket(b))
	serveCounting(b, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req RecordPutRequest
		json.NewDecoder(r.Body).Decode(&req)
		json.NewEncoder(w).Encode(Record{Space: req.Space, ID: req.Record})
	}))
	c := NewClient(l)
	req := RecordPutRequest{Space: "s", Record: "r", Fields: []FieldValue{{Name: "visit_note", Value: "أمينة market حلب clinic #0042"}}}
	ctx := context.Background()
	b.Run("call", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.RecordPut(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("transport", func(b *testing.B) {
		for b.Loop() {
			body, _ := json.Marshal(req)
			hr, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://fieldsync"+PathRecordPut, bytes.NewReader(body))
			hr.Header.Set("Content-Type", "application/json")
			res, err := c.hc.Do(hr)
			if err != nil {
				b.Fatal(err)
			}
			var out Record
			data, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if err := json.Unmarshal(data, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func shortSocket(tb testing.TB) string {
	d, err := os.MkdirTemp("", "fsb")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(d) })
	return filepath.Join(d, "agent.sock")
}

// An agent that refuses a request too large answers before it has read the
// body, and closes: the client reports that answer (too_large), not the
// broken pipe its unsent rest of the body met.
func TestClientRequestTooLarge(t *testing.T) {
	l := testSocketDir(t)
	serveCounting(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req RecordPutRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<10)).Decode(&req); err != nil {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			json.NewEncoder(w).Encode(ErrorBody{Error: ErrorDetail{Code: CodeTooLarge, Message: "request larger than 1024 bytes"}})
			return
		}
		json.NewEncoder(w).Encode(Record{})
	}))
	c := NewClient(l)
	big := RecordPutRequest{Space: "s", Record: "r", Fields: []FieldValue{{Name: "f", Value: string(bytes.Repeat([]byte("x"), 8<<20))}}}
	for range 2 { // the second on a new connection: the first was closed
		_, err := c.RecordPut(clientCtx(t), big)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Code != CodeTooLarge {
			t.Fatalf("request over the agent's limit: err = %v, want the agent's too_large answer", err)
		}
	}
	if _, err := c.RecordPut(clientCtx(t), RecordPutRequest{Space: "s", Record: "r"}); err != nil {
		t.Fatalf("a small request after: %v", err)
	}
}
