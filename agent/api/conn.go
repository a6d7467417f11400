package api

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"
)

// Call's connections. http.Transport runs a reader and a writer goroutine
// per connection and hands every request and response between them and the
// caller: on a lone client that writes in a loop those hand-offs, each a
// thread woken, cost more than the request itself (docs/design.md §7,
// "Group commit": ~30–50 µs a request in one process, more between
// processes). Call instead writes the request and reads the response on
// the caller's goroutine over a kept connection, as HTTP/1.1 allows: one
// request at a time on each connection, the idle ones pooled (maxIdle).
//
// A pooled connection the agent has closed meanwhile (it restarted, or
// shut down) is found dead before it is used (alive, conn_unix.go) and
// replaced by a new one; a request is never sent twice: once written, a
// failure is the caller's to see, as with http.Transport for a POST.

// maxIdle bounds the connections kept between calls (as the transport's
// MaxIdleConns).
const maxIdle = 2

var errResponseTooLarge = errors.New("response too large")

// conn is one kept connection.
type conn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
	// deadline: the connection has a deadline set (from a context), to be
	// cleared before its next use without one.
	deadline bool
}

// getConn returns an idle connection that is still open, or a new one.
// reused reports which.
func (c *Client) getConn(ctx context.Context) (cn *conn, reused bool, err error) {
	for {
		c.mu.Lock()
		if n := len(c.idle); n > 0 {
			cn = c.idle[n-1]
			c.idle = c.idle[:n-1]
		}
		c.mu.Unlock()
		if cn == nil {
			break
		}
		if alive(cn.c) {
			return cn, true, nil
		}
		cn.c.Close()
		cn = nil
	}
	nc, err := c.dial(ctx)
	if err != nil {
		return nil, false, err
	}
	return &conn{c: nc, br: bufio.NewReader(nc), bw: bufio.NewWriter(nc)}, false, nil
}

// putConn keeps cn for the next call, or closes it when enough are kept.
func (c *Client) putConn(cn *conn) {
	c.mu.Lock()
	if len(c.idle) < maxIdle {
		c.idle = append(c.idle, cn)
		cn = nil
	}
	c.mu.Unlock()
	if cn != nil {
		cn.c.Close()
	}
}

// roundTrip sends hr and returns the response with its whole body (at most
// maxResponseBytes, else errResponseTooLarge). ctx bounds the exchange: its
// deadline is the connection's, and its end interrupts it.
func (c *Client) roundTrip(ctx context.Context, hr *http.Request) (*http.Response, []byte, error) {
	cn, _, err := c.getConn(ctx)
	if err != nil {
		return nil, nil, err
	}
	keep := false
	defer func() {
		if keep {
			c.putConn(cn)
		} else {
			cn.c.Close()
		}
	}()
	if d, ok := ctx.Deadline(); ok {
		cn.c.SetDeadline(d)
		cn.deadline = true
	} else if cn.deadline {
		cn.c.SetDeadline(time.Time{})
		cn.deadline = false
	}
	cancelled := false
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { cn.c.SetDeadline(time.Unix(1, 0)) })
		defer func() {
			if !stop() { // ctx ended during the exchange: the deadline is spoilt
				cancelled = true
				keep = false
			}
		}()
	}
	fail := func(err error) (*http.Response, []byte, error) {
		if cerr := ctx.Err(); cerr != nil {
			return nil, nil, cerr
		}
		return nil, nil, err
	}
	werr := hr.Write(cn.bw)
	if werr == nil {
		werr = cn.bw.Flush()
	}
	// An agent that refuses a request before reading all of it (one over
	// its size limit) answers and closes: the rest of the body then meets
	// a closed socket, and the answer is what the caller must see.
	res, err := http.ReadResponse(cn.br, hr)
	if err != nil {
		if werr != nil {
			return fail(werr)
		}
		return fail(err)
	}
	data, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBytes+1))
	res.Body.Close()
	if err != nil {
		return fail(err)
	}
	if len(data) > maxResponseBytes {
		return nil, nil, errResponseTooLarge
	}
	keep = !res.Close && !cancelled && werr == nil
	return res, data, nil
}
