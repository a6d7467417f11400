package ui

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"fieldsync/agent/api"
)

//go:embed static
var staticFS embed.FS

// TokenHeader carries the token on the page's API calls.
const TokenHeader = "X-Fieldsync-Token"

// DefaultListen is the address `fieldsync ui` listens on without --listen:
// loopback, a port the system picks.
const DefaultListen = "127.0.0.1:0"

// PollInterval is how often an open page's event stream asks the agent
// whether anything changed.
const PollInterval = time.Second

// maxRequestBytes bounds a page's API request (a resolve with a typed value
// is the largest).
const maxRequestBytes = 4 << 20

// securityHeaders go on every response: nothing but this server's own
// files, no inline script or style, no framing, no token in a Referer, no
// caching of case data, no type sniffing.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
		"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
	"X-Frame-Options":              "DENY",
	"X-Content-Type-Options":       "nosniff",
	"Referrer-Policy":              "no-referrer",
	"Cache-Control":                "no-store",
	"Cross-Origin-Opener-Policy":   "same-origin",
	"Cross-Origin-Resource-Policy": "same-origin",
}

// Server is one launch of the web view: a loopback listener, its token and
// the agent client it serves from.
type Server struct {
	cl    *api.Client
	ln    net.Listener
	token string
	hosts map[string]bool // accepted Host headers
	url   string
	index *template.Template
	poll  time.Duration
}

// CheckListen checks that addr is HOST:PORT with HOST a loopback address
// (127.0.0.0/8, ::1) or "localhost": the view serves case data and must not
// be reachable from the network.
func CheckListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: want HOST:PORT on a loopback address, e.g. %s: %v", addr, DefaultListen, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("--listen %q: bad port %q (0 lets the system pick one)", addr, port)
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("--listen %q: %q is not a loopback address: the web view serves case data and listens on 127.0.0.1 or ::1 only (e.g. --listen %s)", addr, host, DefaultListen)
	}
	return nil
}

// Listen checks addr (CheckListen), binds it and makes the launch's token.
// The server talks to the agent through cl.
func Listen(cl *api.Client, addr string) (*Server, error) {
	if err := CheckListen(addr); err != nil {
		return nil, err
	}
	if host, port, _ := net.SplitHostPort(addr); host == "localhost" {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	buf := make([]byte, 32) // 256 bits
	if _, err := rand.Read(buf); err != nil {
		return nil, fmt.Errorf("make the page token: %v", err)
	}
	index, err := template.ParseFS(staticFS, "static/index.html")
	if err != nil {
		return nil, fmt.Errorf("page template: %v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %v (pick another port with --listen 127.0.0.1:PORT, or 0 for any)", addr, err)
	}
	s := &Server{cl: cl, ln: ln, token: hex.EncodeToString(buf), index: index, poll: PollInterval}
	ap := netip.MustParseAddrPort(ln.Addr().String())
	hostport := ln.Addr().String()
	s.hosts = map[string]bool{hostport: true, net.JoinHostPort("localhost", strconv.Itoa(int(ap.Port()))): true}
	s.url = "http://" + hostport + "/?token=" + s.token
	return s, nil
}

// URL is the page's address, with the token: whoever has it can read and
// resolve the device's records while this launch runs.
func (s *Server) URL() string { return s.url }

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Token is the launch's token (hex, 256 bits).
func (s *Server) Token() string { return s.token }

// Close closes the listener of a server that is not serving (Serve closes
// it when its context ends).
func (s *Server) Close() error { return s.ln.Close() }

// Serve serves until ctx ends, then closes the listener and the open event
// streams.
func (s *Server) Serve(ctx context.Context) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(s.ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs.Shutdown(sctx)
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Handler is the server's HTTP handler: the checks every request passes,
// then the page, its files, the API calls and the event stream.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	files := http.FileServerFS(static)
	mux.HandleFunc("GET /{$}", s.serveIndex)
	mux.HandleFunc("GET /app.js", func(w http.ResponseWriter, r *http.Request) { files.ServeHTTP(w, r) })
	mux.HandleFunc("GET /app.css", func(w http.ResponseWriter, r *http.Request) { files.ServeHTTP(w, r) })
	mux.HandleFunc("GET /api/events", s.serveEvents)
	mux.HandleFunc("POST /api/{method}", s.serveAPI)
	mux.HandleFunc("GET /api/{method}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "POST")
		writeJSON(w, http.StatusMethodNotAllowed, api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeBadRequest, Message: "API calls are POSTs with the token header"}})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not found", http.StatusNotFound)
	})
	return s.guard(mux)
}

// guard makes the checks of every request before it reaches a handler: the
// Host header (DNS rebinding), the token, and for POST the token in its
// header, JSON, and no foreign Origin (CSRF).
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range securityHeaders {
			w.Header().Set(k, v)
		}
		if !s.hosts[strings.ToLower(r.Host)] {
			forbid(w, fmt.Sprintf("Host %q is not this server's address: open the URL `fieldsync ui` printed", r.Host))
			return
		}
		if o := r.Header.Get("Origin"); o != "" && !s.hosts[strings.ToLower(strings.TrimPrefix(o, "http://"))] {
			forbid(w, fmt.Sprintf("requests from origin %q are refused", o))
			return
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			// The page's address carries the token in its query; its
			// files and its event stream too (EventSource cannot set a
			// header).
			if !s.tokenOK(r.URL.Query().Get("token")) && !s.tokenOK(r.Header.Get(TokenHeader)) {
				forbid(w, "missing or wrong token: open the URL `fieldsync ui` printed (each launch has a new one)")
				return
			}
		case http.MethodPost:
			// Only the page's own script can set this header: a form
			// or a cross-origin request cannot (CSRF).
			if !s.tokenOK(r.Header.Get(TokenHeader)) {
				forbid(w, "missing or wrong token header: API calls come from the page itself")
				return
			}
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				forbid(w, fmt.Sprintf("Content-Type %q: API calls send JSON", ct))
				return
			}
		default:
			w.Header().Set("Allow", "GET, POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// tokenOK compares a presented token with the launch's in constant time.
func (s *Server) tokenOK(t string) bool {
	return len(t) == len(s.token) && subtle.ConstantTimeCompare([]byte(t), []byte(s.token)) == 1
}

func forbid(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusForbidden, api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeForbidden, Message: msg}})
}

// serveIndex serves the page; it holds the token for its script (in a meta
// element, not in a script: the policy allows no inline script).
func (s *Server) serveIndex(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := s.index.Execute(w, struct{ Token string }{s.token}); err != nil {
		http.Error(w, "page: "+err.Error(), http.StatusInternalServerError)
	}
}
