package main

import (
	"errors"

	"github.com/urfave/cli/v2"
)

// diagCommand is a placeholder until the command is built (see the open issues).
func diagCommand() *cli.Command {
	return &cli.Command{
		Name:   "diag",
		Usage:  "(not built yet)",
		Hidden: true,
		Action: func(*cli.Context) error { return errors.New("diag: not built yet") },
	}
}
