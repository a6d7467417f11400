package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"fieldsync/agent"
	"fieldsync/agent/api"
	"fieldsync/crypto"
	"fieldsync/internal/datadir"
)

// maxSecretFile bounds passphrase, key and mesh-key files.
const maxSecretFile = 64 << 10

// maxInputFile bounds the public files the CLI reads (bureau keys,
// certificates, requests, bureau files).
const maxInputFile = 1 << 20

// globalString returns the value of a flag set on the command or on any of
// its parents (a command flag may shadow a global flag of the same name).
func globalString(c *cli.Context, name string) string {
	for _, x := range c.Lineage() {
		if x.Command == nil && x.App == nil {
			continue
		}
		if v := x.String(name); v != "" {
			return v
		}
	}
	return ""
}

// jsonMode reports whether --json was given to the command or globally.
func jsonMode(c *cli.Context) bool {
	for _, x := range c.Lineage() {
		if x.Bool("json") {
			return true
		}
	}
	return false
}

// printJSON writes v as indented JSON to stdout.
func printJSON(c *cli.Context, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = c.App.Writer.Write(b)
	return err
}

// layoutOf is the data directory's layout, made absolute (the worker and
// the socket path depend on it).
func layoutOf(c *cli.Context) (agent.Layout, error) {
	dir := globalString(c, "data-dir")
	if dir == "" {
		d, err := datadir.DefaultDir()
		if err != nil {
			return agent.Layout{}, err
		}
		dir = d
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return agent.Layout{}, fmt.Errorf("data directory %s: %v", dir, err)
	}
	return agent.Layout{Dir: abs}, nil
}

// kdfParams are the argon2id parameters for new keystores and bureau files:
// production defaults, or cheap ones when --test-kdf / FIELDSYNC_TEST_KDF=1
// asks for them (tests, demo and benchmarks only).
func kdfParams(c *cli.Context) crypto.KDFParams {
	for _, x := range c.Lineage() {
		if x.Bool("test-kdf") {
			return crypto.TestKDFParams
		}
	}
	return crypto.DefaultKDFParams
}

// readBounded reads a whole file of at most max bytes.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: over %d bytes", path, max)
	}
	return data, nil
}

// readInput reads a public input file, with a clear error.
func readInput(path, what string) ([]byte, error) {
	data, err := readBounded(path, maxInputFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &exitError{code: exitFailure, err: fmt.Errorf("%s %s: no such file", what, path)}
	}
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %v", what, path, err)
	}
	return data, nil
}

// readSecretFile reads a passphrase or key file; one trailing newline
// (LF or CRLF) is stripped.
func readSecretFile(path string) ([]byte, error) {
	data, err := readBounded(path, maxSecretFile)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: no such file", path)
		}
		return nil, err
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	data = bytes.TrimSuffix(data, []byte("\r"))
	return data, nil
}

// readPassphrase returns the passphrase from the file named by the global
// flag fileFlag, or asks for it on the terminal (twice when confirm is set).
func readPassphrase(c *cli.Context, fileFlag, what string, confirm bool) ([]byte, error) {
	if path := globalString(c, fileFlag); path != "" {
		p, err := readSecretFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s file: %v", what, err)
		}
		if len(p) == 0 {
			return nil, fmt.Errorf("%s file %s is empty", what, path)
		}
		return p, nil
	}
	f, ok := c.App.Reader.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, &exitError{code: exitFailure, err: fmt.Errorf("no %s: standard input is not a terminal", what),
			hint: fmt.Sprintf("give --%s FILE", fileFlag)}
	}
	fmt.Fprintf(c.App.ErrWriter, "%s: ", what)
	p, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(c.App.ErrWriter)
	if err != nil {
		return nil, fmt.Errorf("read %s: %v", what, err)
	}
	if len(p) == 0 {
		return nil, fmt.Errorf("empty %s", what)
	}
	if confirm {
		fmt.Fprintf(c.App.ErrWriter, "%s (again): ", what)
		q, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.App.ErrWriter)
		if err != nil {
			return nil, fmt.Errorf("read %s: %v", what, err)
		}
		if !bytes.Equal(p, q) {
			return nil, fmt.Errorf("the two %ss differ", what)
		}
	}
	return p, nil
}

// unlockOf returns what opens the device keystore of l: the key file if
// --key-file is given, else the passphrase (file or prompt). A keystore
// sealed the other way is reported before anything is asked.
func unlockOf(c *cli.Context, l agent.Layout) (agent.Unlock, error) {
	keyPath := globalString(c, "key-file")
	if data, err := readBounded(l.Keystore(), maxSecretFile); err == nil {
		if usesKey, err := crypto.KeystoreUsesKeyFile(data); err == nil {
			switch {
			case usesKey && keyPath == "":
				return agent.Unlock{}, &exitError{code: exitFailure, errCode: "wrong_unlock",
					err:  fmt.Errorf("the keystore in %s is sealed with a key file, not a passphrase", l.Dir),
					hint: "give --key-file FILE (or FIELDSYNC_KEY_FILE)"}
			case !usesKey && keyPath != "":
				return agent.Unlock{}, &exitError{code: exitFailure, errCode: "wrong_unlock",
					err:  fmt.Errorf("the keystore in %s is sealed with a passphrase, not a key file", l.Dir),
					hint: "drop --key-file (and FIELDSYNC_KEY_FILE); give --passphrase-file FILE or type it"}
			}
		}
	}
	if keyPath != "" {
		k, err := readSecretFile(keyPath)
		if err != nil {
			return agent.Unlock{}, fmt.Errorf("key file: %v", err)
		}
		return agent.Unlock{KeyFile: k}, nil
	}
	p, err := readPassphrase(c, "passphrase-file", "passphrase", false)
	if err != nil {
		return agent.Unlock{}, err
	}
	return agent.Unlock{Passphrase: p}, nil
}

// meshKeyOverride returns the --mesh-key-file contents parsed, or nil.
func meshKeyOverride(c *cli.Context) ([]byte, error) {
	path := globalString(c, "mesh-key-file")
	if path == "" {
		return nil, nil
	}
	data, err := readSecretFile(path)
	if err != nil {
		return nil, fmt.Errorf("mesh key file: %v", err)
	}
	k, err := crypto.ParseMeshKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("mesh key file %s: %v", path, err)
	}
	return k, nil
}

// keystoreError explains a failure to open a keystore or bureau file.
func keystoreError(what, path string, err error) error {
	switch {
	case errors.Is(err, crypto.ErrWrongPassphrase):
		return &exitError{code: exitFailure, errCode: "wrong_passphrase",
			err:  fmt.Errorf("wrong passphrase for %s %s", what, path),
			hint: "check the passphrase (a passphrase file's trailing newline is ignored)"}
	case errors.Is(err, crypto.ErrMalformed):
		return &exitError{code: exitFailure, errCode: "corrupt",
			err:  fmt.Errorf("%s %s is corrupt or not a %s: %v", what, path, what, err),
			hint: "restore the file from a backup"}
	}
	return fmt.Errorf("open %s %s: %v", what, path, err)
}

// writeNewFile creates path with perm, refusing to replace an existing file.
func writeNewFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if errors.Is(err, fs.ErrExist) {
		return &exitError{code: exitFailure, err: fmt.Errorf("%s already exists", path),
			hint: "remove it first or choose another --out"}
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// parseValidity parses a validity such as 365d, 12h or 90d12h.
func parseValidity(s string) (time.Duration, error) {
	if s == "" {
		return 0, usageErrorf("empty --valid")
	}
	var total time.Duration
	rest := s
	if i := strings.Index(rest, "d"); i >= 0 {
		days, err := strconv.Atoi(rest[:i])
		if err != nil || days < 0 || days > 100*366 {
			return 0, usageErrorf("bad --valid %q: want e.g. 365d or 72h", s)
		}
		total = time.Duration(days) * 24 * time.Hour
		rest = rest[i+1:]
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil || d < 0 {
			return 0, usageErrorf("bad --valid %q: want e.g. 365d or 72h", s)
		}
		total += d
	}
	if total <= 0 {
		return 0, usageErrorf("bad --valid %q: must be positive", s)
	}
	return total, nil
}

// needArgs checks the number of positional arguments.
func needArgs(c *cli.Context, min, max int, usage string) error {
	n := c.NArg()
	if n < min {
		return &exitError{code: exitUsage, errCode: codeUsage,
			err:  fmt.Errorf("missing arguments: usage: %s %s", cmdPath(c), usage),
			hint: fmt.Sprintf("see `%s --help`", cmdPath(c))}
	}
	if max >= 0 && n > max {
		return &exitError{code: exitUsage, errCode: codeUsage,
			err:  fmt.Errorf("too many arguments: usage: %s %s", cmdPath(c), usage),
			hint: "flags go before positional arguments; quote values with spaces"}
	}
	return nil
}

// dial connects to the data directory's running agent.
func dial(c *cli.Context) (*api.Client, error) {
	l, err := layoutOf(c)
	if err != nil {
		return nil, err
	}
	cl, err := api.Dial(l)
	if errors.Is(err, api.ErrAgentNotRunning) {
		return nil, &exitError{code: exitFailure, errCode: codeNotRunning,
			err:  fmt.Errorf("agent not running — start it with `fieldsync agent`"),
			hint: fmt.Sprintf("data directory %s", l.Dir)}
	}
	if errors.Is(err, agent.ErrUnsafeSocket) {
		// Nothing was sent: the socket (or its directory) is not this
		// user's alone, so whoever listens there may not be the agent.
		return nil, &exitError{code: exitFailure, errCode: codeFailure, err: err,
			hint: "the agent's socket and its directory must be yours alone (XDG_RUNTIME_DIR or the data directory, mode 0700); nothing was sent"}
	}
	return cl, err
}

// ctxOf is the command's context.
func ctxOf(c *cli.Context) context.Context {
	if c.Context != nil {
		return c.Context
	}
	return context.Background()
}

// noteRestart tells the user that a running agent reads the device files
// only when it starts.
func noteRestart(c *cli.Context, l agent.Layout, what string) {
	if _, err := api.Dial(l); err == nil {
		fmt.Fprintf(c.App.ErrWriter, "fieldsync: note: the running agent reads the %s when it starts; restart it to apply the change\n", what)
	}
}

// noCoreDumps keeps key material out of core files (docs/design.md §5) for the
// commands that hold keys; the agent's worker inherits the limit.
func noCoreDumps(c *cli.Context) {
	if err := agent.DisableCoreDumps(); err != nil {
		fmt.Fprintf(c.App.ErrWriter, "fieldsync: warning: could not disable core dumps: %v\n", err)
	}
}
