// Package harness runs fieldsync agents as real processes of the fieldsync
// binary on 127.0.0.1, each in its own data directory, and drives them
// through the binary's own commands, the way an operator would. The demo,
// the agent-layer benchmark and the end-to-end tests share it.
package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"fieldsync/agent/api"
	"fieldsync/internal/datadir"
	"fieldsync/internal/platform"
)

// Cluster is a set of devices enrolled by one bureau, sharing a mesh key,
// under one root directory.
type Cluster struct {
	Exe     string // the fieldsync binary
	Root    string // working directory: passphrase, bureau key, mesh key, data dirs, logs
	Bureau  string // the bureau key file
	MeshKey string // the mesh key file
	Env     []string
	Nodes   map[string]*Node
}

// Node is one device and, while running, its agent process.
type Node struct {
	Name  string
	Dir   string // data directory
	Bind  string // 127.0.0.1:port for memberlist and sync
	Relay bool
	// Env is added to this node's agent environment (after the cluster's),
	// e.g. FIELDSYNC_CHAOS_FILE for a binary built with fieldsync_chaos.
	Env []string
	// Args are added to this node's `fieldsync agent` flags, e.g.
	// --metrics-addr 127.0.0.1:PORT.
	Args []string
	// Netns, if set, runs the agent in that network namespace (`ip netns
	// exec`, which execs the agent: the pid is still the agent's). Its API
	// socket is a file in the data directory, reachable from the test.
	Netns string

	cmd     *exec.Cmd
	rebinds int // times Start took another port after a bind failed
	exited  chan error
	log     *os.File
}

// New prepares a cluster under root: a passphrase file, a bureau and a mesh key.
func New(ctx context.Context, exe, root, bureau string) (*Cluster, error) {
	c := &Cluster{Exe: exe, Root: root, Nodes: map[string]*Node{}, Env: []string{"FIELDSYNC_TEST_KDF=1"}}
	if err := os.WriteFile(c.passphrase(), []byte("harness passphrase, never use it\n"), 0o600); err != nil {
		return nil, err
	}
	c.Bureau = filepath.Join(root, strings.ToLower(bureau)+".bureau")
	c.MeshKey = filepath.Join(root, "mesh.key")
	if _, err := c.CLI(ctx, "", "bureau", "init", "--name", bureau, "--out", c.Bureau); err != nil {
		return nil, err
	}
	if _, err := c.CLI(ctx, "", "mesh-key", "new", "--out", c.MeshKey); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Cluster) passphrase() string { return filepath.Join(c.Root, "passphrase") }

// CLI runs one fieldsync command (with dir as --data-dir when not empty)
// and returns its standard output.
func (c *Cluster) CLI(ctx context.Context, dir string, args ...string) (string, error) {
	full := []string{"--passphrase-file", c.passphrase(), "--bureau-passphrase-file", c.passphrase()}
	if dir != "" {
		full = append(full, "--data-dir", dir)
	}
	cmd := exec.CommandContext(ctx, c.Exe, append(full, args...)...)
	cmd.Env = append(os.Environ(), c.Env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("fieldsync %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// CLIJSON runs a command with --json and decodes its output into v.
func (c *Cluster) CLIJSON(ctx context.Context, dir string, v any, args ...string) error {
	out, err := c.CLI(ctx, dir, append([]string{"--json"}, args...)...)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(out), v)
}

// FreeAddr returns a 127.0.0.1 address whose port is free, for TCP and UDP
// (memberlist binds both), at the moment. It picks below Linux's ephemeral
// range (32768 and up), where the kernel hands out ports for outgoing
// connections and for ":0" listeners: a port chosen there could be taken
// by any connection before the agent binds it. Ports already handed out by
// this process are not given twice.
func FreeAddr() (string, error) {
	freeMu.Lock()
	defer freeMu.Unlock()
	for range 200 {
		port := 20000 + rand.IntN(12000)
		if freeGiven[port] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		freeGiven[port] = true
		return addr, nil
	}
	return "", errors.New("no free port found on 127.0.0.1")
}

var (
	freeMu    sync.Mutex
	freeGiven = map[int]bool{}
)

// Add initialises and enrolls a device (an officer, or a relay).
func (c *Cluster) Add(ctx context.Context, name, officer string, relay bool) (*Node, error) {
	bind, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	n := &Node{Name: name, Dir: filepath.Join(c.Root, name), Bind: bind, Relay: relay}
	args := []string{"init", "--officer", officer, "--bureau-key", c.Bureau, "--mesh-key", c.MeshKey}
	if relay {
		args = append(args, "--role", "relay")
	}
	if _, err := c.CLI(ctx, n.Dir, args...); err != nil {
		return nil, err
	}
	c.Nodes[name] = n
	return n, nil
}

// AddBureau makes another bureau key under the root and exports its public
// part: it returns the key file and the public file.
func (c *Cluster) AddBureau(ctx context.Context, name string) (key, pub string, err error) {
	key = filepath.Join(c.Root, strings.ToLower(name)+".bureau")
	pub = filepath.Join(c.Root, strings.ToLower(name)+".pub")
	if _, err := c.CLI(ctx, "", "bureau", "init", "--name", name, "--out", key); err != nil {
		return "", "", err
	}
	if _, err := c.CLI(ctx, "", "bureau", "export", "--out", pub, key); err != nil {
		return "", "", err
	}
	return key, pub, nil
}

// BureauPub exports the cluster's own bureau's public part (once) and
// returns its file, for other bureaus' devices to trust.
func (c *Cluster) BureauPub(ctx context.Context) (string, error) {
	pub := strings.TrimSuffix(c.Bureau, ".bureau") + ".pub"
	if _, err := os.Stat(pub); err == nil {
		return pub, nil
	}
	if _, err := c.CLI(ctx, "", "bureau", "export", "--out", pub, c.Bureau); err != nil {
		return "", err
	}
	return pub, nil
}

// AddEnrolled initialises a device enrolled by bureauKey (any bureau's key
// file) and makes it trust the bureaus whose public files are in trust.
func (c *Cluster) AddEnrolled(ctx context.Context, name, officer string, relay bool, bureauKey string, trust ...string) (*Node, error) {
	bind, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	n := &Node{Name: name, Dir: filepath.Join(c.Root, name), Bind: bind, Relay: relay}
	args := []string{"init", "--officer", officer, "--bureau-key", bureauKey, "--mesh-key", c.MeshKey}
	if relay {
		args = append(args, "--role", "relay")
	}
	if _, err := c.CLI(ctx, n.Dir, args...); err != nil {
		return nil, err
	}
	for _, pub := range trust {
		if _, err := c.CLI(ctx, n.Dir, "trust", "add", pub); err != nil {
			return nil, err
		}
	}
	c.Nodes[name] = n
	return n, nil
}

// Passphrase is the passphrase every keystore and bureau file of the
// cluster uses (tests open stopped nodes' stores with it).
func (c *Cluster) Passphrase() []byte {
	b, _ := os.ReadFile(c.passphrase())
	return bytes.TrimSuffix(b, []byte("\n"))
}

// Client is a local API client for the node's agent.
func (n *Node) Client() *api.Client {
	return api.NewClient(datadir.Layout{Dir: n.Dir})
}

// Running reports whether the node's agent process is running.
func (n *Node) Running() bool { return n.cmd != nil }

// Start runs `fieldsync agent` for the node and waits until its API answers.
// meshKey overrides the cluster's mesh key file when not empty (a node with
// another key is cut off from the mesh).
func (c *Cluster) Start(ctx context.Context, n *Node, meshKey string, join ...string) error {
	args := []string{"--data-dir", n.Dir, "--passphrase-file", c.passphrase()}
	if meshKey != "" {
		args = append(args, "--mesh-key-file", meshKey)
	}
	args = append(args, "agent", "--bind", n.Bind, "--profile", "local", "--log-level", "warn")
	if n.Relay {
		args = append(args, "--relay")
	}
	for _, j := range join {
		args = append(args, "--join", j)
	}
	args = append(args, n.Args...)
	log, err := os.OpenFile(filepath.Join(c.Root, n.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	n.log = log
	if n.Netns != "" {
		n.cmd = exec.Command("ip", append([]string{"netns", "exec", n.Netns, c.Exe}, args...)...)
	} else {
		n.cmd = exec.Command(c.Exe, args...)
	}
	n.cmd.Env = append(append(os.Environ(), c.Env...), n.Env...)
	n.cmd.Stdout, n.cmd.Stderr = log, log
	leash, err := platform.PrepareChild(n.cmd) // the agent dies with the test
	if err != nil {
		return err
	}
	if err := n.cmd.Start(); err != nil {
		leash.Release()
		n.cmd = nil
		return err
	}
	leash.Started(n.cmd.Process.Pid)
	n.exited = make(chan error, 1)
	go func(cmd *exec.Cmd, ch chan error) {
		err := cmd.Wait()
		leash.Release()
		ch <- err
	}(n.cmd, n.exited)
	cl := n.Client()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := cl.Status(ctx); err == nil {
			return nil
		}
		select {
		case err := <-n.exited:
			n.cmd = nil
			b, _ := os.ReadFile(log.Name())
			if bytes.Contains(b, []byte("address already in use")) && n.rebinds < 3 && n.Netns == "" {
				// Another process took the port between FreeAddr and
				// the bind: take another one (peers learn it through
				// memberlist; later joins read n.Bind).
				if addr, ferr := FreeAddr(); ferr == nil {
					n.rebinds++
					n.Bind = addr
					log.Close()
					return c.Start(ctx, n, meshKey, join...)
				}
			}
			return fmt.Errorf("agent %s exited (%v): %s", n.Name, err, b)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent %s did not start (log: %s)", n.Name, log.Name())
		}
	}
}

// Stop ends the node's agent with SIGTERM and waits for it to exit.
func (c *Cluster) Stop(n *Node) error {
	return c.signal(n, syscall.SIGTERM)
}

// Kill ends the node's agent with SIGKILL.
func (c *Cluster) Kill(n *Node) error {
	return c.signal(n, syscall.SIGKILL)
}

func (c *Cluster) signal(n *Node, sig syscall.Signal) error {
	if n.cmd == nil {
		return nil
	}
	n.cmd.Process.Signal(sig)
	var err error
	select {
	case err = <-n.exited:
	case <-time.After(30 * time.Second):
		n.cmd.Process.Kill()
		err = <-n.exited
	}
	n.cmd = nil
	n.log.Close()
	if sig == syscall.SIGKILL {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 0 {
		return nil
	}
	return err
}

// StopAll stops every running agent.
func (c *Cluster) StopAll() {
	for _, n := range c.Nodes {
		c.Stop(n)
	}
}

// WaitUntil polls cond until it holds, ctx ends, or limit passes.
func WaitUntil(ctx context.Context, limit time.Duration, what string, cond func() (bool, error)) (time.Duration, error) {
	start := time.Now()
	var last error
	for time.Since(start) < limit {
		ok, err := cond()
		if ok {
			return time.Since(start), nil
		}
		last = err
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("timed out after %s waiting for %s (last error: %v)", limit, what, last)
}

// Converged reports whether every node holds the same envelopes of the
// space and every officer the same state digest.
func Converged(ctx context.Context, space string, nodes ...*Node) (bool, error) {
	var first api.Digest
	for i, n := range nodes {
		d, err := n.Client().SpaceDigest(ctx, api.SpaceRef{Space: space})
		if err != nil {
			return false, err
		}
		if i == 0 {
			first = d
			continue
		}
		if d.Envelopes != first.Envelopes || (!n.Relay && d.Digest != first.Digest) {
			return false, nil
		}
	}
	return true, nil
}

// Pid is the process ID of the node's agent (the supervisor), 0 if it is
// not running.
func (n *Node) Pid() int {
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// WorkerPid is the process ID of the supervisor's worker child (the process
// that holds the store and the sockets), 0 if there is none at the moment.
func (n *Node) WorkerPid() int {
	pid := n.Pid()
	if pid == 0 {
		return 0
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		if b, err := os.ReadFile(t); err == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				var w int
				if _, err := fmt.Sscan(f[0], &w); err == nil && w > 0 {
					return w
				}
			}
		}
	}
	return 0
}

// SignalWorker sends sig (e.g. SIGSTOP, SIGCONT) to the node's worker
// process, the one serving the store and the mesh.
func (n *Node) SignalWorker(sig syscall.Signal) error {
	w := n.WorkerPid()
	if w == 0 {
		return fmt.Errorf("node %s: no worker process", n.Name)
	}
	return signalPID(w, sig)
}

// PeakRSSMB is the peak resident set (VmHWM) of the node's agent worker
// process (the supervisor's child), or of the supervisor if it has none.
func (n *Node) PeakRSSMB() float64 {
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	pid := n.cmd.Process.Pid
	// The worker may have been started by any of the supervisor's threads.
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		if b, err := os.ReadFile(t); err == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				if v := vmHWM(f[0]); v > 0 {
					return v
				}
			}
		}
	}
	return vmHWM(fmt.Sprint(pid))
}

func vmHWM(pid string) float64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			var kb float64
			fmt.Sscan(strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:")), &kb)
			return kb / 1024
		}
	}
	return 0
}
