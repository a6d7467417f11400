package main

import (
	"errors"

	"github.com/urfave/cli/v2"
)

// restoreCommand is a placeholder until the command is built (see the open issues).
func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:   "restore",
		Usage:  "(not built yet)",
		Hidden: true,
		Action: func(*cli.Context) error { return errors.New("restore: not built yet") },
	}
}
