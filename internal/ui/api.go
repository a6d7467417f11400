package ui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"fieldsync/agent/api"
)

// CodeAgentUnreachable is the page's error code when the agent does not
// answer (stopped, restarting).
const CodeAgentUnreachable = "agent_unreachable"

// method is one call the page makes: POST /api/NAME with a JSON body, passed
// to the agent's API.
type method func(ctx context.Context, cl *api.Client, body []byte) (any, error)

// decoded adapts an agent call taking a request of type T.
func decoded[T any](fn func(ctx context.Context, cl *api.Client, req T) (any, error)) method {
	return func(ctx context.Context, cl *api.Client, body []byte) (any, error) {
		var req T
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, &api.APIError{Status: http.StatusBadRequest, ErrorDetail: api.ErrorDetail{
				Code: api.CodeBadRequest, Message: fmt.Sprintf("malformed request: %v", err)}}
		}
		return fn(ctx, cl, req)
	}
}

// methods are the page's calls: reads, the search and resolve.
var methods = map[string]method{
	"status": func(ctx context.Context, cl *api.Client, _ []byte) (any, error) { return cl.Status(ctx) },
	"spaces": func(ctx context.Context, cl *api.Client, _ []byte) (any, error) { return cl.SpaceList(ctx) },
	"records": decoded(func(ctx context.Context, cl *api.Client, req api.SpaceRef) (any, error) {
		return cl.RecordList(ctx, req)
	}),
	"record": decoded(func(ctx context.Context, cl *api.Client, req api.RecordRef) (any, error) {
		return cl.RecordGet(ctx, req)
	}),
	"history": decoded(func(ctx context.Context, cl *api.Client, req api.RecordRef) (any, error) {
		return cl.History(ctx, req)
	}),
	"conflicts": decoded(func(ctx context.Context, cl *api.Client, req api.RecordRef) (any, error) {
		return cl.ConflictsShow(ctx, req)
	}),
	"conflicts-list": decoded(func(ctx context.Context, cl *api.Client, req api.ConflictsListRequest) (any, error) {
		return cl.ConflictsList(ctx, req)
	}),
	"find": decoded(func(ctx context.Context, cl *api.Client, req api.FindRequest) (any, error) {
		return cl.Find(ctx, req)
	}),
	"resolve": decoded(func(ctx context.Context, cl *api.Client, req api.ResolveRequest) (any, error) {
		if len(req.Dots) == 0 {
			return nil, &api.APIError{Status: http.StatusBadRequest, ErrorDetail: api.ErrorDetail{
				Code: api.CodeBadRequest, Message: "resolve names no values to replace", Hint: "reload the record and pick a value"}}
		}
		return cl.Resolve(ctx, req)
	}),
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	m, ok := methods[r.PathValue("method")]
	if !ok {
		writeJSON(w, http.StatusNotFound, api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeNotFound,
			Message: fmt.Sprintf("no page call %q", r.PathValue("method"))}})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeTooLarge,
			Message: fmt.Sprintf("request over %d bytes", maxRequestBytes)}})
		return
	}
	if len(body) == 0 {
		body = []byte("{}")
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	v, err := m(ctx, s.cl, body)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// writeError answers with the agent's error as it gave it (code, message,
// hint), or, when the agent did not answer, says so.
func writeError(w http.ResponseWriter, err error) {
	var ae *api.APIError
	if errors.As(err, &ae) {
		writeJSON(w, ae.Status, api.ErrorBody{Error: ae.ErrorDetail})
		return
	}
	d := api.ErrorDetail{Code: CodeAgentUnreachable, Message: err.Error(), Hint: "is the agent running? start it with `fieldsync agent`; this page retries"}
	if errors.Is(err, api.ErrAgentNotRunning) {
		d.Message = "agent not running"
	}
	writeJSON(w, http.StatusBadGateway, api.ErrorBody{Error: d})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeInternal, Message: err.Error()}})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

// serveEvents is the page's event stream (server-sent events): "changed"
// when the agent's data under view changed. The page names the space it
// shows (?space=ID); without one, every space is watched. Each stream polls
// the agent every PollInterval: the space list, and each watched space's
// envelope digest (docs/ui.md, "Live updates").
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	space := r.URL.Query().Get("space")
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n\n")
	fl.Flush()
	ctx := r.Context()
	last, lastErr := "", ""
	t := time.NewTicker(s.poll)
	defer t.Stop()
	for {
		fp, err := s.fingerprint(ctx, space)
		switch {
		case err != nil:
			if msg := err.Error(); msg != lastErr {
				lastErr = msg
				data, _ := json.Marshal(map[string]string{"message": msg})
				fmt.Fprintf(w, "event: agent-error\ndata: %s\n\n", data)
			}
		case last == "":
			last, lastErr = fp, ""
			fmt.Fprint(w, "event: ready\ndata: {}\n\n")
		case fp != last || lastErr != "":
			last, lastErr = fp, ""
			fmt.Fprint(w, "event: changed\ndata: {}\n\n")
		}
		fl.Flush()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// fingerprint is a hash of what the page may show of space (or of every
// space): the space list and the digests of the envelopes held. It changes
// when any change is written, synced or imported.
func (s *Server) fingerprint(ctx context.Context, space string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	spaces, err := s.cl.SpaceList(ctx)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	json.NewEncoder(h).Encode(spaces)
	for _, sp := range spaces {
		if space != "" && sp.ID != space {
			continue
		}
		d, err := s.cl.SpaceDigest(ctx, api.SpaceRef{Space: sp.ID})
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d %s\n", d.Space, d.Count, d.Envelopes)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
