package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.RunMain(m, map[string]func() int{
		"fieldsync": func() int { return run(os.Args, os.Stdin, os.Stdout, os.Stderr) },
	})
}

// TestScripts runs the CLI scripts in testdata/*.txt: the fieldsync main runs
// as the command `fieldsync`, with cheap KDF parameters (FIELDSYNC_TEST_KDF).
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata",
		Setup: func(env *testscript.Env) error {
			env.Setenv("FIELDSYNC_TEST_KDF", "1")
			env.Setenv("XDG_DATA_HOME", filepath.Join(env.WorkDir, "xdg"))
			env.Setenv("FIELDSYNC_DATA_DIR", "")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitagent":   cmdWaitAgent,
			"freeport":    cmdFreePort,
			"exits":       cmdExits,
			"retry":       cmdRetry,
			"capture":     cmdCapture,
			"fakeagent":   cmdFakeAgent,
			"fakesibling": cmdFakeSibling,
			"fakereq":     cmdFakeLastRequest,
		},
	})
}

// cmdWaitAgent waits (bounded) until the agent of data directory DIR
// answers on its socket: `waitagent DIR [SECONDS]`; with `fail` (or as
// `! waitagent`) it checks that no agent answers within SECONDS.
func cmdWaitAgent(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 3 && args[2] == "fail" {
		neg, args = true, args[:2]
	}
	if len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: waitagent DIR [SECONDS [fail]]")
	}
	limit := 30 * time.Second
	if len(args) == 2 {
		n, err := strconv.Atoi(args[1])
		if err != nil {
			ts.Fatalf("waitagent: bad seconds %q", args[1])
		}
		limit = time.Duration(n) * time.Second
	}
	// Ask through the CLI itself, so the socket is found with the script's
	// environment (TMPDIR, XDG_RUNTIME_DIR), as a user's shell would.
	dir := ts.MkAbs(args[0])
	deadline := time.Now().Add(limit)
	var err error
	for {
		err = ts.Exec("fieldsync", "--data-dir", dir, "status", "--json")
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if neg {
		if err == nil {
			ts.Fatalf("an agent answers for %s", dir)
		}
		return
	}
	if err != nil {
		ts.Fatalf("agent for %s did not answer within %v: %v", dir, limit, err)
	}
}

// cmdFreePort sets the environment variable NAME to a free loopback
// address: `freeport NAME`. The port is free for TCP and UDP (memberlist
// binds both) on an address of 127.0.0.0/8 of this script's own, so that
// the agents of scripts running in parallel, which bind 127.0.0.1:0, cannot
// take it between this check and the agent's bind (a flake seen in CI).
func cmdFreePort(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: freeport NAME")
	}
	addr, err := freeLoopbackAddr()
	if err != nil {
		ts.Fatalf("freeport: %v", err)
	}
	ts.Setenv(args[0], addr)
	fmt.Fprintf(ts.Stdout(), "%s\n", addr)
}

// freeLoopbackAddr returns host:port on a random address of 127.0.0.0/8
// (127.0.0.1 where the system has only that one, as macOS does) whose port
// is free for both TCP and UDP.
func freeLoopbackAddr() (string, error) {
	for range 20 {
		ip := fmt.Sprintf("127.%d.%d.%d", 64+rand.IntN(64), rand.IntN(256), 1+rand.IntN(254))
		if addr, err := freePortOn(ip); err == nil {
			return addr, nil
		}
	}
	return freePortOn("127.0.0.1")
}

func freePortOn(ip string) (string, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return "", err
	}
	defer ln.Close()
	addr := ln.Addr().String()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return "", err
	}
	pc.Close()
	return addr, nil
}

// cmdExits runs a program and checks its exit code:
// `exits CODE PROGRAM ARGS...`; its output is then stdout/stderr as for exec.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE PROGRAM ARGS...")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: bad code %q", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exits: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("exit code %d, want %d", got, want)
	}
}

// cmdCapture sets NAME to the first submatch of REGEXP in the last
// command's stdout: `capture NAME REGEXP`.
func cmdCapture(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: capture NAME REGEXP")
	}
	re, err := regexp.Compile("(?m)" + args[1])
	if err != nil {
		ts.Fatalf("capture: %v", err)
	}
	m := re.FindStringSubmatch(ts.ReadFile("stdout"))
	if len(m) < 2 {
		ts.Fatalf("capture: no match for %q in stdout", args[1])
	}
	ts.Setenv(args[0], m[1])
}

// cmdRetry runs a program until it succeeds with stdout matching REGEXP,
// for at most SECONDS: `retry SECONDS REGEXP PROGRAM ARGS...` (sync is
// asynchronous; the bound keeps a failure from hanging the test).
func cmdRetry(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 {
		ts.Fatalf("usage: retry SECONDS REGEXP PROGRAM ARGS...")
	}
	secs, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("retry: bad seconds %q", args[0])
	}
	re, err := regexp.Compile("(?m)" + args[1])
	if err != nil {
		ts.Fatalf("retry: %v", err)
	}
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	for {
		err = ts.Exec(args[2], args[3:]...)
		if err == nil && re.MatchString(ts.ReadFile("stdout")) {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("retry: %s did not succeed with stdout matching %q within %ds (last error: %v)", strings.Join(args[2:], " "), args[1], secs, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
