//go:build unix

package platform

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// roleEnv makes the test binary play a part in TestLeash instead of
// running tests: "parent" starts a leashed child and waits to be killed;
// "child" watches its parent and exits when it is gone.
const roleEnv = "PLATFORM_TEST_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "parent":
		leashParent(os.Getenv("PLATFORM_TEST_LEASH"))
	case "child":
		leashChild()
	}
	os.Exit(m.Run())
}

// leashParent starts a child leashed by the named mechanism, handing it the
// write end of the test's "alive" pipe (fd 3), then blocks until killed.
func leashParent(mechanism string) {
	alive := os.NewFile(3, "alive")
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), roleEnv+"=child")
	cmd.ExtraFiles = []*os.File{alive}
	cmd.Stderr = os.Stderr
	var l *Leash
	var err error
	if mechanism == "pipe" {
		l, err = pipeLeash(cmd)
	} else {
		l, err = PrepareChild(cmd)
	}
	if err == nil {
		err = cmd.Start()
	}
	if err == nil {
		err = l.Started(cmd.Process.Pid)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "parent:", err)
		os.Exit(1)
	}
	alive.Close() // only the child holds it now
	fmt.Println("started")
	time.Sleep(time.Hour) // until killed (a bare select{} is a deadlock to Go)
	os.Exit(1)
}

// leashChild says it watches its parent on the alive pipe, then exits when
// the parent is gone; its exit closes the last write end of that pipe.
func leashChild() {
	alive := os.NewFile(3, "alive")
	exited := make(chan struct{})
	if err := WatchParent(func() { close(exited) }); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	alive.WriteString("watching\n")
	if os.Getenv(parentFDEnv) != "" {
		fmt.Fprintln(os.Stderr, "child: WatchParent left", parentFDEnv, "set")
		os.Exit(1)
	}
	select {
	case <-exited: // with Pdeathsig the kernel kills us before this
		os.Exit(0)
	case <-time.After(time.Hour):
		os.Exit(1)
	}
}

// TestLeash kills a parent with SIGKILL and checks that its leashed child
// exits: the pipe the macOS supervisor uses (portable to every Unix), and
// the platform's own PrepareChild (Pdeathsig on Linux). The child holds the
// only write end of a pipe the test reads, so end of file there is the
// child's exit; no timing is asserted, the deadline only keeps a broken
// leash from hanging the run.
func TestLeash(t *testing.T) {
	for _, mechanism := range []string{"pipe", "platform"} {
		t.Run(mechanism, func(t *testing.T) {
			aliveR, aliveW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer aliveR.Close()
			parent := exec.Command(os.Args[0])
			parent.Env = append(os.Environ(), roleEnv+"=parent", "PLATFORM_TEST_LEASH="+mechanism)
			parent.ExtraFiles = []*os.File{aliveW}
			parent.Stderr = os.Stderr
			out, err := parent.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := parent.Start(); err != nil {
				t.Fatal(err)
			}
			aliveW.Close()
			defer parent.Process.Kill()
			if line, err := bufio.NewReader(out).ReadString('\n'); strings.TrimSpace(line) != "started" {
				t.Fatalf("parent said %q (%v)", line, err)
			}
			aliveR.SetReadDeadline(time.Now().Add(time.Minute))
			rd := bufio.NewReader(aliveR)
			if line, err := rd.ReadString('\n'); strings.TrimSpace(line) != "watching" {
				t.Fatalf("child said %q (%v)", line, err)
			}
			if err := parent.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			parent.Wait()
			rest, err := io.ReadAll(rd)
			if err != nil {
				t.Fatalf("the child did not exit after its parent was killed: %v", err)
			}
			if len(rest) != 0 {
				t.Fatalf("child wrote %q", rest)
			}
		})
	}
}

// TestLeashRelease: a pipe-leashed child exits when its parent lets go of
// the leash while still alive.
func TestLeashRelease(t *testing.T) {
	aliveR, aliveW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer aliveR.Close()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), roleEnv+"=child")
	cmd.ExtraFiles = []*os.File{aliveW}
	cmd.Stderr = os.Stderr
	l, err := pipeLeash(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	aliveW.Close()
	if err := l.Started(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	aliveR.SetReadDeadline(time.Now().Add(time.Minute))
	rd := bufio.NewReader(aliveR)
	if line, err := rd.ReadString('\n'); strings.TrimSpace(line) != "watching" {
		t.Fatalf("child said %q (%v)", line, err)
	}
	l.Release()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child after Release: %v", err)
	}
}
