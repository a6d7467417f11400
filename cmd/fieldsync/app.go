package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"
)

// Exit codes fixed by DESIGN §8.
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 2
	exitNotFound = 3
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
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		Flags:                globalFlags(),
		ExitErrHandler:       func(*cli.Context, error) {}, // run() maps errors to exit codes
	}
	app.Commands = append(app.Commands, demoCommand())
	return app
}

func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "data-dir", EnvVars: []string{"FIELDSYNC_DATA_DIR"}, Usage: "data directory (default: XDG data dir)/fieldsync"},
		&cli.StringFlag{Name: "passphrase-file", EnvVars: []string{"FIELDSYNC_PASSPHRASE_FILE"}, Usage: "read the keystore passphrase from `FILE`"},
		&cli.StringFlag{Name: "bureau-passphrase-file", EnvVars: []string{"FIELDSYNC_BUREAU_PASSPHRASE_FILE"}, Usage: "read the bureau key passphrase from `FILE`"},
		&cli.StringFlag{Name: "key-file", EnvVars: []string{"FIELDSYNC_KEY_FILE"}, Usage: "unlock the keystore with `FILE` instead of a passphrase (unattended relays)"},
		&cli.StringFlag{Name: "mesh-key-file", EnvVars: []string{"FIELDSYNC_MESH_KEY_FILE"}, Usage: "override the keystore's mesh key with `FILE`"},
		&cli.BoolFlag{Name: "json", Usage: "print JSON"},
	}
}

// exitError carries an exit code and an optional hint to run().
type exitError struct {
	code int
	err  error
	hint string
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// run executes the CLI and returns the process exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin, stdout, stderr)
	err := app.Run(args)
	if err == nil {
		return exitOK
	}
	code := exitFailure
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	fmt.Fprintf(stderr, "fieldsync: error: %v\n", err)
	if ee != nil && ee.hint != "" {
		fmt.Fprintf(stderr, "fieldsync: hint: %s\n", ee.hint)
	}
	return code
}
