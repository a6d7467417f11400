package ui_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/internal/ui"
)

// TestCheckListen: the view listens on loopback only.
func TestCheckListen(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:0", "127.0.0.1:8080", "127.3.2.1:0", "localhost:0", "[::1]:0"} {
		if err := ui.CheckListen(ok); err != nil {
			t.Errorf("CheckListen(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"0.0.0.0:0", ":0", ":8080", "[::]:0", "192.168.1.10:8080", "10.0.0.1:0", "example.org:80", "127.0.0.1", "127.0.0.1:99999", "127.0.0.1:http", ""} {
		err := ui.CheckListen(bad)
		if err == nil {
			t.Errorf("CheckListen(%q) accepted", bad)
			continue
		}
		if !strings.Contains(err.Error(), "--listen") {
			t.Errorf("CheckListen(%q): %v (does not name the flag)", bad, err)
		}
	}
	if _, err := ui.Listen(nil, "0.0.0.0:0"); err == nil {
		t.Error("Listen on 0.0.0.0 accepted")
	}
}

// TestSecurity: every request needs the launch's token, a Host naming the
// server's own loopback address (DNS rebinding), and, to change anything, a
// POST with the token in its header and no foreign Origin (CSRF); every
// answer forbids framing, inline script and foreign assets. Each case is an
// attack that gets case data (or resolves) without the check.
func TestSecurity(t *testing.T) {
	f := getFixture(t)
	srv, err := ui.Listen(f.a.Client(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	other, err := ui.Listen(f.a.Client(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	if len(srv.Token()) != 64 || srv.Token() == other.Token() {
		t.Fatalf("token %q (another launch's %q): want 256 random bits, new per launch", srv.Token(), other.Token())
	}
	if want := "http://" + srv.Addr() + "/?token=" + srv.Token(); srv.URL() != want {
		t.Fatalf("URL %q, want %q", srv.URL(), want)
	}
	base := "http://" + srv.Addr()
	_, port, _ := strings.Cut(srv.Addr(), ":")
	tok := srv.Token()
	wrong := tok[:63] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", tok[63])+1)%16])

	type req struct {
		name    string
		method  string
		path    string
		host    string
		headers map[string]string
		body    string
		want    int
	}
	spaces := `{}`
	jsonH := func(kv ...string) map[string]string {
		m := map[string]string{"Content-Type": "application/json"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	cases := []req{
		{name: "page with the token", method: "GET", path: "/?token=" + tok, want: 200},
		{name: "page without a token", method: "GET", path: "/", want: 403},
		{name: "page with a wrong token", method: "GET", path: "/?token=" + wrong, want: 403},
		{name: "page with another launch's token", method: "GET", path: "/?token=" + other.Token(), want: 403},
		{name: "page with a token prefix", method: "GET", path: "/?token=" + tok[:32], want: 403},
		{name: "script without a token", method: "GET", path: "/app.js", want: 403},
		{name: "script with the token", method: "GET", path: "/app.js?token=" + tok, want: 200},
		{name: "events without a token", method: "GET", path: "/api/events", want: 403},
		{name: "page, rebound DNS name", method: "GET", path: "/?token=" + tok, host: "evil.example:" + port, want: 403},
		{name: "page, no port in Host", method: "GET", path: "/?token=" + tok, host: "127.0.0.1", want: 403},
		{name: "page, another port in Host", method: "GET", path: "/?token=" + tok, host: "127.0.0.1:1", want: 403},
		{name: "page, localhost", method: "GET", path: "/?token=" + tok, host: "localhost:" + port, want: 200},
		{name: "API call with the header", method: "POST", path: "/api/spaces", headers: jsonH(ui.TokenHeader, tok), body: spaces, want: 200},
		{name: "API call, rebound DNS name", method: "POST", path: "/api/spaces", host: "evil.example:" + port, headers: jsonH(ui.TokenHeader, tok), body: spaces, want: 403},
		{name: "API call without a token", method: "POST", path: "/api/spaces", headers: jsonH(), body: spaces, want: 403},
		{name: "API call with a wrong token", method: "POST", path: "/api/spaces", headers: jsonH(ui.TokenHeader, wrong), body: spaces, want: 403},
		// A form on another site can send the token only if it knew it,
		// and then only in the URL or body: a POST needs the header.
		{name: "API call, token in the query (form CSRF)", method: "POST", path: "/api/resolve?token=" + tok, headers: jsonH(), body: `{}`, want: 403},
		{name: "API call as a form post", method: "POST", path: "/api/spaces", headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded", ui.TokenHeader: tok}, body: "a=b", want: 403},
		{name: "API call from a foreign origin", method: "POST", path: "/api/spaces", headers: jsonH(ui.TokenHeader, tok, "Origin", "http://evil.example"), body: spaces, want: 403},
		{name: "API call from a null origin", method: "POST", path: "/api/spaces", headers: jsonH(ui.TokenHeader, tok, "Origin", "null"), body: spaces, want: 403},
		{name: "API call from its own origin", method: "POST", path: "/api/spaces", headers: jsonH(ui.TokenHeader, tok, "Origin", "http://"+srv.Addr()), body: spaces, want: 200},
		{name: "API read as GET", method: "GET", path: "/api/spaces?token=" + tok, want: 405},
		{name: "other method", method: "PUT", path: "/api/spaces", headers: jsonH(ui.TokenHeader, tok), body: spaces, want: 405},
		{name: "unknown call", method: "POST", path: "/api/nope", headers: jsonH(ui.TokenHeader, tok), body: spaces, want: 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			if c.host != "" {
				r.Host = c.host
			}
			for k, v := range c.headers {
				r.Header.Set(k, v)
			}
			// Bounded: an event stream let through would never end.
			res, err := (&http.Client{Timeout: 20 * time.Second}).Do(r)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != c.want {
				t.Fatalf("%s %s: HTTP %d, want %d: %.300s", c.method, c.path, res.StatusCode, c.want, body)
			}
			for h, want := range map[string]string{
				"X-Frame-Options":        "DENY",
				"X-Content-Type-Options": "nosniff",
				"Referrer-Policy":        "no-referrer",
				"Cache-Control":          "no-store",
			} {
				if got := res.Header.Get(h); got != want {
					t.Errorf("%s: %q, want %q", h, got, want)
				}
			}
			csp := res.Header.Get("Content-Security-Policy")
			for _, d := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'"} {
				if !strings.Contains(csp, d) {
					t.Errorf("Content-Security-Policy %q lacks %s", csp, d)
				}
			}
			if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
				t.Errorf("Content-Security-Policy %q allows inline script", csp)
			}
			if c.want == 403 {
				if strings.Contains(string(body), f.space.ID) || strings.Contains(string(body), "fieldsync-token") {
					t.Errorf("a refused request got data: %.300s", body)
				}
				var eb api.ErrorBody
				if json.Unmarshal(body, &eb) != nil || eb.Error.Code != api.CodeForbidden || eb.Error.Message == "" {
					t.Errorf("refusal does not say why: %.300s", body)
				}
			}
			if c.want == 200 && c.path == "/api/spaces" && !strings.Contains(string(body), f.space.ID) {
				t.Errorf("the space list lacks the space: %.300s", body)
			}
		})
	}

	// The page has no inline script and loads nothing from elsewhere.
	res, err := http.Get(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, bad := range []string{"<script>", "http://", "https://", "//cdn", "onload=", "onclick="} {
		if strings.Contains(string(page), bad) {
			t.Errorf("the page holds %q:\n%s", bad, page)
		}
	}
	if !strings.Contains(string(page), `src="/app.js?token=`+url.QueryEscape(tok)+`"`) {
		t.Errorf("the page does not load its own script with the token:\n%s", page)
	}
}
