package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"fieldsync/agent"
	"fieldsync/agent/api"
)

// Exit codes fixed by docs/design.md §8.
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 2
	exitNotFound = 3
)

// Error codes of the CLI's own errors under --json (the agent's API codes,
// agent.Code*, pass through unchanged).
const (
	codeUsage      = "usage"
	codeFailure    = "failure"
	codeNotRunning = "agent_not_running"
)

// newApp builds the command tree. Each command group lives in its own file
// and contributes through a constructor listed here.
func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                 "fieldsync",
		Usage:                "offline-first field sync agent",
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		Version:              versionString(),
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		Flags:                globalFlags(),
		Before:               loadConfig,
		ExitErrHandler:       func(*cli.Context, error) {}, // run() maps errors to exit codes
		Action:               groupAction,
		Metadata:             map[string]any{},
	}
	app.Commands = append(app.Commands,
		bureauCommand(),
		meshKeyCommand(),
		initCommand(),
		enrollCommand(),
		certCommand(),
		trustCommand(),
		agentCommand(),
		agentWorkerCommand(),
		spaceCommand(),
		recordCommand(),
		setCommand(),
		noteCommand(),
		conflictsCommand(),
		resolveCommand(),
		historyCommand(),
		findCommand(),
		uiCommand(),
		receiptsCommand(),
		reviewCommand(),
		statusCommand(),
		peersCommand(),
		repairCommand(),
		compactCommand(),
		revokeCommand(),
		bundleCommand(),
		backupCommand(),
		restoreCommand(),
		diagCommand(),
		completionCommand(),
		manCommand(),
		benchCommand(),
		demoCommand(),
	)
	app.OnUsageError = onUsageError
	for _, c := range app.Commands {
		prepareCommand(c)
	}
	return app
}

// prepareCommand gives every command the same usage-error handling and
// --json flag, and every group an action that rejects unknown subcommands
// (urfave/cli would otherwise answer "No help topic" with exit code 3).
func prepareCommand(c *cli.Command) {
	c.OnUsageError = onUsageError
	if len(c.Subcommands) > 0 {
		if c.Action == nil {
			c.Action = groupAction
		}
		for _, s := range c.Subcommands {
			prepareCommand(s)
		}
		return
	}
	if !hasFlag(c.Flags, "json") {
		c.Flags = append(c.Flags, jsonFlag())
	}
}

func hasFlag(flags []cli.Flag, name string) bool {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print JSON"}
}

// onUsageError turns urfave/cli's flag errors (unknown flag, bad value) into
// exit code 2 without printing the whole help text.
func onUsageError(c *cli.Context, err error, isSubcommand bool) error {
	name := cmdPath(c)
	return &exitError{code: exitUsage, err: fmt.Errorf("%s: %v", name, err),
		hint: fmt.Sprintf("see `%s --help`", name)}
}

// groupAction runs when a command group (or the app) is called without a
// known subcommand.
func groupAction(c *cli.Context) error {
	name := cmdPath(c)
	if c.Args().First() == "help" && c.NArg() == 1 {
		return cli.ShowSubcommandHelp(c)
	}
	if c.Args().Present() {
		return &exitError{code: exitUsage, err: fmt.Errorf("unknown command %q", strings.TrimPrefix(name+" "+c.Args().First(), "fieldsync ")),
			hint: fmt.Sprintf("see `%s --help`", name)}
	}
	if err := cli.ShowSubcommandHelp(c); err != nil {
		return err
	}
	msg := "missing command"
	if name != "fieldsync" {
		msg = fmt.Sprintf("missing command after %q", strings.TrimPrefix(name, "fieldsync "))
	}
	return &exitError{code: exitUsage, err: errors.New(msg),
		hint: fmt.Sprintf("see `%s --help`", name)}
}

// cmdPath is the command's full name, e.g. "fieldsync trust list".
func cmdPath(c *cli.Context) string {
	if c == nil {
		return "fieldsync"
	}
	var names []string
	for _, x := range c.Lineage() {
		if x.Command != nil && x.Command.Name != "" {
			names = append([]string{x.Command.Name}, names...)
		}
	}
	if len(names) > 0 && names[0] == "fieldsync" {
		names = names[1:]
	}
	return strings.TrimSpace("fieldsync " + strings.Join(names, " "))
}

// globalFlags are the flags that go right after `fieldsync`. Those wrapped
// by altsrc may also be set in the config file's top level (config.go).
func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", EnvVars: []string{"FIELDSYNC_CONFIG"}, Usage: "read flag values from the TOML or YAML config `FILE` (flags and environment variables override it)"},
		altsrc.NewStringFlag(&cli.StringFlag{Name: "data-dir", EnvVars: []string{"FIELDSYNC_DATA_DIR"}, Usage: "data directory (default: XDG data dir)/fieldsync"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "passphrase-file", EnvVars: []string{"FIELDSYNC_PASSPHRASE_FILE"}, Usage: "read the keystore passphrase from `FILE`"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "bureau-passphrase-file", EnvVars: []string{"FIELDSYNC_BUREAU_PASSPHRASE_FILE"}, Usage: "read the bureau key passphrase from `FILE`"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "key-file", EnvVars: []string{"FIELDSYNC_KEY_FILE"}, Usage: "unlock the keystore with `FILE` instead of a passphrase (unattended relays)"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "mesh-key-file", EnvVars: []string{"FIELDSYNC_MESH_KEY_FILE"}, Usage: "override the keystore's mesh key with `FILE`"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "log-level", EnvVars: []string{"FIELDSYNC_LOG_LEVEL"}, Value: "info", Usage: "log `LEVEL`: debug, info, warn or error"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "log-format", EnvVars: []string{"FIELDSYNC_LOG_FORMAT"}, Value: "text", Usage: "log `FORMAT`: text or json"}),
		&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		// Tests, the demo and benchmarks only: cheap argon2id parameters for
		// new keystores and bureau files. Never for real keys.
		&cli.BoolFlag{Name: "test-kdf", EnvVars: []string{"FIELDSYNC_TEST_KDF"}, Hidden: true},
	}
}

// exitError carries an exit code, a JSON error code and an optional hint to
// run().
type exitError struct {
	code    int
	errCode string // JSON error code; derived from code when empty
	err     error
	hint    string
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, errCode: codeUsage, err: fmt.Errorf(format, args...)}
}

// withHint wraps err (keeping its exit code) with a hint line.
func withHint(err error, hint string) error {
	var ee *exitError
	if errors.As(err, &ee) {
		return &exitError{code: ee.code, errCode: ee.errCode, err: ee.err, hint: hint}
	}
	return &exitError{code: exitFailure, err: err, hint: hint}
}

func notFoundf(format string, args ...any) error {
	return &exitError{code: exitNotFound, errCode: api.CodeNotFound, err: fmt.Errorf(format, args...)}
}

// run executes the CLI and returns the process exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin, stdout, stderr)
	jsonErrors := wantsJSON(args)
	if !isCompletionRequest(args) { // urfave/cli looks for it in the last argument
		args = reorderArgs(app, args)
	}
	err := app.Run(args)
	if err == nil {
		return exitOK
	}
	code, errCode, hint := exitFailure, codeFailure, ""
	var ee *exitError
	var ae *api.APIError
	switch {
	case errors.As(err, &ee):
		code, hint = ee.code, ee.hint
		errCode = ee.errCode
		if errCode == "" {
			errCode = codeFor(code)
		}
		if errors.As(err, &ae) && ee.errCode == "" {
			errCode = ae.Code
		}
	case errors.As(err, &ae):
		code, errCode, hint = apiExitCode(ae.Code), ae.Code, ae.Hint
	case errors.Is(err, api.ErrAgentNotRunning):
		errCode = codeNotRunning
	default:
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			code = exitUsage
			errCode = codeUsage
		}
	}
	if errors.Is(err, api.ErrAgentNotRunning) {
		errCode = codeNotRunning
		if hint == "" {
			hint = "start it with `fieldsync agent`"
		}
	}
	if code == exitUsage && isWorker(args) {
		code = exitFailure // the supervisor takes exit code 2 for a Go panic
	}
	msg := strings.TrimSuffix(err.Error(), ".")
	if jsonErrors {
		b, _ := json.Marshal(api.ErrorBody{Error: api.ErrorDetail{Code: errCode, Message: msg, Hint: hint}})
		fmt.Fprintf(stderr, "%s\n", b)
		return code
	}
	fmt.Fprintf(stderr, "fieldsync: error: %s\n", escapeMessage(msg))
	if hint != "" {
		fmt.Fprintf(stderr, "fieldsync: hint: %s\n", escapeMessage(hint))
	}
	return code
}

func codeFor(exit int) string {
	switch exit {
	case exitUsage:
		return codeUsage
	case exitNotFound:
		return api.CodeNotFound
	}
	return codeFailure
}

// apiExitCode maps an API error code to an exit code (docs/design.md §8).
func apiExitCode(code string) int {
	switch code {
	case api.CodeNotFound:
		return exitNotFound
	case api.CodeBadRequest, api.CodeAmbiguous:
		return exitUsage
	}
	return exitFailure
}

// isWorker reports whether args run the hidden agent-worker command.
func isWorker(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "agent-worker" {
			return true
		}
	}
	return false
}

// wantsJSON reports whether --json appears among the arguments (before a
// "--"), so that even flag-parsing errors are reported as JSON.
func wantsJSON(args []string) bool {
	for _, a := range args[min(1, len(args)):] {
		if a == "--" {
			return false
		}
		switch a {
		case "--json", "-json", "--json=true", "-json=true", "--json=1":
			return true
		}
	}
	return false
}

// reorderArgs moves the flags that follow a leaf command's positional
// arguments in front of them, so `record get S R --json` works as well as
// `record get --json S R` (urfave/cli v2 stops at the first positional). A
// "--" ends flag processing; everything after it stays positional.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	rest := args[1:]
	flags := app.Flags
	var subs []*cli.Command = app.Commands
	// Walk global flags and the command path.
	for len(rest) > 0 {
		a := rest[0]
		if a == "--" {
			return append(out, rest...)
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			n := flagArity(flags, a)
			n = min(n, len(rest)-1)
			out = append(out, rest[:1+n]...)
			rest = rest[1+n:]
			continue
		}
		var cmd *cli.Command
		for _, c := range subs {
			if c.HasName(a) {
				cmd = c
			}
		}
		if cmd == nil {
			break // positional arguments of the current command
		}
		out = append(out, a)
		rest = rest[1:]
		flags = cmd.Flags
		subs = cmd.Subcommands
		if len(subs) == 0 {
			break
		}
	}
	// rest holds the leaf command's flags and positionals, mixed.
	var fl, pos []string
	for len(rest) > 0 {
		a := rest[0]
		if a == "--" {
			pos = append(pos, rest[1:]...)
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			n := min(flagArity(flags, a), len(rest)-1)
			fl = append(fl, rest[:1+n]...)
			rest = rest[1+n:]
			continue
		}
		pos = append(pos, a)
		rest = rest[1:]
	}
	out = append(out, fl...)
	if len(pos) > 0 {
		out = append(out, "--")
		out = append(out, pos...)
	}
	return out
}

// flagArity is 1 if the flag argument a needs the next argument as its value.
func flagArity(flags []cli.Flag, a string) int {
	name := strings.TrimLeft(a, "-")
	if strings.Contains(name, "=") {
		return 0
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			if df, ok := f.(cli.DocGenerationFlag); ok && df.TakesValue() {
				return 1
			}
			return 0
		}
	}
	return 0
}

// isCompletionRequest reports whether args ask for shell completion
// (EnableBashCompletion: the last argument is --generate-bash-completion).
func isCompletionRequest(args []string) bool {
	return len(args) > 1 && args[len(args)-1] == "--generate-bash-completion"
}

// commit is the VCS revision, for builds without VCS stamping (GOFLAGS
// -buildvcs=false): go build -ldflags "-X main.commit=$(git rev-parse HEAD)".
var commit = ""

// buildInfo is what `fieldsync --version` prints: agent.Version (set with
// -ldflags "-X fieldsync/agent.Version=v1.2.3"), the commit and whether the
// tree had uncommitted changes (runtime/debug.ReadBuildInfo's vcs.revision
// and vcs.modified), and the Go version.
type buildInfo struct {
	Version  string `json:"version"`
	Commit   string `json:"commit"`
	Modified bool   `json:"modified"`
	Go       string `json:"go"`
}

func readBuildInfo() buildInfo {
	bi := buildInfo{Version: agent.Version, Commit: commit, Go: runtime.Version()}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				if bi.Commit == "" {
					bi.Commit = s.Value
				}
			case "vcs.modified":
				bi.Modified = s.Value == "true"
			}
		}
		if bi.Version == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			bi.Version = info.Main.Version // go install fieldsync/cmd/fieldsync@vX
		}
	}
	return bi
}

// versionString is the app's Version: "v1.2.3 (commit 0123abcd, modified, go1.26.0)".
func versionString() string {
	bi := readBuildInfo()
	c := bi.Commit
	if c == "" {
		c = "unknown"
	} else if len(c) > 12 {
		c = c[:12]
	}
	mod := ""
	if bi.Modified {
		mod = ", modified"
	}
	return fmt.Sprintf("%s (commit %s%s, %s)", bi.Version, c, mod, bi.Go)
}

// printVersion is cli.VersionPrinter: one line, or the buildInfo as JSON
// under --json.
func printVersion(c *cli.Context) {
	if c.Bool("json") {
		b, _ := json.Marshal(readBuildInfo())
		fmt.Fprintf(c.App.Writer, "%s\n", b)
		return
	}
	fmt.Fprintf(c.App.Writer, "%s version %s\n", c.App.Name, c.App.Version)
}

func init() { cli.VersionPrinter = printVersion }
