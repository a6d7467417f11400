package main

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"fieldsync/agent"
)

// runFieldsync runs the CLI in-process.
func runFieldsync(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(append([]string{"fieldsync"}, args...), strings.NewReader(""), &o, &e)
	return code, o.String(), e.String()
}

// visibleCommands lists every visible command path ("record put", ...).
func visibleCommands(prefix string, cmds []*cli.Command) []string {
	var out []string
	for _, c := range cmds {
		if c.Hidden || c.Name == "help" {
			continue
		}
		out = append(out, strings.TrimSpace(prefix+" "+c.Name))
		out = append(out, visibleCommands(prefix+" "+c.Name, c.Subcommands)...)
	}
	return out
}

func TestCompletionScripts(t *testing.T) {
	want := map[string]*regexp.Regexp{
		"bash": regexp.MustCompile(`(?m)^complete .*-F _fieldsync_complete fieldsync$`),
		"zsh":  regexp.MustCompile(`(?m)^#compdef fieldsync$`),
		"fish": regexp.MustCompile(`(?m)^complete -c fieldsync `),
	}
	for shell, re := range want {
		code, out, stderr := runFieldsync("completion", shell)
		if code != 0 || !re.MatchString(out) || !strings.Contains(out, "--generate-bash-completion") && shell != "fish" {
			t.Errorf("completion %s: exit %d %s\n%s", shell, code, stderr, out)
		}
	}
	// fish lists the commands itself.
	_, fish, _ := runFieldsync("completion", "fish")
	for _, c := range newApp(nil, nil, nil).Commands {
		if !c.Hidden && !strings.Contains(fish, "-a '"+c.Name+"'") {
			t.Errorf("fish completion lacks %s", c.Name)
		}
	}
	if code, _, stderr := runFieldsync("completion", "tcsh"); code != exitUsage || !strings.Contains(stderr, `unknown shell "tcsh"`) {
		t.Errorf("completion tcsh: exit %d %s", code, stderr)
	}
	if code, _, _ := runFieldsync("completion"); code != exitUsage {
		t.Errorf("completion without a shell: exit %d", code)
	}
}

// completeArgs asks for completion candidates as the shell scripts do.
// urfave/cli reads os.Args for them, so it is set for the call.
func completeArgs(args ...string) (code int, stdout, stderr string) {
	defer func(a []string) { os.Args = a }(os.Args)
	os.Args = append(append([]string{"fieldsync"}, args...), "--generate-bash-completion")
	return runFieldsync(os.Args[1:]...)
}

// The scripts ask fieldsync for candidates: it lists every visible command,
// a group's subcommands, and a command's flags.
func TestCompletionCandidates(t *testing.T) {
	code, out, stderr := completeArgs()
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got := strings.Fields(out)
	for _, c := range newApp(nil, nil, nil).Commands {
		has := false
		for _, g := range got {
			has = has || g == c.Name
		}
		if has == c.Hidden {
			t.Errorf("command %s (hidden %v) listed: %v", c.Name, c.Hidden, has)
		}
	}
	_, out, _ = completeArgs("record")
	if !strings.HasPrefix(strings.Join(strings.Fields(out), " "), "put new get list delete") {
		t.Errorf("record subcommands: %q", out)
	}
	_, out, _ = completeArgs("agent", "--met")
	if strings.TrimSpace(out) != "--metrics-addr" {
		t.Errorf("agent --met: %q", out)
	}
	_, out, _ = completeArgs("--log")
	if strings.Join(strings.Fields(out), " ") != "--log-level --log-format" {
		t.Errorf("--log: %q", out)
	}
}

func TestManPage(t *testing.T) {
	code, page, stderr := runFieldsync("man")
	if code != 0 || !strings.HasPrefix(page, ".nh\n.TH fieldsync 1") {
		t.Fatalf("exit %d %s\n%.200s", code, stderr, page)
	}
	heads := map[string]bool{}
	for _, line := range strings.Split(page, "\n") {
		if strings.HasPrefix(line, ".SH ") || strings.HasPrefix(line, ".SS ") {
			heads[line[4:]] = true
		}
	}
	cmds := visibleCommands("", newApp(nil, nil, nil).Commands)
	if len(cmds) < 30 {
		t.Fatalf("only %d commands: %v", len(cmds), cmds)
	}
	for _, path := range cmds {
		name := path[strings.LastIndex(path, " ")+1:]
		if !heads[name] {
			t.Errorf("man page has no section for %q", path)
		}
	}
	for _, flag := range []string{"--config", "--log-format", "--data-dir", "--metrics-addr"} {
		if !strings.Contains(page, `\fB`+flag) {
			t.Errorf("man page does not document %s", flag)
		}
	}
	if strings.Contains(page, "agent-worker") {
		t.Error("man page shows the hidden agent-worker")
	}
}

func TestVersion(t *testing.T) {
	defer func(v, c string) { agent.Version, commit = v, c }(agent.Version, commit)
	agent.Version, commit = "v1.4.2", "0123456789abcdef0123456789abcdef01234567"
	code, out, _ := runFieldsync("--version")
	if code != 0 || !regexp.MustCompile(`^fieldsync version v1\.4\.2 \(commit 0123456789ab(, modified)?, go1\.[0-9.]+\)\n$`).MatchString(out) {
		t.Errorf("--version: exit %d %q", code, out)
	}
	code, out, _ = runFieldsync("--json", "--version")
	var bi buildInfo
	if err := json.Unmarshal([]byte(out), &bi); code != 0 || err != nil || bi.Version != "v1.4.2" || bi.Commit != commit || !strings.HasPrefix(bi.Go, "go") {
		t.Errorf("--json --version: exit %d %q %v", code, out, err)
	}
}
