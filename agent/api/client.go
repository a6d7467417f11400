package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// maxResponseBytes bounds what the client reads from the agent: a record's
// values are each ≤ 24 MiB (default), so this leaves room for several.
const maxResponseBytes = 1 << 30

// Client talks to a running agent over its Unix socket. It is safe for
// concurrent use.
type Client struct {
	socket string
	hc     *http.Client // streamed calls (CallProgress, backups)
	dial   func(ctx context.Context) (net.Conn, error)

	// Call's own connections (conn.go): one request at a time on each,
	// without http.Transport's reader and writer goroutines per connection.
	mu   sync.Mutex
	idle []*conn
}

// Socket is where a client finds the agent: the socket's path, and the
// check a client makes before it talks to it: the socket and its directory
// are this user's alone (agent.Layout is one). CheckSocket returns an error
// wrapping fs.ErrNotExist when there is no socket.
type Socket interface {
	Socket() string
	CheckSocket() error
}

// Dial connects to the agent listening on l. It returns an error wrapping
// ErrAgentNotRunning when the socket is absent or refuses connections.
func Dial(l Socket) (*Client, error) {
	sock := l.Socket()
	if _, err := os.Lstat(sock); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (no socket at %s)", ErrAgentNotRunning, sock)
	}
	// Before anything is sent (a mesh key, a passphrase-protected
	// operation): the socket and its directory are this user's alone.
	if err := l.CheckSocket(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w (no socket at %s)", ErrAgentNotRunning, sock)
		}
		return nil, fmt.Errorf("refusing to talk to the agent socket: %w", err)
	}
	conn, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w (nothing listens on %s)", ErrAgentNotRunning, sock)
		}
		return nil, fmt.Errorf("connect to agent at %s: %w", sock, err)
	}
	conn.Close()
	return NewClient(l), nil
}

// NewClient returns a client for the agent listening on l without checking
// that it is there. Each connection it opens first makes l's check of the
// socket, when there is one (Dial also checks before it returns).
func NewClient(l Socket) *Client {
	socket := l.Socket()
	dial := func(ctx context.Context) (net.Conn, error) {
		if _, err := os.Lstat(socket); err == nil {
			if err := l.CheckSocket(); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("refusing to talk to the agent socket: %w", err)
			}
		}
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}
	tr := &http.Transport{
		DialContext:     func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		MaxIdleConns:    2,
		IdleConnTimeout: 30 * time.Second,
	}
	return &Client{socket: socket, hc: &http.Client{Transport: tr}, dial: dial}
}

// Call sends one request: a POST with req as JSON body, or a GET when req is
// nil. A 2xx response is decoded into resp (if not nil); any other status is
// returned as *APIError.
func (c *Client) Call(ctx context.Context, path string, req, resp any) error {
	method := http.MethodGet
	var body io.Reader
	if req != nil {
		method = http.MethodPost
		b, err := json.Marshal(req)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	hr, err := http.NewRequestWithContext(ctx, method, "http://fieldsync"+path, body)
	if err != nil {
		return err
	}
	if req != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	res, data, err := c.roundTrip(ctx, hr)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w (nothing listens on %s)", ErrAgentNotRunning, c.socket)
		}
		if errors.Is(err, errResponseTooLarge) {
			return fmt.Errorf("agent response %s: over %d bytes", path, maxResponseBytes)
		}
		return fmt.Errorf("agent request %s: %w", path, err)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		var eb ErrorBody
		if json.Unmarshal(data, &eb) != nil || eb.Error.Code == "" {
			msg := strings.TrimSpace(string(data))
			if len(msg) > 200 {
				msg = msg[:200]
			}
			eb.Error = ErrorDetail{Code: CodeForStatus(res.StatusCode), Message: fmt.Sprintf("agent: HTTP %d: %s", res.StatusCode, msg)}
		}
		return &APIError{Status: res.StatusCode, ErrorDetail: eb.Error}
	}
	if resp == nil {
		return nil
	}
	if err := json.Unmarshal(data, resp); err != nil {
		return fmt.Errorf("agent response %s: %v", path, err)
	}
	return nil
}

// Status is `fieldsync status`.
func (c *Client) Status(ctx context.Context) (Status, error) {
	return call[Status](ctx, c, PathStatus, nil)
}

// Peers is `fieldsync peers`.
func (c *Client) Peers(ctx context.Context) ([]PeerInfo, error) {
	return call[[]PeerInfo](ctx, c, PathPeers, nil)
}

// SpaceCreate is `fieldsync space create`.
func (c *Client) SpaceCreate(ctx context.Context, req SpaceCreateRequest) (Space, error) {
	return call[Space](ctx, c, PathSpaceCreate, req)
}

// SpaceList is `fieldsync space list`.
func (c *Client) SpaceList(ctx context.Context) ([]Space, error) {
	return call[[]Space](ctx, c, PathSpaceList, nil)
}

// SpaceDigest is `fieldsync space digest`.
func (c *Client) SpaceDigest(ctx context.Context, req SpaceRef) (Digest, error) {
	return call[Digest](ctx, c, PathSpaceDigest, req)
}

// SpaceRelease is `fieldsync space release`.
func (c *Client) SpaceRelease(ctx context.Context, req SpaceBureauRequest) (Space, error) {
	return call[Space](ctx, c, PathSpaceRelease, req)
}

// SpaceWithdraw is `fieldsync space withdraw`.
func (c *Client) SpaceWithdraw(ctx context.Context, req SpaceBureauRequest) (Space, error) {
	return call[Space](ctx, c, PathSpaceWithdraw, req)
}

// call makes one call and decodes its result as an R.
func call[R any](ctx context.Context, c *Client, path string, req any) (R, error) {
	var r R
	return r, c.Call(ctx, path, req, &r)
}

// RecordPut is `fieldsync record put`.
func (c *Client) RecordPut(ctx context.Context, req RecordPutRequest) (Record, error) {
	return call[Record](ctx, c, PathRecordPut, req)
}

// RecordNew is `fieldsync record new`; req.Record must be empty.
func (c *Client) RecordNew(ctx context.Context, req RecordPutRequest) (Record, error) {
	return call[Record](ctx, c, PathRecordNew, req)
}

// RecordGet is `fieldsync record get`.
func (c *Client) RecordGet(ctx context.Context, req RecordRef) (Record, error) {
	return call[Record](ctx, c, PathRecordGet, req)
}

// RecordList is `fieldsync record list`.
func (c *Client) RecordList(ctx context.Context, req SpaceRef) ([]RecordSummary, error) {
	return call[[]RecordSummary](ctx, c, PathRecordList, req)
}

// RecordDelete is `fieldsync record delete`.
func (c *Client) RecordDelete(ctx context.Context, req RecordRef) (Record, error) {
	return call[Record](ctx, c, PathRecordDelete, req)
}

// SetOp is `fieldsync set add|remove`.
func (c *Client) SetOp(ctx context.Context, req SetOpRequest) (Record, error) {
	return call[Record](ctx, c, PathSetOp, req)
}

// NoteAdd is `fieldsync note add`.
func (c *Client) NoteAdd(ctx context.Context, req NoteAddRequest) (Record, error) {
	return call[Record](ctx, c, PathNoteAdd, req)
}

// ConflictsList is `fieldsync conflicts list`.
func (c *Client) ConflictsList(ctx context.Context, req ConflictsListRequest) ([]Conflict, error) {
	return call[[]Conflict](ctx, c, PathConflictsList, req)
}

// ConflictsShow is `fieldsync conflicts show`.
func (c *Client) ConflictsShow(ctx context.Context, req RecordRef) (ConflictsShow, error) {
	return call[ConflictsShow](ctx, c, PathConflictsShow, req)
}

// Resolve is `fieldsync resolve`.
func (c *Client) Resolve(ctx context.Context, req ResolveRequest) (Record, error) {
	return call[Record](ctx, c, PathResolve, req)
}

// History is `fieldsync history`.
func (c *Client) History(ctx context.Context, req RecordRef) ([]HistoryEntry, error) {
	return call[[]HistoryEntry](ctx, c, PathHistory, req)
}

// ProgressLine is one line of a streamed (progress) response, in NDJSON:
// exactly one of the fields is set; the last line holds the result or the
// error (docs/api.md, "Bundles").
type ProgressLine[P any] struct {
	Progress *P              `json:"progress,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    *ErrorDetail    `json:"error,omitempty"`
}

// CallProgress is Call for a method that can stream its progress (bundle
// export and import): with onProgress set, the request must ask for
// progress, and each progress line is handed to onProgress until the line
// with the result (decoded into resp) or the error. Without onProgress it is
// Call.
func CallProgress[P any](ctx context.Context, c *Client, path string, req, resp any, onProgress func(P)) error {
	if onProgress == nil {
		return c.Call(ctx, path, req, resp)
	}
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://fieldsync"+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", "application/json")
	res, err := c.hc.Do(hr)
	if err != nil {
		return fmt.Errorf("agent request %s: %w", path, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
		var eb ErrorBody
		if json.Unmarshal(data, &eb) != nil || eb.Error.Code == "" {
			eb.Error = ErrorDetail{Code: CodeForStatus(res.StatusCode), Message: fmt.Sprintf("agent: HTTP %d", res.StatusCode)}
		}
		return &APIError{Status: res.StatusCode, ErrorDetail: eb.Error}
	}
	dec := json.NewDecoder(io.LimitReader(res.Body, maxResponseBytes))
	for {
		var line ProgressLine[P]
		if err := dec.Decode(&line); err != nil {
			return fmt.Errorf("agent response %s: %v (did the agent stop?)", path, err)
		}
		switch {
		case line.Progress != nil:
			onProgress(*line.Progress)
		case line.Error != nil:
			status := http.StatusInternalServerError
			if line.Error.Code == CodeRefused {
				status = http.StatusUnprocessableEntity
			}
			return &APIError{Status: status, ErrorDetail: *line.Error}
		case line.Result != nil:
			return json.Unmarshal(line.Result, resp)
		}
	}
}
