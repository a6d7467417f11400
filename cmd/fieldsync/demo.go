package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"fieldsync/agent"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run a local mesh of three officers and a relay, partition, edit, heal, and show the conflict",
		Description: "Starts, on 127.0.0.1 with temporary directories, a bureau relay and three officer agents as\n" +
			"separate processes of this binary; writes records in Arabic and English; cuts one officer off;\n" +
			"makes concurrent edits of the same field on both sides; heals; waits until every agent holds the\n" +
			"same state; prints the conflict as `conflicts show` renders it; and cleans up.",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "keep", Usage: "keep the temporary directory (its path is printed)"},
		},
		Action: demoAction,
	}
}

// demo drives the fieldsync binary the way an operator would.
type demo struct {
	exe    string
	root   string
	out    io.Writer
	agents map[string]*demoAgent
	ctx    context.Context
}

type demoAgent struct {
	name, dir, bind string
	relay           bool
	cmd             *exec.Cmd
	log             *os.File
}

func demoAction(c *cli.Context) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	root, err := os.MkdirTemp("", "fieldsync-demo-")
	if err != nil {
		return err
	}
	d := &demo{exe: exe, root: root, out: c.App.Writer, agents: map[string]*demoAgent{}, ctx: ctxOf(c)}
	defer func() {
		d.stopAll()
		if c.Bool("keep") {
			fmt.Fprintf(d.out, "\nkept %s\n", root)
		} else {
			os.RemoveAll(root)
		}
	}()
	return d.run()
}

func (d *demo) step(format string, args ...any) {
	fmt.Fprintf(d.out, "\n== "+format+"\n", args...)
}

// cli runs one fieldsync command and returns its stdout.
func (d *demo) cli(dir string, args ...string) (string, error) {
	full := []string{"--passphrase-file", filepath.Join(d.root, "passphrase"), "--bureau-passphrase-file", filepath.Join(d.root, "passphrase")}
	if dir != "" {
		full = append(full, "--data-dir", dir)
	}
	cmd := exec.CommandContext(d.ctx, d.exe, append(full, args...)...)
	cmd.Env = append(os.Environ(), "FIELDSYNC_TEST_KDF=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("fieldsync %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func (d *demo) cliJSON(dir string, v any, args ...string) error {
	out, err := d.cli(dir, append([]string{"--json"}, args...)...)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(out), v)
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// start runs `fieldsync agent` for one device and waits for its API.
func (d *demo) start(a *demoAgent, meshKey string, join ...string) error {
	args := []string{"--data-dir", a.dir, "--passphrase-file", filepath.Join(d.root, "passphrase")}
	if meshKey != "" {
		args = append(args, "--mesh-key-file", meshKey)
	}
	args = append(args, "agent", "--bind", a.bind, "--profile", "local", "--log-level", "warn")
	if a.relay {
		args = append(args, "--relay")
	}
	for _, j := range join {
		args = append(args, "--join", j)
	}
	log, err := os.OpenFile(filepath.Join(d.root, a.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	a.log = log
	a.cmd = exec.Command(d.exe, args...)
	a.cmd.Stdout, a.cmd.Stderr = log, log
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- a.cmd.Wait() }()
	cl := agent.NewClient(agent.Layout{Dir: a.dir}.Socket())
	for i := 0; ; i++ {
		if _, err := cl.Status(d.ctx); err == nil {
			go func() { <-exited }()
			return nil
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(log.Name())
			return fmt.Errorf("agent %s exited (%v): %s", a.name, err, b)
		case <-d.ctx.Done():
			return d.ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if i > 600 {
			return fmt.Errorf("agent %s did not start (log: %s)", a.name, log.Name())
		}
	}
}

func (d *demo) stop(a *demoAgent) {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	sock := agent.Layout{Dir: a.dir}.Socket()
	for i := 0; i < 200; i++ { // the socket goes when the worker has closed the store
		if _, err := os.Stat(sock); err != nil {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	a.cmd = nil
	a.log.Close()
}

func (d *demo) stopAll() {
	for _, a := range d.agents {
		d.stop(a)
	}
}

// waitUntil polls cond (each poll runs CLI commands) for up to a minute.
func (d *demo) waitUntil(what string, cond func() (bool, error)) (time.Duration, error) {
	start := time.Now()
	var last error
	for time.Since(start) < time.Minute {
		ok, err := cond()
		if ok {
			return time.Since(start), nil
		}
		last = err
		select {
		case <-d.ctx.Done():
			return 0, d.ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("timed out waiting for %s (last error: %v)", what, last)
}

func (d *demo) run() error {
	fmt.Fprintf(d.out, "fieldsync demo: a bureau relay and three officers on 127.0.0.1, each a separate agent process\n(working directory %s)\n", d.root)
	if err := os.WriteFile(filepath.Join(d.root, "passphrase"), []byte("demo passphrase, never use it\n"), 0o600); err != nil {
		return err
	}
	d.step("setting up: a bureau, a mesh key, four enrolled devices")
	bureau := filepath.Join(d.root, "omn.bureau")
	mesh := filepath.Join(d.root, "mesh.key")
	if _, err := d.cli("", "bureau", "init", "--name", "OMN", "--out", bureau); err != nil {
		return err
	}
	if _, err := d.cli("", "mesh-key", "new", "--out", mesh); err != nil {
		return err
	}
	for _, spec := range []struct {
		name, officer string
		relay         bool
	}{{"relay", "Bureau relay", true}, {"amina", "Amina Haddad", false}, {"boris", "Борис Ветров", false}, {"chen", "Chen Wei", false}} {
		bind, err := freePort()
		if err != nil {
			return err
		}
		a := &demoAgent{name: spec.name, dir: filepath.Join(d.root, spec.name), bind: bind, relay: spec.relay}
		args := []string{"init", "--officer", spec.officer, "--bureau-key", bureau, "--mesh-key", mesh}
		if spec.relay {
			args = append(args, "--role", "relay")
		}
		if _, err := d.cli(a.dir, args...); err != nil {
			return err
		}
		d.agents[spec.name] = a
		fmt.Fprintf(d.out, "  %-6s %s\n", spec.name, spec.officer)
	}
	relay, amina, boris, chen := d.agents["relay"], d.agents["amina"], d.agents["boris"], d.agents["chen"]

	d.step("starting the relay and three officer agents (memberlist on 127.0.0.1, profile local)")
	if err := d.start(relay, ""); err != nil {
		return err
	}
	for _, a := range []*demoAgent{amina, boris, chen} {
		if err := d.start(a, "", relay.bind); err != nil {
			return err
		}
		fmt.Fprintf(d.out, "  %s joined through the relay at %s\n", a.name, relay.bind)
	}

	d.step("amina creates a case file and records a person and a vehicle")
	var sp agent.Space
	if err := d.cliJSON(amina.dir, &sp, "space", "create", "Case 42 — قضية ٤٢"); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  space %s %q\n", sp.ID[:10], sp.Name)
	if _, err := d.cli(amina.dir, "record", "put", sp.ID, "p1", "name=أمينة حداد", "vehicle=KZ 123 ABC", "place=Алматы market"); err != nil {
		return err
	}
	took, err := d.waitUntil("boris and chen to see p1", func() (bool, error) {
		for _, a := range []*demoAgent{boris, chen} {
			var r agent.Record
			if err := d.cliJSON(a.dir, &r, "record", "get", sp.ID, "p1"); err != nil {
				return false, err
			}
			if r.Fields["vehicle"].Value != "KZ 123 ABC" {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  boris and chen read p1 after %s (the space key was wrapped to them automatically)\n", took.Round(time.Millisecond))

	d.step("chen's laptop drops off the mesh (its agent restarts outside it) and everyone keeps working")
	d.stop(chen)
	otherMesh := filepath.Join(d.root, "other-mesh.key")
	if _, err := d.cli("", "mesh-key", "new", "--out", otherMesh); err != nil {
		return err
	}
	if err := d.start(chen, otherMesh); err != nil {
		return err
	}
	if _, err := d.cli(amina.dir, "record", "put", sp.ID, "p1", "vehicle=KZ 124 ABC"); err != nil {
		return err
	}
	fmt.Fprintln(d.out, "  amina: vehicle = KZ 124 ABC")
	if _, err := d.cli(chen.dir, "record", "put", sp.ID, "p1", "vehicle=KZ 125 ABC — رأيتها"); err != nil {
		return err
	}
	fmt.Fprintln(d.out, "  chen (offline): vehicle = KZ 125 ABC — رأيتها")
	if _, err := d.cli(boris.dir, "note", "add", sp.ID, "p1", "Видели на границе в 14:10"); err != nil {
		return err
	}
	fmt.Fprintln(d.out, "  boris: adds a note")

	d.step("chen reconnects; the agents converge by anti-entropy")
	d.stop(chen)
	if err := d.start(chen, "", relay.bind, amina.bind); err != nil {
		return err
	}
	took, err = d.waitUntil("every agent to hold the same state", func() (bool, error) {
		var first agent.Digest
		for i, a := range []*demoAgent{amina, boris, chen, relay} {
			var dg agent.Digest
			if err := d.cliJSON(a.dir, &dg, "space", "digest", sp.ID); err != nil {
				return false, err
			}
			if i == 0 {
				first = dg
				continue
			}
			if dg.Envelopes != first.Envelopes || (!a.relay && dg.Digest != first.Digest) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	var dg agent.Digest
	d.cliJSON(amina.dir, &dg, "space", "digest", sp.ID)
	fmt.Fprintf(d.out, "  converged %s after reconnecting: state digest %s…, %d envelopes (the relay holds the same envelopes and cannot read them)\n",
		took.Round(time.Millisecond), dg.Digest[:16], dg.Count)

	d.step("the concurrent edits are kept as a conflict, on every officer's laptop — here as boris sees it:")
	out, err := d.cli(boris.dir, "conflicts", "show", sp.ID, "p1")
	if err != nil {
		return err
	}
	fmt.Fprint(d.out, indent(out))
	if _, err := d.cli(boris.dir, "record", "get", sp.ID, "p1"); err != nil {
		return err
	}
	var r agent.Record
	if err := d.cliJSON(chen.dir, &r, "record", "get", sp.ID, "p1"); err != nil {
		return err
	}
	if !r.Fields["vehicle"].Conflict || len(r.Fields["vehicle"].Siblings) != 2 {
		return errors.New("demo: the conflict did not show on chen's laptop")
	}
	d.step("done: stopping the agents and removing the temporary directory")
	return nil
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("  " + line + "\n")
	}
	return b.String()
}
